"Export stage: merge round trips, GGUF round trips for every output type, Modelfile template, bad inputs, CLI, llama.cpp (slow)."
import errno, json, shutil
import numpy as np, pytest, torch
from hypothesis import given, settings, strategies as st, HealthCheck
from transformers import AutoModelForCausalLM, AutoTokenizer

import qlora_course.export as ex
from qlora_course.models import tiny_random_dir, random_model, load_model
from qlora_course.cli import main as cli_main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A demo adapter on tiny-random and its fp32 merge."
    d = tmp_path_factory.mktemp("export")
    ad = ex.make_demo_adapter("tiny-random", d/"adapter", std=0.05, seed=1)
    merged = ex.merge_adapter("tiny-random", ad, d/"merged", dtype="fp32")
    return dict(dir=d, adapter=ad, merged=merged)

@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    "A 2-layer random Llama with a 400-token byte-level BPE tokenizer trained here (ChatML specials and template): GGUF files of it parse in milliseconds."
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast
    from qlora_course.models import data_dir
    bt = Tokenizer(models.BPE())
    bt.pre_tokenizer, bt.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bt.train_from_iterator([(data_dir()/"prose"/"heldout.txt").read_text()], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk = PreTrainedTokenizerFast(tokenizer_object=bt, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tk.chat_template = AutoTokenizer.from_pretrained(tiny_random_dir()).chat_template
    d = tmp_path_factory.mktemp("micro")/"micro"
    random_model("tiny-random", seed=3, vocab_size=len(tk)).save_pretrained(d); tk.save_pretrained(d)
    return d

@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(tiny_random_dir())


# ---------- merge ----------
def test_merged_folder_is_standard_and_matches_base_plus_adapter(tiny, tok):
    from peft import PeftModel
    m = tiny["merged"]
    for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (m/f).is_file(), f
    merged = AutoModelForCausalLM.from_pretrained(m)   # plain transformers, nothing else
    base, _ = load_model("tiny-random", device="cpu")
    L_base = ex.prompt_logits(base, tok, ["hello", "What is 2+2?"])
    ref = PeftModel.from_pretrained(base, str(tiny["adapter"]))
    L_ref = ex.prompt_logits(ref, tok, ["hello", "What is 2+2?"])
    d = ex.logit_diff(ex.prompt_logits(merged, tok, ["hello", "What is 2+2?"]), L_ref)
    assert d["max_abs"] < 1e-4
    assert ex.logit_diff(L_base, L_ref)["max_abs"] > 100 * d["max_abs"]   # the adapter really changed the model
    assert AutoTokenizer.from_pretrained(m).chat_template == tok.chat_template
    assert 2 in np.atleast_1d(merged.generation_config.eos_token_id)
    info = json.loads((m/"export.json").read_text())
    assert info["lora_layers"] == 14 and info["dtype"] == "float32"

@pytest.mark.parametrize("dtype,torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_merge_dtypes(tiny, dtype, torch_dtype):
    from safetensors import safe_open
    out = ex.merge_adapter("tiny-random", tiny["adapter"], tiny["dir"]/f"m-{dtype}", dtype=dtype)
    with safe_open(str(out/"model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.self_attn.q_proj.weight").dtype == torch_dtype

def test_adapter_for_another_base_is_refused(tmp_path, capsys):
    other = tmp_path/"other-base"
    m = random_model("tiny-random", hidden_size=48, head_dim=12)
    m.save_pretrained(other); AutoTokenizer.from_pretrained(tiny_random_dir()).save_pretrained(other)
    ad = ex.make_demo_adapter(str(other), tmp_path/"ad")
    with pytest.raises(ValueError, match="was made for"):
        ex.merge_adapter("tiny-random", ad, tmp_path/"out")
    assert not (tmp_path/"out").exists()
    assert cli_main(["merge", "--base", "tiny-random", "--adapter", str(ad), "--out", str(tmp_path/"out")]) == 2
    errs = [l for l in capsys.readouterr().err.splitlines() if l.startswith("qlora-course merge: error:")]
    assert len(errs) == 1 and "does not fit this base" in errs[0] and str(other) in errs[0]

def test_missing_adapter_files(tmp_path, capsys):
    assert cli_main(["merge", "--base", "tiny-random", "--adapter", str(tmp_path/"nope"), "--out", str(tmp_path/"o")]) == 2
    assert "Adapter folder not found" in capsys.readouterr().err
    (tmp_path/"half").mkdir(); (tmp_path/"half"/"adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors is missing"):
        ex.read_adapter(tmp_path/"half")
    (tmp_path/"half"/"adapter_config.json").write_text('{"peft_type": ')
    (tmp_path/"half"/"adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not valid JSON"):
        ex.read_adapter(tmp_path/"half")

def test_merge_full_disk_leaves_nothing(tiny, tmp_path, monkeypatch):
    import transformers.modeling_utils as mu
    def full(*a, **k): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(mu, "safe_save_file", full)
    with pytest.raises(OSError, match="disk filled up") as e:
        ex.merge_adapter("tiny-random", tiny["adapter"], tmp_path/"merged")
    assert e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []   # no half-written folder, no temporary folder

def test_low_disk_space_is_refused_before_writing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(ex.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match="Not enough disk space"):
        ex.write_gguf(tiny["merged"], tmp_path/"x.gguf", "f16")
    assert list(tmp_path.iterdir()) == []


def test_check_prompts_come_from_the_test_split():
    "The merge check's prompts are the task's test records, split as the data stage splits it: none is a training record."
    from qlora_course.data import prompt_and_answer
    train = {prompt_and_answer(r)[0][-1]["content"] for r in ex.task_records(split="train", system="")}
    ps = ex.heldout_prompts(120)
    assert len(ps) == 120 and not [p for p in ps if p in train]
    assert ps[:3] == [prompt_and_answer(r)[0][-1]["content"] for r in ex.task_records(3)]
    assert ex.task_records(1)[0]["messages"][0] == {"role": "system", "content": "Answer briefly."}


# ---------- GGUF ----------
@pytest.mark.parametrize("t", list(ex.OUT_TYPES))
def test_gguf_round_trip_every_type(micro, tmp_path, t):
    f = ex.write_gguf(micro, tmp_path/f"m-{t}.gguf", t)
    meta = ex.read_gguf_meta(f, weights=True)
    assert meta["architecture"] == "llama" and meta["block_count"] == 2 and meta["n_tokens"] == 400 and meta["pre"] == "gpt-2"
    assert meta["chat_template"] == AutoTokenizer.from_pretrained(micro).chat_template and (meta["bos"], meta["eos"]) == (1, 2)
    want = {"token_embd.weight", "output_norm.weight"} | {f"blk.{i}.{n}.weight" for i in range(2) for n in
            ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm", "ffn_norm")}
    assert set(meta["tensors"]) == want   # tied embeddings: no separate output.weight
    assert meta["tensors"]["blk.0.attn_k.weight"][0] == (16, 32)
    assert meta["tensors"]["blk.0.attn_norm.weight"][1] == "F32"
    assert meta["file_type"] == ex._FILE_TYPES[t]
    r = ex.verify_gguf(f, micro, ["hello", "2021-03-05"], t, meta=meta, n_answers=2)   # includes transformers' own loader
    if t == "f32": assert r["max_weight_err"] == 0.0 and r["max_abs"] == 0.0
    if t == "f16": assert r["max_abs"] < 1e-2
    if t in ("f16", "bf16", "q8_0"): assert r["argmax_agree"] == 1.0 and r["same_answers"]
    if t == "q8_0": assert 0 < r["max_weight_err"] < 0.01
    if t == "q4_0": assert r["tensor_types"] == {"F32": 5, "Q8_0": 1, "Q4_0": 14}
    tg = AutoTokenizer.from_pretrained(f.parent, gguf_file=f.name)   # the tokenizer survives the trip too
    s = AutoTokenizer.from_pretrained(micro).apply_chat_template([{"role": "user", "content": "the 5th of March 2021"}], add_generation_prompt=True, tokenize=False)
    assert tg(s).input_ids == AutoTokenizer.from_pretrained(micro)(s).input_ids

def test_verify_catches_a_wrong_file(micro, tmp_path):
    "verify_gguf must fail on a file whose weights do not match the folder (here: Q left in HF's layout) or which is cut short."
    f = ex.write_gguf(micro, tmp_path/"m.gguf", "f32")
    meta = ex.read_gguf_meta(f, weights=True)
    meta["weights"]["blk.1.attn_q.weight"] = ex.permute_qk(meta["weights"]["blk.1.attn_q.weight"], 4)
    with pytest.raises(ValueError, match="does not read back as written"):
        ex.verify_gguf(f, micro, meta=meta, with_transformers=False)
    cut = tmp_path/"cut.gguf"; cut.write_bytes(f.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="truncated"):
        ex.read_gguf_meta(cut)

def test_gguf_untied_output_is_written(micro, tmp_path):
    m = random_model("tiny-random", vocab_size=400, tie_word_embeddings=False)
    m.save_pretrained(tmp_path/"untied"); AutoTokenizer.from_pretrained(micro).save_pretrained(tmp_path/"untied")
    f = ex.write_gguf(tmp_path/"untied", tmp_path/"u.gguf", "f16")
    r = ex.verify_gguf(f, tmp_path/"untied")
    assert r["tensors"] == 21 and "output.weight" in ex.read_gguf_meta(f)["tensors"] and r["argmax_agree"] == 1.0

def test_gguf_full_disk_leaves_nothing(micro, tmp_path, monkeypatch):
    import gguf
    def full(self, **k): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    with pytest.raises(OSError, match="disk filled up") as e:
        ex.write_gguf(micro, tmp_path/"m.gguf", "q8_0")
    assert e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []

def test_unsupported_architecture(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel
    d = tmp_path/"gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=49152)).save_pretrained(d)
    with pytest.raises(ValueError, match="convert_hf_to_gguf.py"):
        ex.write_gguf(d, tmp_path/"x.gguf")
    assert cli_main(["gguf", str(d)]) == 2
    assert "architecture 'gpt2' is not supported" in capsys.readouterr().err

def test_unknown_output_type(tiny, capsys):
    assert cli_main(["gguf", str(tiny["merged"]), "--type", "iq4_xs"]) == 2
    err = capsys.readouterr().err
    assert "F32, F16, BF16, Q8_0, Q4_0" in err and "llama-quantize" in err
    assert not list(tiny["merged"].glob("*.gguf"))

def test_gguf_into_a_new_out_dir(tmp_path, capsys):
    "`gguf --out-dir` may name a folder that does not exist yet (it is made); a file there is refused."
    assert cli_main(["gguf", str(tiny_random_dir()), "--type", "q8_0", "--out-dir", str(tmp_path/"new"/"deeper"), "--no-verify"]) == 0
    assert sorted(p.name for p in (tmp_path/"new"/"deeper").iterdir()) == ["Modelfile", "README.md", "tiny-random-Q8_0.gguf"]
    (tmp_path/"f").write_text("x")
    assert cli_main(["gguf", str(tiny_random_dir()), "--out-dir", str(tmp_path/"f"), "--no-verify"]) == 2
    assert "not a folder" in capsys.readouterr().err and (tmp_path/"f").read_text() == "x"

def test_missing_model_folder(tmp_path, capsys):
    assert cli_main(["gguf", str(tmp_path/"none")]) == 2
    assert "not found" in capsys.readouterr().err

@settings(max_examples=50, deadline=None)
@given(n_head=st.integers(1, 8), half=st.integers(1, 8), cols=st.integers(1, 5))
def test_qk_permutation_round_trip(n_head, half, cols):
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
    w = np.arange(n_head * half * 2 * cols, dtype=np.float32).reshape(n_head * half * 2, cols)
    p = ex.permute_qk(w, n_head)
    assert np.array_equal(ex.unpermute_qk(p, n_head), w)
    tp = LlamaTensorProcessor({"num_attention_heads": n_head, "num_key_value_heads": n_head})
    assert np.array_equal(tp.process(p, "blk.0.attn_q.weight").weights, w)   # what transformers undoes when it loads GGUF
    if half > 1: assert not np.array_equal(p, w)


# ---------- Ollama ----------
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(_text, _text), min_size=0, max_size=3), last=_text,
       system=st.one_of(st.none(), _text.filter(bool)), mf_system=st.one_of(st.none(), _text.filter(lambda s: bool(s) and '"""' not in s)))
def test_modelfile_template_renders_like_the_chat_template(tok, turns, last, system, mf_system):
    msgs = ([{"role": "system", "content": system}] if system else [])
    for u, a in turns: msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    msgs.append({"role": "user", "content": last})
    mf = ex.modelfile_text("m.gguf", tok, system=mf_system)
    want_msgs = msgs if system or not mf_system else [{"role": "system", "content": mf_system}] + msgs
    assert ex.ollama_prompt(mf, msgs) == tok.apply_chat_template(want_msgs, add_generation_prompt=True, tokenize=False)

def test_modelfile_default_system_and_stops(tok, tmp_path, capsys):
    (tmp_path/"m.gguf").write_bytes(b"")
    mf = ex.write_modelfile(tmp_path/"m.gguf", tok)
    assert "ollama create m -f" in capsys.readouterr().out
    parsed = ex.parse_modelfile(mf.read_text())
    assert parsed["FROM"] == "./m.gguf"
    assert parsed["SYSTEM"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert ('stop', '"<|im_end|>"') in parsed["PARAMETER"]
    assert {k for k, _ in parsed["PARAMETER"]} >= {"stop", "temperature", "top_p"}
    msgs = [{"role": "user", "content": "hi"}]
    assert ex.ollama_prompt(mf.read_text(), msgs) == tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

def test_an_unknown_chat_format_is_refused(tmp_path):
    t = AutoTokenizer.from_pretrained(tiny_random_dir())
    t.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ValueError, match="renders like none of the Modelfile templates"):
        ex.modelfile_text("m.gguf", t)


# ---------- CLI ----------
def test_cli_merge_then_gguf(tiny, tmp_path, capsys):
    out = tmp_path/"merged"
    assert cli_main(["merge", "--base", "tiny-random", "--adapter", str(tiny["adapter"]), "--out", str(out), "--dtype", "fp32", "--prompts", "2"]) == 0
    o = capsys.readouterr().out
    assert "greedy answers identical" in o
    assert cli_main(["gguf", str(out), "--type", "f16", "--type", "Q8_0", "--system", "You convert dates.", "--no-verify"]) == 0
    o = capsys.readouterr().out
    assert "merged-F16.gguf" in o and "merged-Q8_0.gguf" in o and "ollama run" in o
    assert ex.parse_modelfile((out/"Modelfile").read_text())["SYSTEM"] == "You convert dates."
    # issue 32: the merged folder's card holds the merge's check; the GGUF files in the same folder add a section to it (once)
    card = (out/"README.md").read_text()
    from qlora_course.train import _front_matter
    meta = _front_matter(card)
    assert meta["base_model"] == "tiny-random" and meta["library_name"] == "transformers" and "qlora-course" in meta["tags"]
    assert "max logit difference" in card and "top token agrees 100.0%" in card and card.count("## GGUF files") == 1
    assert "`merged-F16.gguf` | F16" in card and "`merged-Q8_0.gguf` | Q8_0" in card
    assert "README.md" in json.loads((out/"export.json").read_text())["files"]   # a later merge --force replaces it
    assert cli_main(["gguf", str(out), "--type", "f16", "--no-verify", "--force"]) == 0 and (out/"README.md").read_text().count("## GGUF files") == 1

def test_gguf_card_in_its_own_folder_and_beside_someone_elses_readme(tiny, tmp_path, capsys):
    from qlora_course.train import _front_matter
    assert cli_main(["gguf", str(tiny["merged"]), "--type", "q8_0", "--out-dir", str(tmp_path/"g"), "--no-verify"]) == 0
    meta = _front_matter((tmp_path/"g"/"README.md").read_text())
    assert (meta["base_model"], meta["library_name"]) == ("tiny-random", "gguf") and "gguf" in meta["tags"]
    (tmp_path/"mine").mkdir(); (tmp_path/"mine"/"README.md").write_text("# my notes\n")
    assert cli_main(["gguf", str(tiny["merged"]), "--type", "q8_0", "--out-dir", str(tmp_path/"mine"), "--no-verify"]) == 0
    assert (tmp_path/"mine"/"README.md").read_text() == "# my notes\n" and "left as it is" in capsys.readouterr().out


# ---------- llama.cpp itself (slow: needs llama-cpp-python, which builds from source) ----------
@pytest.mark.slow
def test_llama_cpp_runs_the_gguf_like_the_merged_model(tmp_path, merged_demo):
    llama_cpp = pytest.importorskip("llama_cpp")
    merged, tok, ref, prompts, want = merged_demo
    L_ref = ex.prompt_logits(ref, tok, prompts)
    for t in ("f16", "q8_0"):
        f = ex.write_gguf(merged, tmp_path/f"m-{t}.gguf", t)
        llm = ex.load_llama(f, n_ctx=512, seed=0, logits_all=True)
        got, L = [], []
        for p in prompts:
            text = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            ids = llm.tokenize(text.encode(), add_bos=False, special=True)
            assert ids == tok(text).input_ids, f"{t}: llama.cpp tokenizes the chat prompt differently"
            llm.reset(); llm.eval(ids)
            L.append(torch.tensor(np.array(llm.scores[:len(ids)]), dtype=torch.float32))
            out = llm.create_completion(ids, max_tokens=24, temperature=0.0, top_k=1)
            got.append(out["choices"][0]["text"].strip())
        d = ex.logit_diff(L, L_ref)
        print(t, got, want, {k: round(v, 4) for k, v in d.items()})
        if t == "f16":   # llama.cpp computes in its own kernels (f16 weights, f32 accumulation): same answers, close logits
            assert got == want and d["max_abs"] < 0.5 and d["argmax_agree"] > 0.99
        else:            # Q8_0 weights, and llama.cpp also rounds the activations to 8 bits in its Q8_0 matmuls; the noisy
                         # demo adapter leaves some answers on a knife edge, so a long answer may drift (measured: 2 of 4 identical)
            assert d["mean_abs"] < 0.5 and d["argmax_agree"] > 0.9 and sum(a == b for a, b in zip(got, want)) >= len(want) // 2
