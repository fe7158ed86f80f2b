"Tests of qlora_course.distill: losses against direct computation and TRL, masking, no teacher gradient, bad inputs."
import math
from argparse import Namespace
import pytest, torch
from hypothesis import given, settings, strategies as st
from qlora_course.models import random_model, load_model, token_windows
from qlora_course.distill import distill_loss, kd_per_token, check_vocab, distill, distill_main, KD_KINDS
from qlora_course.cli import main as cli_main

def direct(s, t, y, kind, T, alpha, beta):
    kds, ces = [], []
    for b in range(s.shape[0]):
        for i in range(s.shape[1] - 1):
            if y[b, i+1] == -100: continue
            p, q = torch.softmax(t[b, i].double()/T, -1), torch.softmax(s[b, i].double()/T, -1)
            if kind == "forward_kl": d = (p * (p/q).log()).sum()
            elif kind == "reverse_kl": d = (q * (q/p).log()).sum()
            else:
                m = beta*p + (1-beta)*q
                d = beta*(p*(p/m).log()).sum() + (1-beta)*(q*(q/m).log()).sum()
            kds.append(d); ces.append(-torch.log_softmax(s[b, i].double(), -1)[y[b, i+1]])
    return alpha*T*T*torch.stack(kds).mean() + (1-alpha)*torch.stack(ces).mean()

@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(KD_KINDS), T=st.floats(0.5, 4), alpha=st.floats(0, 1), beta=st.floats(0.05, 0.95),
       seed=st.integers(0, 1000), masked=st.integers(0, 4))
def test_loss_matches_direct(kind, T, alpha, beta, seed, masked):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(2, 6, 9, generator=g) * 3, torch.randn(2, 6, 9, generator=g) * 3
    y = torch.randint(0, 9, (2, 6), generator=g); y[0, 1:1+masked] = -100
    got = distill_loss(s, t, y, kind, T, alpha, beta)["loss"].item()
    assert math.isclose(got, direct(s, t, y, kind, T, alpha, beta).item(), rel_tol=1e-4, abs_tol=1e-5)

def test_half_precision_inputs_computed_in_float32():
    s, t = torch.randn(1, 5, 7), torch.randn(1, 5, 7); y = torch.randint(0, 7, (1, 5))
    a = distill_loss(s.bfloat16(), t.bfloat16(), y)["loss"]
    assert a.dtype == torch.float32
    assert math.isclose(a.item(), distill_loss(s.bfloat16().float(), t.bfloat16().float(), y)["loss"].item(), rel_tol=1e-6)

@pytest.mark.parametrize("kind,beta", [("forward_kl", 0.0), ("reverse_kl", 1.0), ("jsd", 0.5), ("jsd", 0.1)])
@pytest.mark.parametrize("T", [1.0, 3.0])
def test_matches_trl(kind, beta, T):
    from trl.experimental.gkd import GKDTrainer
    torch.manual_seed(1)
    s, t = torch.randn(3, 7, 13), torch.randn(3, 7, 13); y = torch.randint(0, 13, (3, 7)); y[:, :3] = -100
    ref = GKDTrainer.generalized_jsd_loss(s[:, :-1], t[:, :-1], labels=y[:, 1:], beta=beta, temperature=T)
    assert torch.allclose(distill_loss(s, t, y, kind, T, beta=beta)["kd"], ref, atol=1e-5)

def test_jsd_edges_are_the_kls():
    s, t = torch.randn(4, 11).log_softmax(-1), torch.randn(4, 11).log_softmax(-1)
    assert torch.allclose(kd_per_token(s, t, "jsd", 0.0), kd_per_token(s, t, "forward_kl"))
    assert torch.allclose(kd_per_token(s, t, "jsd", 1.0), kd_per_token(s, t, "reverse_kl"))
    assert (kd_per_token(s, s, "jsd", 0.3).abs() < 1e-6).all()

def test_masked_positions_do_not_count():
    s, t = torch.randn(1, 6, 5), torch.randn(1, 6, 5); y = torch.randint(0, 5, (1, 6)); y[0, 2] = -100
    s2 = s.clone(); s2[0, 1, 0] += 7; s2[0, 5, 0] += 7      # position 1 predicts masked label 2; 5 predicts nothing
    assert torch.allclose(distill_loss(s, t, y)["loss"], distill_loss(s2, t, y)["loss"])
    assert distill_loss(s, t, y)["tokens"] == 4

def test_bad_inputs():
    s = torch.randn(1, 4, 5); y = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="Unknown distillation loss"): distill_loss(s, s, y, "tvd")
    with pytest.raises(ValueError, match="share a vocabulary"): distill_loss(s, torch.randn(1, 4, 6), y)
    with pytest.raises(ValueError, match="alpha"): distill_loss(s, s, y, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"): distill_loss(s, s, y, temperature=0)

def test_mismatched_vocabularies():
    with pytest.raises(ValueError, match="vocabularies differ"):
        check_vocab(random_model("tiny-random"), random_model("tiny-random", vocab_size=1000))

def test_teacher_gets_no_gradient_in_training(tmp_path):
    teacher, tok = load_model("tiny-random", device="cpu")
    student = random_model("tiny-random", seed=3)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ds = token_windows(tok, "The quick brown fox jumps over the lazy dog. " * 40, 16).select(range(4))
    tr = distill(teacher, student, ds, tmp_path, steps=2, lr=1e-3, alpha=0.5, temperature=2.0)
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert any("loss" in h for h in tr.state.log_history)

def test_cli_refuses_other_vocabulary(tmp_path):
    other = random_model("tiny-random", vocab_size=1000)
    _, tok = load_model("tiny-random", device="cpu")
    other.save_pretrained(tmp_path/"s"); tok.save_pretrained(tmp_path/"s")
    rc = cli_main(["distill", "--teacher", "tiny-random", "--student", str(tmp_path/"s"), "--cpu", "--out", str(tmp_path/"o")])
    assert rc == 2
    assert not (tmp_path/"o").exists()      # refused after loading: nothing written

def test_cli_force_writes_into_a_folder_and_keeps_other_files(tmp_path):
    out = tmp_path/"o"; out.mkdir(); (out/"notes.txt").write_text("mine")
    args = ["distill", "--teacher", "tiny-random", "--student", "tiny-random", "--steps", "1", "--seq-len", "16", "--cpu", "--out", str(out)]
    assert cli_main(args) == 2                                  # not empty: refused
    distill_main(Namespace(teacher="tiny-random", student="tiny-random", data=None, kind="forward_kl", temperature=2.0, alpha=0.5,
                           beta=0.5, steps=1, lr=5e-5, batch_size=2, seq_len=16, cpu=True, out=str(out), force=True))
    assert (out/"notes.txt").read_text() == "mine" and (out/"model.safetensors").exists() and (out/"config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no temporary folder left beside it

def test_callbacks_are_called_every_step(tmp_path):
    from transformers import TrainerCallback
    class Count(TrainerCallback):
        def __init__(self): self.steps = []
        def on_step_end(self, args, state, control, model=None, **kw): self.steps.append((state.global_step, model is not None))
    teacher, tok = load_model("tiny-random", device="cpu")
    ds = token_windows(tok, "The quick brown fox jumps over the lazy dog. " * 40, 16).select(range(4))
    cb = Count()
    distill(teacher, random_model("tiny-random", seed=3), ds, tmp_path, steps=3, lr=1e-3, alpha=0.5, callbacks=[cb])
    assert cb.steps == [(1, True), (2, True), (3, True)]

# Issue 33: distillation gets training's guards (one implementation: `train.FiniteLoss`, `train.explain_oom`).
def _tiny_pair():
    teacher, tok = load_model("tiny-random"); student, _ = load_model("tiny-random")
    return teacher, student, token_windows(tok, "The third of May, 2021, was a Monday. " * 40, 32)

def test_a_non_finite_loss_stops_distillation_naming_the_step(tmp_path):
    from qlora_course.train import NonFiniteLoss
    teacher, student, ds = _tiny_pair()
    with torch.no_grad(): student.get_input_embeddings().weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="at step 1"): distill(teacher, student, ds, tmp_path, steps=3)

def test_out_of_memory_in_distillation_gets_the_advice(tmp_path, monkeypatch):
    from transformers import Trainer
    teacher, student, ds = _tiny_pair()
    def oom(*a, **k): raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
    monkeypatch.setattr(Trainer, "train", oom)
    with pytest.raises(MemoryError, match="Out of memory.*distillation: batch_size=2, sequence length 32"): distill(teacher, student, ds, tmp_path)

def test_distillation_falls_back_from_gpu_only_optimizers(tmp_path):
    teacher, student, ds = _tiny_pair()
    tr = distill(teacher, student, ds, tmp_path, steps=1, optim="paged_adamw_8bit")
    assert tr.args.optim == ("paged_adamw_8bit" if torch.cuda.is_available() else "adamw_torch")
