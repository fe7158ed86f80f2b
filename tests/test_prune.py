"Tests of qlora_course.prune on the tiny-random model: real shape changes, round trips, permanent zeros, bad inputs."
import tempfile
from argparse import Namespace
from pathlib import Path
import pytest, torch
from hypothesis import given, settings, strategies as st
from transformers import AutoModelForCausalLM
from qlora_course.models import load_model, count_params, arch_config, random_model
from qlora_course.prune import (prune_structured, prune_unstructured, prune_plan, sparsity_mask, calibration_batches,
                                weight_scores, measure_model, parse_nm, save_model_folder, prune_main, STRUCT_METHODS)
from qlora_course.cli import main as cli_main

@pytest.fixture(scope="module")
def tiny():
    m, tok = load_model("tiny-random", device="cpu")
    return m, tok, calibration_batches(tok, n_batches=2, batch_size=2, seq_len=16)

@pytest.mark.parametrize("method", STRUCT_METHODS)
def test_structured_smaller_and_round_trips(tiny, method, tmp_path):
    m, tok, cal = tiny
    big = random_model("tiny-random", hidden_size=48, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2, intermediate_size=96)
    small = prune_structured(big, 0.5, method, batches=cal)
    c = small.config
    assert count_params(small) < count_params(big)
    assert c.num_attention_heads % c.num_key_value_heads == 0 and c.num_key_value_heads == 2
    assert c.num_hidden_layers < 4 and c.intermediate_size < 96
    small.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path)
    x = cal[0]
    with torch.no_grad(): assert torch.allclose(back(input_ids=x).logits, small(input_ids=x).logits, atol=1e-5)
    assert (tmp_path/"model.safetensors").stat().st_size < 4 * count_params(big)

def test_structured_zero_sparsity_is_identity(tiny):
    m, tok, cal = tiny
    same = prune_structured(m, 0.0, "l2")
    with torch.no_grad(): assert torch.allclose(same(input_ids=cal[0]).logits, m(input_ids=cal[0]).logits, atol=1e-5)

def test_structured_keeps_the_most_important_heads():
    # make one head of layer 0 huge: l2 must keep it
    m = random_model("tiny-random", num_attention_heads=4, num_key_value_heads=2)
    hd = m.config.head_dim
    with torch.no_grad(): m.model.layers[0].self_attn.q_proj.weight[3*hd:4*hd] *= 100
    small = prune_structured(m, 0.2, "l2", heads_per_group=1, layer_share=0)
    q = small.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(q[hd:2*hd], m.model.layers[0].self_attn.q_proj.weight[3*hd:4*hd])

@pytest.mark.parametrize("s", [0.1, 0.2, 0.3])
def test_plan_hits_the_target(s):
    c = arch_config("smollm2-135m"); pl = prune_plan(c, s)
    from qlora_course.prune import _block_params
    kept = pl["num_hidden_layers"] * _block_params(c, pl["num_attention_heads"], pl["intermediate_size"])
    assert abs(1 - kept / (30 * _block_params(c, 9, 1536)) - s) < 0.01

@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_bad_sparsity(tiny, bad):
    m, tok, cal = tiny
    with pytest.raises(ValueError, match="sparsity must be"): prune_structured(m, bad, "l2")
    with pytest.raises(ValueError, match="sparsity must be"): prune_unstructured(m, "magnitude", bad)

def test_unknown_methods(tiny):
    m, tok, cal = tiny
    with pytest.raises(ValueError, match="Unknown structured"): prune_structured(m, 0.2, "fisher")
    with pytest.raises(ValueError, match="Unknown unstructured"): prune_unstructured(m, "sparsegpt", 0.5)
    with pytest.raises(ValueError, match="calibration"): weight_scores(m, "taylor")
    with pytest.raises(ValueError, match="calibration"): prune_unstructured(m, "wanda", 0.5)

@pytest.mark.parametrize("method", ["magnitude", "wanda"])
@pytest.mark.parametrize("nm", [None, (2, 4), (4, 8)])
def test_unstructured_zeros_are_permanent(tiny, method, nm, tmp_path):
    _, tok, cal = tiny
    m = random_model("tiny-random")
    r = prune_unstructured(m, method, 0.5, nm=nm, batches=cal)
    assert abs(r["sparsity"] - 0.5) < 0.01
    m.save_pretrained(tmp_path); back = AutoModelForCausalLM.from_pretrained(tmp_path)
    for (n, a), b in zip(m.named_parameters(), back.parameters()):
        assert torch.equal(a == 0, b == 0), n
    if nm:
        w = back.model.layers[1].mlp.down_proj.weight
        assert ((w.view(w.shape[0], -1, nm[1]) != 0).sum(-1) <= nm[0]).all()

def test_wanda_uses_activations(tiny):
    _, tok, cal = tiny
    a, b = random_model("tiny-random"), random_model("tiny-random")
    prune_unstructured(a, "magnitude", 0.5); prune_unstructured(b, "wanda", 0.5, batches=cal)
    assert not torch.equal(a.model.layers[0].mlp.up_proj.weight == 0, b.model.layers[0].mlp.up_proj.weight == 0)

@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 5), groups=st.integers(1, 6), s=st.floats(0, 0.95))
def test_mask_fuzz(rows, groups, s):
    score = torch.rand(rows, groups * 4)
    keep = sparsity_mask(score, s)
    k = score.shape[1] - int(round(score.shape[1] * s))
    assert (keep.sum(1) == k).all()
    # every kept score is >= every dropped score in its row
    for r in range(rows):
        if 0 < k < score.shape[1]: assert score[r][keep[r]].min() >= score[r][~keep[r]].max()
    assert (sparsity_mask(score, nm=(2, 4)).view(rows, -1, 4).sum(-1) == 2).all()

def test_cli(tmp_path):
    out = tmp_path/"p"
    assert cli_main(["prune", "--model", "tiny-random", "--method", "random", "--sparsity", "0.3", "--out", str(out)]) == 0
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers >= 1
    assert cli_main(["prune", "--model", "tiny-random", "--method", "nope", "--out", str(out)]) == 2
    assert cli_main(["prune", "--model", "tiny-random", "--method", "l2", "--sparsity", "1.5", "--out", str(out)]) == 2
    assert cli_main(["prune", "--model", "tiny-random", "--method", "wanda", "--nm", "2-4", "--out", str(out)]) == 2
    assert cli_main(["prune", "--model", "tiny-random", "--method", "magnitude", "--nm", "2:4", "--out", str(out)]) == 2  # not empty
    (out/"notes.txt").write_text("mine")   # --force: replaces the model's files, keeps the rest
    prune_main(Namespace(model="tiny-random", method="magnitude", sparsity=0.25, nm="2:4", calib=None, calib_batches=4, out=str(out), force=True))
    assert (out/"notes.txt").read_text() == "mine"
    w = AutoModelForCausalLM.from_pretrained(out).model.layers[0].mlp.up_proj.weight
    assert ((w.view(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all()

@pytest.mark.parametrize("bad", ["2-4", "2:x", "2:4:8", "4:2", "0:4", ":", ""])
def test_parse_nm_refuses(bad):
    with pytest.raises(ValueError, match="--nm"): parse_nm(bad)

def test_parse_nm():
    assert parse_nm("2:4") == (2, 4) and parse_nm(" 4 : 8 ") == (4, 8)

def test_calibration_text_is_read_by_the_data_stage_reader(tmp_path):
    "prune and distill read their text files with `qlora_course.data.read_text`."
    from qlora_course.data import read_text as read_text_file
    (tmp_path/"ok.txt").write_text("héllo", encoding="utf-8")
    assert read_text_file(tmp_path/"ok.txt") == "héllo"
    (tmp_path/"u16.txt").write_bytes("héllo".encode("utf-16"))
    with pytest.raises(ValueError, match="UTF-16.*iconv -f UTF-16 -t UTF-8"): read_text_file(tmp_path/"u16.txt")
    (tmp_path/"bin.txt").write_bytes(b"\xff\x00\x80garbage")
    with pytest.raises(ValueError, match="not UTF-8"): read_text_file(tmp_path/"bin.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"): read_text_file(tmp_path/"missing.txt")
    with pytest.raises(IsADirectoryError): read_text_file(tmp_path)

def test_save_model_folder_is_atomic(tiny, tmp_path):
    m, tok, _ = tiny
    class Interrupted:   # Ctrl-C after part of the weights is written
        def save_pretrained(self, d, **kw): (d/"model.safetensors").write_bytes(b"half"); raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): save_model_folder(Interrupted(), tok, tmp_path/"new")
    assert list(tmp_path.iterdir()) == []                      # no half-written folder, no temporary left
    (tmp_path/"old").mkdir(); (tmp_path/"old"/"notes.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt): save_model_folder(Interrupted(), tok, tmp_path/"old")
    assert sorted(p.name for p in (tmp_path/"old").iterdir()) == ["notes.txt"]
    save_model_folder(m, tok, tmp_path/"old")
    assert (tmp_path/"old"/"notes.txt").read_text() == "mine"
    assert AutoModelForCausalLM.from_pretrained(tmp_path/"old").config.num_hidden_layers == m.config.num_hidden_layers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]

def test_measure_model(tiny):
    m, tok, _ = tiny
    r = measure_model(m, tok, "The quick brown fox jumps over the lazy dog. " * 10, eval_tokens=32)
    assert set(r) == {"ppl", "params_M", "MiB"} and 1e3 < r["ppl"] < 1e6, r   # a random model: about the vocabulary size (49,152)

def test_pruned_model_exports_to_gguf(tiny, tmp_path):
    "The structurally pruned model (head_dim no longer hidden/heads) is written by the export stage and reads back."
    from qlora_course.export import write_gguf, verify_gguf
    m, tok, cal = tiny
    small = prune_structured(m, 0.3, "l2", heads_per_group=1)
    assert small.config.head_dim != small.config.hidden_size // small.config.num_attention_heads
    small.save_pretrained(tmp_path/"hf"); tok.save_pretrained(tmp_path/"hf")
    g = write_gguf(tmp_path/"hf", tmp_path/"small.gguf", out_type="f32")
    rep = verify_gguf(g, tmp_path/"hf", out_type="f32")
    assert rep["max_abs"] < 1e-3
