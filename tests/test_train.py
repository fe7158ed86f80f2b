"Tests of the training stage (qlora_course.train) on tiny-random: config, guard rails, resume, CLI, benchmark."
import math, subprocess, sys
from pathlib import Path
import pytest, torch, yaml
from hypothesis import given, settings, strategies as st
from transformers import TrainerCallback
import tempfile
from qlora_course.models import load_tokenizer, load_model, data_dir
from qlora_course.train import TrainConfig, PRESETS, train, load_splits, check_dataset, adapter_state, StopAtStep, NonFiniteLoss
from qlora_course.cli import main

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def tok(): return load_tokenizer("tiny-random")

@pytest.fixture(scope="module")
def prep(tok): return load_splits(TrainConfig.preset("tiny", system_prompt="Answer briefly."), tok)

@settings(max_examples=25, deadline=None)
@given(r=st.integers(1, 256), lr=st.floats(1e-6, 1.0), steps=st.one_of(st.just(-1), st.integers(1, 10**6)), quant=st.sampled_from([None, "nf4", "int8"]),
       preset=st.sampled_from(sorted(PRESETS)), sysmsg=st.one_of(st.none(), st.text(max_size=20)))
def test_config_yaml_roundtrip(tmp_path_factory, r, lr, steps, quant, preset, sysmsg):
    cfg = TrainConfig.preset(preset, lora_r=r, learning_rate=lr, max_steps=steps, quant=quant, system_prompt=sysmsg)
    p = cfg.to_yaml(tmp_path_factory.mktemp("c")/"run.yaml")
    assert TrainConfig.from_yaml(p) == cfg

def test_config_errors(tmp_path):
    (tmp_path/"a.yaml").write_text("lora_rank: 4\n")
    with pytest.raises(ValueError, match="lora_rank"): TrainConfig.from_yaml(tmp_path/"a.yaml")
    (tmp_path/"b.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"): TrainConfig.from_yaml(tmp_path/"b.yaml")
    with pytest.raises(FileNotFoundError): TrainConfig.from_yaml(tmp_path/"none.yaml")
    with pytest.raises(ValueError, match="Unknown preset"): TrainConfig.preset("gpu-1gb")

@pytest.mark.parametrize("text,words", [
    ("lora_r: [8\n", "not valid YAML"), ("", "empty"), ("- 1\n- 2\n", "mapping"), ("max_steps: -5\n", "max_steps: must be positive"),
    ("max_steps: 0\n", "max_steps"), ("learning_rate: -1e-4\n", "learning_rate"), ("learning_rate: .nan\n", "learning_rate"),
    ("lora_r: 8.5\n", "lora_r: expected int"), ("grad_accum: 0\n", "grad_accum: must be at least 1"),
    ("quant: 4\n", "quant"), ("report_to: wandb\n", "report_to"), ("gradient_checkpointing: 3\n", "expected bool"),
    ("target_modules: [1, 2]\n", "target_modules"), ("model: null\n", "must be set")])
def test_config_bad_yaml(tmp_path, text, words):
    f = tmp_path/"bad.yaml"; f.write_text(text)
    with pytest.raises(ValueError, match=words) as e: TrainConfig.from_yaml(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)
    assert main(["train", "--config", str(f), "--output-dir", str(tmp_path/"o")]) == 2 and not (tmp_path/"o").exists()

def test_config_coerces_yaml_strings(tmp_path):
    f = tmp_path/"c.yaml"; f.write_text("learning_rate: 2e-4\nmax_steps: '30'\nlora_r: 8.0\npacking: 'true'\n")
    c = TrainConfig.from_yaml(f)
    assert (c.learning_rate, c.max_steps, c.lora_r, c.packing) == (2e-4, 30, 8, True)
    (tmp_path/"bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="UTF-8"): TrainConfig.from_yaml(tmp_path/"bin.yaml")

def test_resume_fingerprint(tmp_path, prep, tok):
    kw = dict(save_steps=2, max_steps=4)
    train(TrainConfig.preset("tiny", output_dir=str(tmp_path), **kw), prep.tokenized["train"], tok=tok, callbacks=[StopAtStep(2)])
    rec = (tmp_path/"checkpoint-2"/"course_run.json")
    assert rec.exists()
    with pytest.raises(ValueError, match=r"learning_rate: 0.01 -> 0.02.*new output_dir"):
        train(TrainConfig.preset("tiny", output_dir=str(tmp_path), resume=True, learning_rate=0.02, **kw), prep.tokenized["train"], tok=tok)
    # what only changes logging or where/how often it saves is not part of the fingerprint
    res = train(TrainConfig.preset("tiny", output_dir=str(tmp_path), resume=True, logging_steps=2, **kw), prep.tokenized["train"], tok=tok)
    assert res.metrics["resumed_from"].endswith("checkpoint-2") and res.metrics["steps"] == 4

def test_guard_small_and_short(tmp_path, tok, prep):
    cfg = TrainConfig.preset("tiny", batch_size=8)
    with pytest.raises(ValueError, match="fewer than one batch"): check_dataset(prep.tokenized["train"].select(range(7)), cfg)
    short = load_splits(TrainConfig.preset("tiny", max_len=30), tok).tokenized["train"]
    with pytest.raises(ValueError, match="max_len=30"): check_dataset(short, TrainConfig.preset("tiny", max_len=30))
    # refused by train() before any model is built or step taken
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(TrainConfig.preset("tiny", output_dir=str(tmp_path)), prep.tokenized["train"].select(range(2)), tok=tok)
    assert not (tmp_path/"adapter").exists()

def test_labels_answers_only(tmp_path, prep, tok):
    from qlora_course.train import make_trainer, build_model
    cfg = TrainConfig.preset("tiny", output_dir=str(tmp_path))
    m, _ = build_model(cfg, tok=tok)
    tr = make_trainer(cfg, m, tok, prep.tokenized["train"])
    b = next(iter(tr.get_train_dataloader()))
    for lab in b["labels"]:
        ans = tok.decode([t for t in lab.tolist() if t != -100])
        assert len(ans) >= 10 and ans.endswith("<|im_end|>") and "Rewrite" not in ans

def test_nan_stops_with_step(tmp_path, prep, tok):
    with pytest.raises(NonFiniteLoss, match=r"at step \d+"):
        train(TrainConfig.preset("tiny", output_dir=str(tmp_path), learning_rate=1e30, max_grad_norm=0.0), prep.tokenized["train"], tok=tok)

def test_oom_message(tmp_path, prep, tok):
    class OOM(TrainerCallback):
        def on_step_begin(self, *a, **k): raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(MemoryError, match="batch_size.*max_len"):
        train(TrainConfig.preset("tiny", output_dir=str(tmp_path)), prep.tokenized["train"], tok=tok, callbacks=[OOM()])

def test_resume_matches_uninterrupted(tmp_path, prep, tok):
    kw = dict(save_steps=2, max_steps=4, lora_dropout=0.0)
    full = train(TrainConfig.preset("tiny", output_dir=str(tmp_path/"full"), **kw), prep.tokenized["train"], tok=tok)
    train(TrainConfig.preset("tiny", output_dir=str(tmp_path/"cut"), **kw), prep.tokenized["train"], tok=tok, callbacks=[StopAtStep(2)])
    res = train(TrainConfig.preset("tiny", output_dir=str(tmp_path/"cut"), resume=True, **kw), prep.tokenized["train"], tok=tok)
    assert res.metrics["resumed_from"].endswith("checkpoint-2") and res.metrics["steps"] == 4
    a, b = adapter_state(full.adapter_dir), adapter_state(res.adapter_dir)
    assert a.keys() == b.keys()
    init_diff = max((a[k]).abs().max().item() for k in a if "lora_B" in k)
    assert init_diff > 0  # lora_B starts at zero: training really moved it
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)

def test_cli_train(tmp_path):
    cfgf = TrainConfig.preset("tiny", output_dir=str(tmp_path/"run"), max_steps=2, eval_samples=8).to_yaml(tmp_path/"run.yaml")
    assert main(["train", "--config", str(cfgf), "--lora-r", "4"]) == 0
    out = tmp_path/"run"
    for f in ("adapter/adapter_model.safetensors", "adapter/tokenizer_config.json", "config.yaml", "metrics.json", "loss.png"):
        assert (out/f).exists(), f
    assert yaml.safe_load((out/"config.yaml").read_text())["lora_r"] == 4
    card = (out/"adapter"/"README.md").read_text()   # issue 32: the course's card, not PEFT's blank template with a machine path
    assert card.startswith("---\nbase_model: tiny-random\nlibrary_name: peft\n") and "More Information Needed" not in card
    import json
    assert f"| trainable parameters | {json.loads((out/'metrics.json').read_text())['trainable_params']:,} |" in card and str(Path.home()) not in card
    from qlora_course.train import adapter_card   # the pipeline rewrites it with its evaluation's rows added
    m = json.loads((out/"metrics.json").read_text())
    adapter_card(TrainConfig.from_yaml(out/"config.yaml"), out/"adapter", m, {"exact match, base -> fine-tuned": "7.5% -> 95.8%"})
    card2 = (out/"adapter"/"README.md").read_text()
    assert "| exact match, base -> fine-tuned | 7.5% -> 95.8% |" in card2 and card2.replace("| exact match, base -> fine-tuned | 7.5% -> 95.8% |\n", "") == card
    assert main(["train", "--config", str(tmp_path/"missing.yaml")]) == 2

def test_cli_train_passes_trl_and_peft_fields_through(tmp_path):
    "Issue 32: sft_args/lora_args from YAML, --sft-arg/--lora-arg adding to them, reach SFTConfig and LoraConfig; the run trains."
    import json
    from qlora_course.train import sft_config
    cfgf = tmp_path/"run.yaml"
    cfgf.write_text(f"preset: tiny\noutput_dir: {tmp_path/'run'}\nmax_steps: 2\neval_samples: 8\nsft_args: {{neftune_noise_alpha: 5}}\n")
    assert main(["train", "--config", str(cfgf), "--sft-arg", "lr_scheduler_kwargs={num_cycles: 0.5}", "--lora-arg", "use_rslora=true"]) == 0
    saved = yaml.safe_load((tmp_path/"run"/"config.yaml").read_text())
    assert saved["sft_args"] == {"neftune_noise_alpha": 5, "lr_scheduler_kwargs": {"num_cycles": 0.5}}   # the file's and the option's, merged
    assert saved["lora_args"] == {"use_rslora": True}
    assert json.loads((tmp_path/"run"/"adapter"/"adapter_config.json").read_text())["use_rslora"] is True
    args = sft_config(TrainConfig(**saved))
    assert (args.neftune_noise_alpha, args.lr_scheduler_kwargs) == (5, {"num_cycles": 0.5})

def test_unset_pass_through_fields_keep_old_fingerprints():
    "Runs (and pipeline states) recorded before sft_args/lora_args existed still match: unset, they are not in the fingerprint."
    c = TrainConfig.preset("tiny")
    assert c.fingerprint() == TrainConfig.preset("tiny", sft_args={}, lora_args=None).fingerprint()
    assert c.fingerprint() != TrainConfig.preset("tiny", lora_args={"use_rslora": True}).fingerprint()

def test_cli_bad_data(tmp_path):
    bad = tmp_path/"bad.jsonl"; bad.write_text('{"instruction": "x"\n')
    assert main(["train", "--preset", "tiny", "--data", str(bad), "--output-dir", str(tmp_path/"o")]) == 2

def test_bench_cpu_small():
    r = subprocess.run([sys.executable, str(ROOT/"bench"/"train_throughput.py"), "--size", "tiny-random", "--steps", "2", "--n", "16",
                        "--max-len", "64", "--max-batch", "2"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [l.split() for l in r.stdout.splitlines() if l.startswith("tiny-random")]
    assert [x[1] for x in rows] == ["seed", "hf-tuned", "course"]
    assert all(float(x[6]) > 0 for x in rows) and float(rows[0][8]) == 1.0

def test_report_to(tmp_path, prep, tok):
    import importlib.util
    cfg = TrainConfig.preset("tiny", output_dir=str(tmp_path/"tb"), max_steps=2, report_to="tensorboard")
    if importlib.util.find_spec("tensorboard") is None:  # not a dependency: a one-line error before anything loads
        with pytest.raises(ValueError, match="pip install tensorboard"): train(cfg, prep.tokenized["train"], tok=tok)
        assert not (tmp_path/"tb"/"adapter").exists()
    else:
        train(cfg, prep.tokenized["train"], tok=tok)
        assert list((tmp_path/"tb"/"logs").glob("events.out.tfevents.*"))
    assert TrainConfig.preset("tiny").report_to is None  # off by default

def test_model_presets_from_the_command_line(tmp_path):
    "A per-model preset is a `--preset` name and a `preset:` in YAML; flags and fields still override it."
    from qlora_course.cli import build_parser
    from qlora_course.train import MODEL_PRESETS, config_from_args
    args = build_parser("train").parse_args(["train", "--preset", "glm-4-9b-24gb", "--lora-r", "8"])
    cfg = config_from_args(args)
    assert (cfg.model, cfg.lora_r, cfg.lora_alpha, cfg.target_modules) == ("THUDM/glm-4-9b-chat-hf", 8, 32, MODEL_PRESETS["glm-4-9b-24gb"]["target_modules"])
    (tmp_path/"q.yaml").write_text("preset: qwen2.5-7b-24gb\nmax_steps: 10\n")
    q = TrainConfig.from_yaml(tmp_path/"q.yaml")
    assert (q.model, q.max_steps, q.batch_size * q.grad_accum, q.quant) == ("Qwen/Qwen2.5-7B-Instruct", 10, 16, "nf4")
    with pytest.raises(SystemExit): build_parser("train").parse_args(["train", "--preset", "qwen-7b"])

def test_training_after_an_evaluation_on_a_fused_bf16_cpu(tmp_path, prep, tok):
    "On an AVX-512 bf16 CPU an evaluation repacks 4-bit weights for a kernel without backward; `train` must train on unpacked ones, as elsewhere."
    from qlora_course.models import fused_cpu_4bit, _linear4bit_layers, load_model
    n_packed = lambda m: sum(bool(getattr(l.weight.quant_state, "packing_format_for_cpu", False)) for l in _linear4bit_layers(m))
    class CountPacked(TrainerCallback):
        "How many 4-bit layers are in the fused layout at the start of each training step."
        def __init__(self): self.seen = []
        def on_step_begin(self, args, state, control, model=None, **kw): self.seen.append(n_packed(model))
    kw = dict(max_steps=4, eval_steps=2, eval_samples=4, lora_dropout=0.0, quant="nf4")
    ids = torch.tensor([prep.tokenized["train"][0]["input_ids"]])
    plain = train(TrainConfig.preset("tiny", output_dir=str(tmp_path/"plain"), **kw), prep.tokenized["train"], prep.tokenized["validation"], tok=tok)
    packed = CountPacked()
    with fused_cpu_4bit():   # the fused path on any CPU; its stand-in kernel has no backward, like the real one
        model, _ = load_model("tiny-random", quant="nf4")
        with torch.no_grad(): model.eval()(input_ids=ids)   # the base evaluated before training, as the training notebook does
        assert n_packed(model) == 2                          # tiny-random's two down_proj layers fit the fused layout
        fused = train(TrainConfig.preset("tiny", output_dir=str(tmp_path/"fused"), **kw), prep.tokenized["train"], prep.tokenized["validation"],
                      model=model, tok=tok, callbacks=[packed])
    assert packed.seen == [0, 0, 0, 0], packed.seen          # never trained on repacked weights (without the fix: [2, 2, 2, 2])
    a, b = adapter_state(plain.adapter_dir), adapter_state(fused.adapter_dir)
    rel = max(((a[k] - b[k]).norm() / a[k].norm()).item() for k in a if "lora_B" in k)
    assert rel < 0.1, f"LoRA B differs by {rel:.1%} from the run on the dequantize path"   # 4% from the bf16-rounded block scales; 112% without the fix

# Issue 33: examples packed into one row attended to each other (all-ones mask, positions running on).
def _packed_vs_alone(isolated=True):
    import torch
    from qlora_course.data import prepare
    from qlora_course.train import PackedCollator
    tok = load_tokenizer("tiny-random"); m, _ = load_model("tiny-random")
    ds = prepare(data_dir()/"dates.jsonl", tok, max_len=400, packing=True).tokenized["train"]
    rows = [ds[i] for i in range(3)]
    assert all(len(r["seq_lengths"]) > 1 for r in rows) and sum(map(len, (r["input_ids"] for r in rows))) > 3 * 200
    b = PackedCollator(pad_token_id=tok.pad_token_id)(rows)   # rows of unequal length: padded too
    b.pop("labels")
    if not isolated: b = dict(input_ids=b["input_ids"], attention_mask=(b["position_ids"] >= 0).long())   # the old batch
    worst = 0.0
    with torch.no_grad():
        L = m(**b).logits
        for r, row in enumerate(rows):
            o = 0
            for n in row["seq_lengths"]:
                alone = m(input_ids=b["input_ids"][r:r+1, o:o+n]).logits[0]
                worst = max(worst, (L[r, o:o+n] - alone).abs().max().item()); o += n
    return worst

def test_packed_examples_are_computed_as_if_alone():
    assert _packed_vs_alone() < 1e-4

def test_packed_examples_without_isolation_differ():   # the check above fails on the bug it guards
    assert _packed_vs_alone(isolated=False) > 0.05

def test_epoch_runs_warm_up_from_their_real_length():
    from qlora_course.train import TrainConfig, sft_config
    ep = sft_config(TrainConfig.preset("tiny", output_dir=str(Path(tempfile.mkdtemp())), max_steps=-1, epochs=2, warmup_ratio=0.1))
    assert ep.get_warmup_steps(40) == 4 and ep.get_warmup_steps(200) == 20   # was 0: derived from max_steps=-1
    st = sft_config(TrainConfig.preset("tiny", output_dir=str(Path(tempfile.mkdtemp())), max_steps=60, warmup_ratio=0.1))
    assert st.get_warmup_steps(60) == 6
    with pytest.raises(ValueError, match="warmup_ratio"): TrainConfig.preset("tiny", warmup_ratio=1.0)

def test_train_defaults_to_this_machines_preset(tmp_path, monkeypatch, capsys):
    "No --preset: `hardware_preset()` (gpu-24gb on a 24 GB GPU, not fp32 'cpu'); --preset replaces a config file's preset."
    from qlora_course.cli import build_parser
    import qlora_course.train as T
    parse = lambda *a: build_parser("train").parse_args(["train", *a])
    monkeypatch.setattr(T, "hardware_preset", lambda: "gpu-24gb")
    assert T.config_from_args(parse()) == TrainConfig.preset("gpu-24gb")
    assert T.config_from_args(parse("--preset", "cpu")) == TrainConfig.preset("cpu")
    (tmp_path/"t.yaml").write_text("preset: tiny\nlora_r: 6\n")
    assert T.config_from_args(parse("--config", str(tmp_path/"t.yaml"))) == TrainConfig.preset("tiny", lora_r=6)
    assert T.config_from_args(parse("--config", str(tmp_path/"t.yaml"), "--preset", "cpu")) == TrainConfig.preset("cpu", lora_r=6)
    (tmp_path/"u.yaml").write_text("lora_r: 6\n")   # no preset: this machine's, then the file's fields
    assert T.config_from_args(parse("--config", str(tmp_path/"u.yaml"))) == TrainConfig.preset("gpu-24gb", lora_r=6)
    with pytest.raises(SystemExit): parse("--help")
    assert "this machine's" in capsys.readouterr().out

def test_train_twice_into_one_folder_keeps_the_first_run(tmp_path, capsys):
    "Issue 33: a second `train --output-dir run_a` replaced the first run's adapter, metrics, config and plot without a word."
    run = ["train", "--preset", "tiny", "--max-steps", "1", "--output-dir", str(tmp_path/"run_a")]
    assert main(run) == 0
    first = {p: p.read_bytes() for p in (tmp_path/"run_a").rglob("*") if p.is_file()}
    assert main(run + ["--lora-r", "4"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run" in err and "--force" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in (tmp_path/"run_a").rglob("*") if p.is_file()} == first
    assert main(run + ["--lora-r", "4", "--force"]) == 0
    assert (tmp_path/"run_a"/"adapter"/"adapter_model.safetensors").read_bytes() != first[tmp_path/"run_a"/"adapter"/"adapter_model.safetensors"]
