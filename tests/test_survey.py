"Trainable-parameter counts of every survey method, checked against counts worked out by hand from the model's config."
import subprocess, sys, os, math
from pathlib import Path
import pytest, torch
from peft import get_peft_model, PrefixTuningConfig, TaskType
from qlora_course.models import load_model, count_params, random_model
from qlora_course.survey import (METHODS, build_method, plan_methods, meta_model, add_biases, add_adapters, Bottleneck,
                                 method_config, survey_main)
from qlora_course.cli import main

def shapes(cfg):
    "(in, out) of each linear in one Llama block, from the config."
    h, I, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, I), "up_proj": (h, I), "down_proj": (I, h)}

def by_hand(cfg, method, r=8, n=16, e=128, b=16):
    "The number of parameters `method` trains, computed from the config alone."
    h, L, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    sh = shapes(cfg)
    kv = cfg.num_key_value_heads * cfg.head_dim
    lora = L * sum(r * (i + o) for i, o in sh.values())
    if method == "full":  # tied embedding counted once, two RMSNorms per block, a final norm
        return V * h + L * (sum(i * o for i, o in sh.values()) + 2 * h) + h
    return {"bitfit": L * sum(o for _, o in sh.values()),
            "prefix": n * 2 * L * kv,
            "prompt": n * h,
            "ptuning": n * h + (h * e + e) + (e * e + e) + (e * h + h),
            "adapter": L * 2 * (h * b + b + b * h + h),
            "lora": lora, "qlora": lora,
            "dora": lora + L * sum(o for _, o in sh.values()),
            "ia3": L * (sh["k_proj"][1] + sh["v_proj"][1] + sh["down_proj"][0])}[method]

@pytest.mark.parametrize("method", METHODS)
def test_built_counts_match_hand_counts(method):
    m, _ = load_model("tiny-random", quant="nf4" if method == "qlora" else None)
    cfg = m.config
    built = build_method(m, method)
    assert count_params(built, trainable_only=True) == by_hand(cfg, method)

@pytest.mark.parametrize("method", ["lora", "dora", "prompt", "prefix", "ptuning", "adapter"])
def test_knobs_change_counts_as_formulas_say(method):
    m = random_model("tiny-random", num_hidden_layers=3, intermediate_size=48)
    kw = dict(r=4, n_virtual=5, encoder_hidden=24, bottleneck=3)
    built = build_method(m, method, **{k: v for k, v in kw.items() if (k == "bottleneck") == (method == "adapter")})
    want = by_hand(m.config, method, r=4, n=5, e=24, b=3)
    assert count_params(built, trainable_only=True) == want

def test_plan_agrees_with_hand_counts_on_two_architectures():
    for name in ("tiny-random", "smollm2-135m-instruct"):
        mm = meta_model(name)
        plan = {d["method"]: d["trainable"] for d in plan_methods(mm, show=False)}
        assert plan == {k: by_hand(mm.config, k) for k in METHODS}
    assert plan["full"] == 134_515_008  # SmolLM2-135M, tied embeddings counted once

def test_prefix_projection_count():
    "With its reparameterisation MLP, PEFT's prefix trains Embedding(n, kv) + Linear(kv, e) + Linear(e, 2*L*kv)."
    m, _ = load_model("tiny-random")
    cfg, n, e = m.config, 6, 20
    kv = cfg.num_key_value_heads * cfg.head_dim
    pm = get_peft_model(m, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n,
                                              prefix_projection=True, encoder_hidden_size=e))
    want = n * kv + (kv * e + e) + (e * 2 * cfg.num_hidden_layers * kv + 2 * cfg.num_hidden_layers * kv)
    assert count_params(pm, trainable_only=True) == want

def test_added_pieces_start_as_identity():
    x = torch.randint(3, 1000, (2, 9))
    for add in (add_biases, lambda m: add_adapters(m, 5)):
        m, _ = load_model("tiny-random")
        ref = m(x).logits.detach()
        add(m)
        assert torch.allclose(m(x).logits.detach(), ref, atol=1e-6)
        assert all(not p.requires_grad for n, p in m.named_parameters() if "adapter" not in n and not n.endswith("bias"))
    a = Bottleneck(8, 2)
    torch.nn.init.normal_(a.up.weight)
    assert not torch.allclose(a(torch.ones(1, 8)), torch.ones(1, 8))

def test_bad_inputs():
    m, _ = load_model("tiny-random")
    with pytest.raises(ValueError, match="quant='nf4'"): build_method(m, "qlora")
    with pytest.raises(ValueError, match="Unknown method"): method_config("lorra", m)
    with pytest.raises(ValueError, match="Unknown method"): plan_methods(m, ["lora", "x"], show=False)

def test_cli_survey(capsys):
    assert main(["survey", "--model", "tiny-random"]) == 0
    out = capsys.readouterr().out
    for k in METHODS: assert f"  {k} " in out
    assert f"{by_hand(meta_model('tiny-random').config, 'lora'):,}" in out
    assert main(["survey", "--model", "tiny-random", "--methods", "lora", "--r", "2"]) == 0
    assert f"{by_hand(meta_model('tiny-random').config, 'lora', r=2):,}" in capsys.readouterr().out
    assert main(["survey", "--model", "tiny-random", "--methods", "nope"]) == 2
    assert main(["survey", "--model", "/no/such/model"]) == 2

def test_console_command():
    exe = Path(sys.executable).parent / "qlora-course"
    if not exe.exists(): pytest.skip("console script not installed")
    r = subprocess.run([str(exe), "survey", "--model", "tiny-random", "--methods", "ia3,prompt"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ia3" in r.stdout and "prompt" in r.stdout and "lora" not in r.stdout

def test_plot_survey_returns_figure_and_keeps_backend():
    import matplotlib, pandas as pd
    from qlora_course.survey import plot_survey
    before = matplotlib.get_backend()
    df = pd.DataFrame(dict(share=[1.0, 0.01, 0.0001], val_loss=[0.1, 0.2, 1.5], exact_match=[0.9, 0.8, 0.0]),
                      index=pd.Index(["full", "lora", "prompt"], name="method"))
    fig = plot_survey(df)
    assert matplotlib.get_backend() == before
    assert len(fig.axes) == 2 and all(ax.get_xscale() == "log" for ax in fig.axes)
    assert [len(ax.texts) for ax in fig.axes] == [3, 3]  # one label per method
    assert "nats" in fig.axes[0].get_ylabel() and "%" in fig.axes[0].get_xlabel()

def test_method_speed_merges_where_it_can():
    from qlora_course.survey import method_speed
    m, tok = load_model("tiny-random")
    side = tok.padding_side
    tok_s, merged = method_speed(build_method(m, "lora"), tok, "lora", ["Name a colour.", "Count to three."], new_tokens=3)
    assert merged and tok_s > 0 and tok.padding_side == side
    m2, _ = load_model("tiny-random")
    assert method_speed(build_method(m2, "adapter"), tok, "adapter", ["Name a colour."], new_tokens=3)[1] is False

def test_run_method_row_on_tiny():
    "One method end to end on tiny-random: the table's columns, measured by the shared loss, evaluator and speed helpers."
    from qlora_course.survey import run_method, date_task
    from qlora_course.models import load_tokenizer
    tok = load_tokenizer("tiny-random")
    row = run_method("ia3", date_task(tok), "tiny-random", steps=1, batch_size=2, n_eval=2)
    for k in ("trainable", "share", "memory_mb", "step_s", "val_loss", "exact_match", "disk_kb", "tok_s", "merged"): assert k in row
    assert row["merged"] is True and 0 <= row["exact_match"] <= 1 and abs(row["val_loss"] - math.log(len(tok))) < 1.0, row   # one step from random: about ln V
