"""GGUF export beyond Llama: Llama-3 RoPE scaling, Mistral, Qwen2 (biases), Gemma 3 (norms, sliding windows), each on a small random model
of its architecture with the course tokenizer; read back by gguf-py and transformers, and by llama.cpp where the `llama` extra is installed."""
import json
import numpy as np, pytest, torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

import qlora_course.export as ex

PROMPTS = ["What is the capital of France? Tell me about its long history in a few sentences, please.", "2021-03-05"]

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("archs")
    return {k: ex.tiny_arch_folder(k, d/k) for k in ex.TINY_ARCHS}

def _llama_cpp_diff(f, folder, prompts=PROMPTS):
    tok = AutoTokenizer.from_pretrained(folder)
    llm = ex.load_llama(f, n_ctx=128, logits_all=True)
    try: got = ex.llama_logits(llm, tok, prompts)
    finally: llm.close()
    return ex.logit_diff(got, ex.prompt_logits(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), tok, prompts))

@pytest.mark.parametrize("kind", ex.TINY_ARCHS)
def test_each_architecture_round_trips(folders, tmp_path, kind):
    d = folders[kind]
    cfg = AutoConfig.from_pretrained(d)
    f = ex.write_gguf(d, tmp_path/"m-F32.gguf", "f32")
    meta = ex.read_gguf_meta(f, weights=True)
    assert meta["architecture"] == ex.GGUF_ARCHS[cfg.model_type]
    r = ex.verify_gguf(f, d, PROMPTS, "f32", meta=meta)   # every tensor bit for bit, then transformers' loader: logits
    assert r["max_weight_err"] == 0.0 and r["max_abs"] < 1e-4 and r["argmax_agree"] == 1.0
    q = ex.write_gguf(d, tmp_path/"m-Q8_0.gguf", "q8_0")
    rq = ex.verify_gguf(q, d, PROMPTS, "q8_0")
    assert 0 < rq["max_weight_err"] < 0.05 and rq["mean_abs"] < 0.05

def test_what_each_architecture_writes(folders, tmp_path):
    "The tensors and keys that differ between architectures are where llama.cpp looks for them."
    qw = ex.read_gguf_meta(ex.write_gguf(folders["qwen2"], tmp_path/"q.gguf", "f32"), weights=True)
    assert {"blk.0.attn_q.bias", "blk.2.attn_v.bias"} <= set(qw["tensors"]) and "output.weight" not in qw["tensors"]
    l3 = ex.read_gguf_meta(ex.write_gguf(folders["llama3"], tmp_path/"l3.gguf", "f32"), weights=True)
    cfg = AutoConfig.from_pretrained(folders["llama3"])
    f = l3["weights"]["rope_freqs.weight"]   # divisors: 1 for the fast frequencies, the factor (8) for the slow ones, smooth between
    assert f.shape == (8,) and f[0] == 1.0 and f[-1] == pytest.approx(8.0) and (np.diff(f) >= 0).all() and 1 < f[1] < 8
    g = ex.read_gguf_meta(ex.write_gguf(folders["gemma3"], tmp_path/"g.gguf", "f32"), weights=True)
    hf = dict(ex._hf_tensors(folders["gemma3"]))
    np.testing.assert_array_equal(g["weights"]["blk.1.attn_q_norm.weight"], hf["model.layers.1.self_attn.q_norm.weight"] + 1)
    import gguf
    r = gguf.GGUFReader(str(tmp_path/"g.gguf"))
    assert [bool(x) for x in r.fields["gemma3.attention.sliding_window_pattern"].contents()] == [True, False, True]
    assert r.fields["gemma3.rope.freq_base_swa"].contents() == 1000.0 and r.fields["gemma3.rope.scaling.factor"].contents() == 4.0
    mi = gguf.GGUFReader(str(ex.write_gguf(folders["mistral"], tmp_path/"mi.gguf", "f32")))
    assert mi.fields["general.architecture"].contents() == "llama" and mi.fields["llama.context_length"].contents() == 128  # its window

def test_unsupported_features_are_refused(tmp_path):
    from transformers import Qwen2Config, Gemma3TextConfig, LlamaConfig
    for cfg, what in ((Qwen2Config(use_sliding_window=True), "sliding-window attention"), (LlamaConfig(attention_bias=True), "biases"),
                      (Gemma3TextConfig(attn_logit_softcapping=50.0), "soft-capping"),
                      (Gemma3TextConfig(query_pre_attn_scalar=168, head_dim=128), "query_pre_attn_scalar"),
                      (LlamaConfig(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "'yarn'")):
        with pytest.raises(ValueError, match=what): ex.check_gguf_arch(cfg)
    from transformers import Phi3Config
    with pytest.raises(ValueError, match="llama, mistral, qwen2, gemma3_text"): ex.check_gguf_arch(Phi3Config())

def test_qwen2_pre_tokenizer_is_named():
    split = lambda rx: {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": rx}}, {"type": "ByteLevel"}]}
    assert ex.pre_tokenizer_name({"pre_tokenizer": split(ex._QWEN2_SPLIT)}) == "qwen2"
    assert ex.pre_tokenizer_name({"pre_tokenizer": split(ex._LLAMA3_SPLIT)}) == "llama-bpe"
    with pytest.raises(ValueError, match="Unknown pre-tokenizer"): ex.pre_tokenizer_name({"pre_tokenizer": split(r"\s+")})


# ---------- llama.cpp itself (the `llama` extra) ----------
@pytest.mark.parametrize("kind", ex.TINY_ARCHS)
def test_llama_cpp_runs_each_architecture_like_transformers(folders, tmp_path, kind):
    pytest.importorskip("llama_cpp")
    f = ex.write_gguf(folders[kind], tmp_path/"m-F32.gguf", "f32")
    d = _llama_cpp_diff(f, folders[kind])   # the first prompt is longer than Gemma's 6-token window: the sliding layers are exercised
    assert d["max_abs"] < 2e-3 and d["argmax_agree"] == 1.0, d

def test_llama3_rope_factors_are_what_llama_cpp_needs(folders, tmp_path, monkeypatch):
    "Without its rope_freqs tensor the Llama-3 file runs with plain RoPE: llama.cpp's logits move (on this small random model) 20x further off."
    pytest.importorskip("llama_cpp")
    right = _llama_cpp_diff(ex.write_gguf(folders["llama3"], tmp_path/"scaled.gguf", "f32"), folders["llama3"])
    monkeypatch.setattr(ex, "rope_factors", lambda cfg: None)
    plain = _llama_cpp_diff(ex.write_gguf(folders["llama3"], tmp_path/"plain.gguf", "f32"), folders["llama3"])
    assert plain["max_abs"] > 10 * right["max_abs"] and plain["mean_abs"] > 10 * right["mean_abs"], (plain, right)


# ---------- Modelfile templates beyond ChatML ----------
from hypothesis import given, settings, strategies as st, HealthCheck

FAMILIES = {"qwen2.5": "chatml", "llama3": "llama3", "gemma": "gemma", "gemma3": "gemma", "mistral": "mistral"}

def _family(f):
    if f == "mistral": pytest.importorskip("llama_cpp")   # Mistral's own template is read from llama-cpp-python's copy
    return ex.family_tokenizer(f)

@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_gets_its_proven_template_and_stops(family):
    tok = _family(family)
    assert ex.chat_format(tok) == FAMILIES[family]
    mf = ex.parse_modelfile(ex.modelfile_text("m.gguf", tok))
    stops = [v.strip('"') for k, v in mf["PARAMETER"] if k == "stop"]
    assert stops[0] == ex.CHAT_STOPS[FAMILIES[family]][0] and tok.eos_token in stops
    assert mf.get("SYSTEM") == ("You are Qwen, created by Alibaba Cloud. You are a helpful assistant." if family == "qwen2.5" else None)

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30).map(str.strip)   # Llama-3's and Gemma's templates trim contents

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(family=st.sampled_from(["qwen2.5", "llama3", "gemma", "gemma3"]), turns=st.lists(st.tuples(_text, _text), max_size=3), last=_text,
       system=st.one_of(st.none(), _text.filter(bool)), mf_system=st.one_of(st.none(), _text.filter(lambda s: bool(s) and '"""' not in s)))
def test_family_templates_render_like_their_own_on_any_conversation(family, turns, last, system, mf_system):
    tok = ex.family_tokenizer(family)
    msgs = ([{"role": "system", "content": system}] if system else [])
    for u, a in turns: msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    msgs.append({"role": "user", "content": last})
    mf = ex.modelfile_text("m.gguf", tok, system=mf_system)
    sys_ = system or mf_system or ex.default_system_prompt(tok)
    want = ex.hf_prompt(tok, ([{"role": "system", "content": sys_}] if sys_ and not system else []) + msgs)
    if want is not None: assert ex.ollama_prompt(mf, msgs) == want   # None: the family's template refuses a system turn (Gemma 1/2)

def test_a_template_that_differs_by_one_newline_is_refused():
    tok = ex.family_tokenizer("llama3")
    tok.chat_template = tok.chat_template.replace("<|end_header_id|>\n\n'", "<|end_header_id|>\n'")
    with pytest.raises(ValueError, match="renders like none of the Modelfile templates"): ex.chat_format(tok)

def test_go_template_subset():
    r = ex.render_go_template
    data = {"L": [{"x": 1}, {"x": 2}, {"x": 3}], "S": "s", "E": ""}
    assert r('{{ range $i, $m := .L }}{{ if eq $i 0 }}first {{ else if eq .x 2 }}two {{ else }}{{ $m.x }} {{ end }}{{ end }}', data) == "first two 3 "
    assert r('{{ len .L }} {{ and (eq 1 1) $.S }}|{{ or .E "d" }}|{{ if not .E }}empty{{ end }}|{{ ne .S "s" }}', data) == "3 s|d|empty|false"
    for bad, msg in (('{{ printf "%s" .S }}', "outside the subset"), ("{{ if .S }}x", "without end"), ("{{ end }}", "unexpected"),
                     ("{{ (eq .S }}", "unbalanced")):
        with pytest.raises(ValueError, match=msg): r(bad, data)

def test_an_unproven_chat_format_is_refused_before_any_file(tmp_path):
    d = ex.tiny_arch_folder("llama", tmp_path/"m")
    t = AutoTokenizer.from_pretrained(d)
    t.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"; t.save_pretrained(d)
    with pytest.raises(ValueError, match="--no-modelfile"): ex.export_gguf(d, tmp_path/"out", ["f32"])
    assert not (tmp_path/"out").exists() or not list((tmp_path/"out").iterdir())
    assert ex.export_gguf(d, tmp_path/"out", ["f32"], modelfile=False, with_transformers=False)[0]["tensors"] > 0
