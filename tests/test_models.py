"Model stage: loading from every source, quantization, bad inputs, and the CLI."
import os, subprocess, sys
from pathlib import Path
import pytest, torch

from qlora_course.models import (load_model, load_tokenizer, resolve_model, check_gguf, find_embedded_gguf,
                                 detect_lora_targets, count_params, model_bytes, random_model, cache_dir)

BIN = Path(sys.executable).parent

def run_cli(*args, env=None):
    return subprocess.run([str(BIN/"qlora-course"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)

def test_import_in_fresh_python():
    r = subprocess.run([sys.executable, "-c", "from qlora_course.models import load_model; print(load_model.__name__)"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "load_model"

def test_tiny_random_loads_and_runs():
    m, tok = load_model("tiny-random")
    ids = tok("hello world", return_tensors="pt")["input_ids"]
    out = m(input_ids=ids).logits
    assert out.shape == (1, ids.shape[1], len(tok))
    assert count_params(m) < 5_000_000

def test_nf4_linear_layers_are_4bit():
    import bitsandbytes as bnb
    m, _ = load_model("smollm2-135m-instruct", quant="nf4")
    lins = [mod for n, mod in m.named_modules() if n.endswith(("q_proj", "v_proj", "down_proj"))]
    assert len(lins) == 90 and all(isinstance(x, bnb.nn.Linear4bit) for x in lins)
    assert lins[0].weight.quant_state.quant_type == "nf4"
    full, _ = load_model("smollm2-135m-instruct")
    assert count_params(m) == count_params(full)
    assert model_bytes(m) < 0.45 * model_bytes(full)

def test_int8_loads():
    import bitsandbytes as bnb
    m, tok = load_model("tiny-random", quant="int8")
    assert any(isinstance(x, bnb.nn.Linear8bitLt) for x in m.modules())

def test_gguf_file_and_folder_paths(tmp_path):
    g = find_embedded_gguf()
    kind, where = resolve_model(str(g))
    assert kind == "folder" and (Path(where)/"model.safetensors").exists()
    # a HF folder loads as is
    m, tok = load_model(where)
    assert m.config.num_hidden_layers == 30

@pytest.mark.parametrize("bad,msg", [("no-such-model", "qlora-course models"), ("./missing/dir", "not found"),
                                     ("weights.bin", "not found")])
def test_bad_names(bad, msg):
    with pytest.raises(FileNotFoundError, match=msg): resolve_model(bad)

def test_corrupt_and_truncated_gguf(tmp_path):
    g = find_embedded_gguf().read_bytes()
    (tmp_path/"t.gguf").write_bytes(g[:len(g)//2])
    (tmp_path/"c.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    (tmp_path/"z.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="truncated"): load_model(tmp_path/"t.gguf")
    with pytest.raises(ValueError, match="corrupt or truncated"): check_gguf(tmp_path/"c.gguf")
    with pytest.raises(ValueError, match="not a GGUF"): check_gguf(tmp_path/"z.gguf")

def test_hub_id_without_network_is_clear():
    code = ("from qlora_course.models import load_model\n"
            "try: load_model('someone/not-a-real-model-xyz')\n"
            "except OSError as e: print('ERR', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "ERR" in r.stdout, r.stderr[-2000:]
    assert "hub" in r.stdout and "internet" in r.stdout and "smollm2-135m-instruct" in r.stdout

def test_lora_targets_of_a_random_model():
    m = random_model("tiny-random")
    assert detect_lora_targets(m) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with pytest.raises(ValueError): detect_lora_targets(m, "everything")

def test_cache_env_override(tmp_path):
    r = subprocess.run([sys.executable, "-c", "from qlora_course.models import cache_dir; print(cache_dir())"],
                       capture_output=True, text=True, env={**os.environ, "QLORA_COURSE_CACHE": str(tmp_path/"c")})
    assert r.stdout.strip() == str(tmp_path/"c") and (tmp_path/"c").is_dir()

def test_cli_help_lists_stages_and_models_command():
    r = run_cli("--help")
    assert r.returncode == 0 and "models" in r.stdout
    r = run_cli("models")
    assert r.returncode == 0 and "smollm2-135m-instruct" in r.stdout and str(cache_dir()) in r.stdout

def test_lora_targets_of_a_quantized_model():
    m, _ = load_model("tiny-random", quant="nf4")
    import bitsandbytes as bnb
    assert any(isinstance(x, bnb.nn.Linear4bit) for x in m.modules())
    assert detect_lora_targets(m) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# bitsandbytes takes a different 4-bit path on CPUs with AVX-512 bf16 (weights repacked for a fused bf16
# kernel in eval mode); `fused_cpu_4bit` takes that path on any CPU, so both are tested on every machine.
def test_both_cpu_4bit_paths_run_the_survey_loss():
    from qlora_course.models import fused_cpu_4bit, cpu_4bit_paths, _packed_cpu_ok, _linear4bit_layers
    from qlora_course.models import mean_loss
    heldout_loss = lambda m, rows: mean_loss(m, rows, pad_id=2)[0]   # the survey's held-out loss is the shared one
    import torch
    tok = load_tokenizer("tiny-random")
    ids = tok("The third of May, 2021, was a Monday.", add_special_tokens=False)["input_ids"]
    ds = [dict(input_ids=ids, attention_mask=[1]*len(ids), labels=[-100]*3 + ids[3:])] * 3
    plain_model, _ = load_model("tiny-random", quant="nf4")
    with torch.no_grad(): plain = heldout_loss(plain_model, ds)
    assert cpu_4bit_paths(plain_model)["fused-bf16"] == 0 or "avx512_bf16" in open("/proc/cpuinfo").read()
    with fused_cpu_4bit():
        m, _ = load_model("tiny-random", quant="nf4")
        paths = cpu_4bit_paths(m)
        assert paths["fused-bf16"] > 0 and paths["dequantize"] > 0      # both kinds of layer in one model
        assert all(_packed_cpu_ok(l) for l in _linear4bit_layers(m) if l.support_avx512bf16_for_cpu)
        with torch.no_grad(): fused = heldout_loss(m, ds)                # failed inside bitsandbytes before the fix
    assert any(getattr(l.weight.quant_state, "packing_format_for_cpu", False) for l in _linear4bit_layers(m))
    assert abs(fused - plain) < 0.02 * plain                              # bf16 compute: close, not equal

def test_fused_path_matches_dequantized_weights_on_the_real_model():
    from qlora_course.models import fused_cpu_4bit, _linear4bit_layers, _unpack_fused
    import bitsandbytes.functional as F, torch
    m, _ = load_model(quant="nf4")
    layer = _linear4bit_layers(m)[0]
    w = F.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    with fused_cpu_4bit():
        from bitsandbytes.nn import Linear4bit
        layer.support_avx512bf16_for_cpu = True
        x = torch.randn(2, layer.in_features)
        with torch.no_grad(): y = layer(x)
    assert layer.weight.quant_state.packing_format_for_cpu
    torch.testing.assert_close(_unpack_fused(layer.weight.data, layer.weight.quant_state), w, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(y, x @ w.T, rtol=0.05, atol=0.05)

def test_bitsandbytes_offline_kernel_warning_is_dropped_and_others_kept():
    code = ("import logging, qlora_course.models\n"
            "l = logging.getLogger('bitsandbytes.backends.cpu.ops')\n"
            "l.warning(\"Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'\")\n"
            "l.warning('kept warning')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "kernels-community" not in r.stderr and "kept warning" in r.stderr

def test_a_gguf_is_checked_and_hashed_once(monkeypatch, tmp_path):
    "resolve_model and load_model used to check and hash a .gguf file on every call (twice per load_model)."
    import qlora_course.models as M
    calls = {"hash": 0, "check": 0}
    real_hash, real_check = M._hash_dir, M.check_gguf
    def count_hash(p): calls["hash"] += 1; return tmp_path/"cache"
    def count_check(p): calls["check"] += 1; return real_check(p)
    def fake_convert(p, out): out.mkdir(parents=True, exist_ok=True); (out/"config.json").write_text("{}")
    monkeypatch.setattr(M, "_hash_dir", count_hash); monkeypatch.setattr(M, "check_gguf", count_check)
    monkeypatch.setattr(M, "gguf_to_hf", fake_convert); monkeypatch.setattr(M, "_GGUF_DIRS", {})
    g = M.find_embedded_gguf()
    for _ in range(3): assert M.resolve_model(g) == ("folder", str(tmp_path/"cache"))
    assert calls == {"hash": 1, "check": 1}

def test_generate_puts_the_padding_side_back_after_an_error():
    from qlora_course.models import generate
    m, tok = load_model("tiny-random")
    tok.padding_side = "right"
    def boom(**kw): raise RuntimeError("generation failed")
    m.generate = boom
    with pytest.raises(RuntimeError): generate(m, tok, ["Hi"])
    assert tok.padding_side == "right"

def test_end_of_turn_ids_of_other_chat_formats():
    "ChatML's <|im_end|>, Llama 3's <|eot_id|> and Gemma's <end_of_turn> are found, with the eos, each once."
    from qlora_course.models import end_of_turn_ids
    class Tok:  # as transformers' tokenizers look a token up: its id, else the unknown token's id (None without one)
        def __init__(self, vocab, eos, unk=None): self.v, self.eos_token, self.unk_token = vocab, eos, unk
        @property
        def unk_token_id(self): return self.v.get(self.unk_token)
        def convert_tokens_to_ids(self, t): return self.v.get(t, self.unk_token_id)
    for unk in (None, "<unk>"):   # an unknown token's stand-in id is never taken for an end-of-turn token
        u = {"<unk>": 5} if unk else {}
        assert end_of_turn_ids(Tok({"<|im_end|>": 2, "<|endoftext|>": 0, **u}, "<|im_end|>", unk)) == [2]
        assert end_of_turn_ids(Tok({"<|eot_id|>": 9, "<|end_of_text|>": 8, **u}, "<|end_of_text|>", unk)) == [9, 8]
        assert end_of_turn_ids(Tok({"<end_of_turn>": 107, "<eos>": 1, **u}, "<eos>", unk)) == [107, 1]
        assert end_of_turn_ids(Tok({"</s>": 2, **u}, None, unk)) == []
    assert end_of_turn_ids(Tok({"<unk>": 5}, "<unk>", "<unk>")) == [5]   # the eos may itself be the unknown token

# Issue 33: PEFT's `merge_and_unload()` reads a 4-bit weight through bitsandbytes' `dequantize_4bit`, which read a weight
# repacked for the fused bf16 CPU kernel (after any evaluation on an AVX-512 bf16 CPU) as the plain layout: the merged model
# was garbage (top-token agreement 0.0 on the real model). `load_model` makes `dequantize_4bit` read both layouts.
def _merged_after_an_evaluation(read_repacked=True):
    import torch, bitsandbytes.functional as F
    from unittest import mock
    from peft import LoraConfig, get_peft_model
    import qlora_course.models as M
    off = mock.patch.object(M, "_read_repacked_4bit", lambda: None) if not read_repacked else mock.patch.object(M, "_fit_cpu_4bit", M._fit_cpu_4bit)
    plain = getattr(F.dequantize_4bit, "plain", F.dequantize_4bit)
    with M.fused_cpu_4bit(), off, mock.patch.object(F, "dequantize_4bit", F.dequantize_4bit if read_repacked else plain):
        torch.manual_seed(0)
        m = get_peft_model(M.load_model("tiny-random", quant="nf4")[0], LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        lora = [l for l in m.modules() if hasattr(l, "lora_A") and M._packed_cpu_ok(l.base_layer)]
        want = [plain(l.base_layer.weight.data, l.base_layer.weight.quant_state).float() + l.get_delta_weight("default").float() for l in lora]
        m.eval()
        with torch.no_grad(): m(input_ids=torch.randint(3, 1000, (1, 8)))   # an evaluation: the fused path repacks
        packed = [l.base_layer.weight.quant_state.packing_format_for_cpu for l in lora]
        bases = [l.base_layer for l in lora]
        m.merge_and_unload()
        got = [plain(b.weight.data, b.weight.quant_state).float() for b in bases]
    # what a correct merge stores: W + BA quantized to NF4 afresh
    requant = [plain(*F.quantize_4bit(w, blocksize=64, quant_type="nf4")).float() for w in want]
    return packed, [((g - r).abs().mean() / r.abs().mean()).item() for g, r in zip(got, requant)]

def test_peft_merge_of_a_repacked_4bit_model_is_w_plus_ba_requantized():
    packed, errs = _merged_after_an_evaluation()
    assert packed and all(packed)
    assert max(errs) < 0.01, errs   # only the bf16 rounding of the block scales (a few flipped codes)

def test_peft_merge_without_the_fix_is_wrong():   # the check above fails on the bug it guards
    packed, errs = _merged_after_an_evaluation(read_repacked=False)
    assert all(packed) and min(errs) > 0.2, errs
