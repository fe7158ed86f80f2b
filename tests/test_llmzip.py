"Round trips and container errors of `qlora_course.llmzip`, on the tiny random model."
import subprocess, sys, zlib, struct
from pathlib import Path
import pytest, torch
from hypothesis import given, settings, strategies as st, HealthCheck
from qlora_course.models import load_model, random_model
from qlora_course.llmzip import compress, decompress, tokenize_lossless, token_bytes, detokenize, escape_id, read_header, FORMAT_VERSION

@pytest.fixture(scope="module")
def mt():
    torch.set_num_threads(1)
    return load_model("tiny-random")

CASES = {
    "empty": "", "one char": "a", "whitespace runs": " " * 40 + "\t\t\n\n\n   \r\n \u3000 x",
    "long line": "word " * 150 + "x" * 300, "mixed scripts": "Latin café, 中文字符, 日本語のテキスト, 한국어, emoji 😀👍🏽🇫🇷, combining e\u0301 a\u0308\u0323 \u0301 alone",
    "control chars": "".join(map(chr, range(32))) + "\x7f\x85\u2028\ufeff",
    "special token text": "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
}

@pytest.mark.parametrize("mode", ["arith", "rank"])
@pytest.mark.parametrize("name", list(CASES))
def test_round_trip(mt, mode, name):
    m, tok = mt
    s = CASES[name]
    z = compress(s, m, tok, mode=mode, context_size=32, batch_size=3, verify=False)
    assert decompress(z, m, tok) == s.encode("utf-8")

def test_many_chunks(mt):
    m, tok = mt
    s = "The quick brown fox jumps over the lazy dog. " * 40  # ~400 tokens: 50 chunks of 8, 7 batches
    z = compress(s, m, tok, context_size=8, batch_size=7, verify=True)
    h = read_header(z)
    assert h["tokens"] > 8 * 7 * 3
    assert decompress(z, m, tok) == s.encode()

def test_invalid_utf8_bytes(mt):
    m, tok = mt
    data = bytes(range(256)) + b"valid text \xe9\xff end"
    ids, fallback = tokenize_lossless(tok, data)
    assert fallback > 0 and detokenize(ids, token_bytes(tok), escape_id(tok)) == data
    assert decompress(compress(data, m, tok, context_size=64), m, tok) == data

@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60), st.sampled_from(["arith", "rank"]), st.integers(2, 20), st.integers(1, 4))   # 2: the smallest window (format 4)
def test_hypothesis_unicode(mt, s, mode, ctx, bs):
    m, tok = mt
    data = s.encode("utf-8", errors="surrogatepass")
    assert decompress(compress(data, m, tok, mode=mode, context_size=ctx, batch_size=bs, verify=False), m, tok) == data

@pytest.fixture(scope="module")
def blob(mt):
    m, tok = mt
    return compress("A small text for the container tests. " * 3, m, tok, context_size=16, batch_size=2)

def test_other_model(mt, blob):
    with pytest.raises(ValueError, match="other model"): decompress(blob, random_model("tiny-random", seed=1), mt[1])

def test_other_adapter(mt, blob):
    from peft import LoraConfig, get_peft_model
    m, tok = mt
    base = random_model("tiny-random", seed=0)
    pm = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).eval()
    with pytest.raises(ValueError, match="other adapter"): decompress(blob, pm, tok)
    zp = compress("adapter text", pm, tok, context_size=16)
    assert decompress(zp, pm, tok) == b"adapter text"
    with pytest.raises(ValueError, match="other adapter"): decompress(zp, m, tok)

def test_other_settings(mt, blob):
    m, tok = mt
    with pytest.raises(ValueError, match="other settings"): decompress(blob, m, tok, context_size=512)
    with pytest.raises(ValueError, match="other settings"): decompress(blob, m, tok, batch_size=5)
    lean = compress("A small text for the container tests. " * 3, m, tok, context_size=16, batch_size=2, engine="lean")   # machine-only: format 3
    with pytest.raises(ValueError, match="other settings"): decompress(lean, random_model("tiny-random", seed=0, dtype=torch.bfloat16), tok)
    assert decompress(blob, random_model("tiny-random", seed=0, dtype=torch.bfloat16), tok) == b"A small text for the container tests. " * 3   # format 4: any dtype

@pytest.mark.parametrize("cut", [1, 3, 10, 30])
def test_truncated(mt, blob, cut):
    with pytest.raises(ValueError, match="truncated"): decompress(blob[:len(blob) - cut], *mt)

@pytest.mark.parametrize("pos", [5, 9, 20, 30, -8, -1])
def test_corrupted(mt, blob, pos):
    bad = bytearray(blob); bad[pos] ^= 0x10
    with pytest.raises(ValueError, match="corrupted|truncated"): decompress(bytes(bad), *mt)

def test_forged_payload_never_gives_wrong_output(mt, blob):
    "Payload bytes changed and the file CRC recomputed (a forgery the file CRC cannot see): an error, or exactly the original."
    h, errors = read_header(blob), 0
    orig = b"A small text for the container tests. " * 3
    start = len(blob) - 4 - len(h["payload"])
    for pos in range(start, len(blob) - 4, max(1, len(h["payload"]) // 6)):
        bad = bytearray(blob[:-4]); bad[pos] ^= 0x55
        bad = bytes(bad) + struct.pack("<I", zlib.crc32(bytes(bad)))
        try: assert decompress(bad, *mt) == orig
        except ValueError as e: errors += 1; assert "CRC32 mismatch" in str(e) or "corrupted" in str(e)
    assert errors > 0

def test_newer_version_and_not_llmzip(mt, blob):
    with pytest.raises(ValueError, match="newer"): decompress(blob[:4] + bytes([FORMAT_VERSION + 1]) + blob[5:], *mt)
    with pytest.raises(ValueError, match="not an llmzip"): decompress(b"PK\x03\x04zipfile", *mt)

def test_cli_round_trip(tmp_path, capsys):
    from qlora_course.cli import main
    src = tmp_path/"in.txt"; src.write_bytes("CLI text, ünïcödé ✓\r\n".encode() * 5)
    assert main(["zip", str(src), str(tmp_path/"a.llmz"), "--model", "tiny-random", "--context", "16"]) == 0
    assert main(["unzip", str(tmp_path/"a.llmz"), str(tmp_path/"out.txt"), "--model", "tiny-random"]) == 0
    assert (tmp_path/"out.txt").read_bytes() == src.read_bytes()
    (tmp_path/"cut.llmz").write_bytes((tmp_path/"a.llmz").read_bytes()[:-5])
    assert main(["unzip", str(tmp_path/"cut.llmz"), str(tmp_path/"o2"), "--model", "tiny-random"]) == 2
    assert "truncated" in capsys.readouterr().err and not (tmp_path/"o2").exists()

def test_finetune_lora_uses_training_stage_and_round_trips(tmp_path):
    "The domain adapter is trained by qlora_course.train (its artifacts appear), changes the model, and its files decode only with it."
    from qlora_course.llmzip import finetune_lora, adapter_bytes
    m, tok = load_model("tiny-random")
    text = "The river town grew around its mill and market. " * 30
    with torch.no_grad(): before = m(input_ids=torch.tensor([[1, 2, 3, 4]])).logits.clone()
    pm = finetune_lora(m, tok, text, steps=3, ctx=32, batch_size=2, lr=1e-2, output_dir=tmp_path/"ft")
    assert (tmp_path/"ft"/"adapter"/"adapter_model.safetensors").exists() and (tmp_path/"ft"/"metrics.json").exists()
    assert len(pm.train_losses) == 3 and adapter_bytes(pm) > 0
    with torch.no_grad(): after = pm(input_ids=torch.tensor([[1, 2, 3, 4]])).logits
    assert not torch.allclose(before, after)
    z = compress(text[:200], pm, tok, context_size=16, batch_size=2, verify=False)
    assert decompress(z, pm, tok) == text[:200].encode()
    with pm.disable_adapter(), pytest.raises(ValueError): decompress(z, pm, tok)
    with pytest.raises(ValueError, match="fewer than one window"): finetune_lora(load_model("tiny-random")[0], tok, "short", ctx=64)

def test_disabled_adapter_counts_as_no_adapter():
    "A file made with a PEFT model's adapter disabled is the base model's file; one made with it enabled needs it."
    from peft import LoraConfig, get_peft_model
    from qlora_course.llmzip import model_fingerprints
    m, tok = load_model("tiny-random"); base_fp = model_fingerprints(m)
    torch.manual_seed(0); pm = get_peft_model(m, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    text = b"The third of May, 2021, was a Monday. " * 2
    z = compress(text, pm, tok, context_size=32, verify=False)
    assert decompress(z, pm, tok) == text and model_fingerprints(pm)[1] != bytes(4)
    with pm.disable_adapter():
        assert model_fingerprints(pm) == base_fp            # only the base takes part in the forward pass
        with pytest.raises(ValueError, match="other adapter"): decompress(z, pm, tok)
        z0 = compress(text, pm, tok, context_size=32, verify=False)
        assert decompress(z0, pm, tok) == text
    with pytest.raises(ValueError, match="other adapter"): decompress(z0, pm, tok)

@pytest.mark.parametrize("engine", ["lean", "transformers"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_engines_round_trip_and_are_recorded(engine, dtype):
    "Either step engine, in either CPU dtype, codes and decodes the same text; the file says which engine made it."
    m, tok = load_model("tiny-random", dtype=dtype)
    s = CASES["mixed scripts"] * 2
    z = compress(s, m, tok, context_size=24, batch_size=3, engine=engine)   # verify=True decodes it too
    assert read_header(z)["engine"] == engine and decompress(z, m, tok) == s.encode()

def _max_logit_diff(model, rows=2, steps=6):
    from qlora_course.llmzip import StepRunner, stepper
    ids = torch.randint(0, model.config.vocab_size, (steps, rows), generator=torch.Generator().manual_seed(0))
    a, b = StepRunner(model, rows, 0), stepper(model, "lean")(rows, 0, steps + 1)
    return max((a.step(t) - b.step(t)).abs().max().item() for t in [None, *ids])

def test_lean_step_matches_transformers_on_other_llama_family_models():
    "Mistral, and Llama 3's scaled RoPE with attention and MLP biases and one key/value head: transformers' logits (float32)."
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM
    small = dict(vocab_size=500, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
    torch.manual_seed(0)
    mistral = MistralForCausalLM(MistralConfig(**small, num_key_value_heads=2, sliding_window=None)).eval()
    llama3 = LlamaForCausalLM(LlamaConfig(**small, num_key_value_heads=1, attention_bias=True, mlp_bias=True, rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=4))).eval()
    for m in (mistral, llama3):
        for n, p in m.named_parameters():
            if n.endswith("bias"): torch.nn.init.normal_(p, std=0.1)   # transformers starts biases at zero
        assert _max_logit_diff(m) < 1e-5
    windowed = MistralForCausalLM(MistralConfig(**small, num_key_value_heads=2, sliding_window=16)).eval()
    from qlora_course.llmzip import pick_engine, lean_support
    assert "sliding-window" in lean_support(windowed) and pick_engine(windowed) == "transformers"

def test_lean_file_needs_a_model_the_lean_step_runs(mt, monkeypatch):
    from qlora_course import llmzip
    z = compress("a short text", *mt, context_size=16, engine="lean", verify=False)
    monkeypatch.setattr(llmzip, "lean_support", lambda model: "it is a test double")
    with pytest.raises(ValueError, match="lean decode step, which cannot run the model given .it is a test double"): decompress(z, *mt)

def test_cli_engine_option(tmp_path):
    from qlora_course.cli import main
    src = tmp_path/"in.txt"; src.write_text("Which step made this file? " * 3)
    assert main(["zip", str(src), str(tmp_path/"a.llmz"), "--model", "tiny-random", "--context", "16", "--engine", "transformers"]) == 0
    assert read_header((tmp_path/"a.llmz").read_bytes())["engine"] == "transformers"
    assert main(["unzip", str(tmp_path/"a.llmz"), str(tmp_path/"out.txt"), "--model", "tiny-random"]) == 0
    assert (tmp_path/"out.txt").read_bytes() == src.read_bytes()
