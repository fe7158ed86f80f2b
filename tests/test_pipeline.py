"The course pipeline: config errors, and (slow) a full run on tiny-random whose artifacts all load."
import json, subprocess, sys
from pathlib import Path
import pytest

from qlora_course.pipeline import PipelineConfig, run_pipeline, STEPS, StepFailed, STEP_FNS
from qlora_course.cli import main

BIN = Path(sys.executable).parent

def tiny_cfg(tmp_path, **kw):
    "A pipeline config small enough for a test; `kw` replaces any of its fields."
    return PipelineConfig(**{**dict(name="t", model="tiny-random", quant=None, train_preset="tiny", train_steps=3, eval_n=6,
                                    distill_steps=2, recover_steps=2, compress_chars=200, compress_ctx=64,
                                    runs_dir=str(tmp_path/"runs")), **kw})

def test_config_errors(tmp_path):
    (tmp_path/"a.yaml").write_text("model: tiny-random\ntrain_step: 3\n")
    with pytest.raises(ValueError, match="train_step"): PipelineConfig.from_yaml(tmp_path/"a.yaml")
    (tmp_path/"b.yaml").write_text("skip: [trian]\n")
    with pytest.raises(ValueError, match="trian"): PipelineConfig.from_yaml(tmp_path/"b.yaml")
    assert main(["pipeline", "--config", str(tmp_path/"a.yaml")]) == 2
    (tmp_path/"c.yaml").write_text("model: tiny-random\ntrain: {lora_rr: 4}\n")
    with pytest.raises(ValueError, match="lora_rr") as e: PipelineConfig.from_yaml(tmp_path/"c.yaml")
    assert str(tmp_path/"c.yaml") in str(e.value)
    (tmp_path/"d.yaml").write_text("train: {max_steps: 4}\n")   # the pipeline sets it, from train_steps
    with pytest.raises(ValueError, match="train_steps"): PipelineConfig.from_yaml(tmp_path/"d.yaml")

def test_shipped_configs_parse():
    root = Path(__file__).resolve().parents[1]
    import yaml
    shipped = [root/"course.yaml", *(p for p in sorted((root/"configs").glob("*.yaml"))
                                     if "compute_environment:" not in p.read_text())]   # the others are accelerate's configs
    assert len(shipped) >= 2
    for p in shipped:
        cfg, default, text = PipelineConfig.from_yaml(p), PipelineConfig(), yaml.safe_load(p.read_text())
        for k, v in text.items():   # every field the file sets is what the config holds
            assert getattr(cfg, k) == v or (isinstance(v, str) and str(getattr(cfg, k)) == v), (p.name, k)
        assert any(getattr(cfg, k) != getattr(default, k) for k in text), p.name   # a loader that ignored the file would fail

def test_train_field_reaches_the_training(tmp_path, monkeypatch):
    "`train: {lora_r: 4}` in a pipeline YAML is in the TrainConfig the train step trains with."
    import qlora_course.train as tr
    tiny_cfg(tmp_path, train={"lora_r": 4}).to_yaml(tmp_path/"p.yaml")
    assert "lora_r: 4" in (tmp_path/"p.yaml").read_text()
    cfg = PipelineConfig.from_yaml(tmp_path/"p.yaml")
    seen = {}
    class Stop(Exception): pass
    def fake_train(tc, *a, **kw): seen["cfg"] = tc; raise Stop
    monkeypatch.setattr(tr, "train", fake_train)
    with pytest.raises(Stop): STEP_FNS["train"](cfg, {"data": {"dir": str(tmp_path/"data")}})
    tc = seen["cfg"]
    assert (tc.lora_r, tc.max_steps, tc.model, tc.data) == (4, cfg.train_steps, "tiny-random", str(tmp_path/"data"))
    assert tc.batch_size == tr.PRESETS["tiny"]["batch_size"]   # the rest from the preset

def test_steps_read_the_saved_splits(tmp_path, monkeypatch):
    "Evaluation reads exactly the data step's saved test.jsonl, training its saved train split; no test record is trained on."
    import qlora_course.infer as infer, qlora_course.train as tr
    from qlora_course.data import record_key, with_system
    from qlora_course.models import load_tokenizer
    cfg = tiny_cfg(tmp_path, eval_n=None)
    state = {"data": STEP_FNS["data"](cfg, {})}
    saved = Path(state["data"]["dir"])
    read = lambda s: [json.loads(l) for l in (saved/f"{s}.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
    seen = {}
    class Stop(Exception): pass
    def fake_evaluate(model, tok, records, **kw): seen["eval"] = records; raise Stop
    def fake_train(tc, *a, **kw): seen["train"] = tc; raise Stop
    monkeypatch.setattr(infer, "evaluate", fake_evaluate)
    monkeypatch.setattr(tr, "train", fake_train)
    with pytest.raises(Stop): STEP_FNS["base_eval"](cfg, state)
    with pytest.raises(Stop): STEP_FNS["train"](cfg, state)
    assert seen["eval"] == with_system(read("test"), cfg.system_prompt) and len(seen["eval"]) == state["data"]["counts"]["test"] > 0
    trained = tr.load_splits(seen["train"], load_tokenizer("tiny-random")).splits
    assert trained["train"] == with_system(read("train"), cfg.system_prompt)
    assert trained["test"] == seen["eval"]
    train_keys = {record_key(r) for r in read("train")}
    assert not any(record_key(r) in train_keys for r in read("test"))

def test_failed_step_is_named_and_earlier_state_kept(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, skip=["base_eval", "train", "export", "prune_distill", "compress"])
    def boom(cfg, state): raise RuntimeError("disk on fire")
    monkeypatch.setitem(STEP_FNS, "report", boom)
    with pytest.raises(StepFailed, match="'report'.*disk on fire"): run_pipeline(cfg, log=lambda m: None)
    state = json.loads((cfg.run_dir/"state.json").read_text())
    assert "data" in state and Path(state["data"]["dir"]).is_dir()
    assert (cfg.run_dir/"error-report.txt").exists()

@pytest.mark.slow
def test_full_pipeline_on_tiny_random(tmp_path):
    cfg = tiny_cfg(tmp_path); cfg.to_yaml(tmp_path/"p.yaml")
    r = subprocess.run([str(BIN/"qlora-course"), "pipeline", "--config", str(tmp_path/"p.yaml")], capture_output=True, text=True,
                       cwd=tmp_path, timeout=3000)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    state = json.loads((cfg.run_dir/"state.json").read_text())
    assert set(STEPS) <= set(state)
    from qlora_course.data import load_prepared
    from qlora_course.infer import load_with_adapter
    from qlora_course.export import read_gguf_meta
    from transformers import AutoModelForCausalLM
    assert len(load_prepared(state["data"]["dir"]).splits["test"]) > 0
    load_with_adapter("tiny-random", state["train"]["adapter"])
    card = (Path(state["train"]["adapter"])/"README.md").read_text()   # the adapter's card carries the test-split results
    assert f"exact match, test split ({state['train']['n']} records): base -> fine-tuned" in card and "prose perplexity" in card
    AutoModelForCausalLM.from_pretrained(state["export"]["merged"])
    for g in state["export"]["gguf"]: read_gguf_meta(cfg.run_dir/"gguf"/g["file"])
    AutoModelForCausalLM.from_pretrained(state["prune_distill"]["student"])
    assert (cfg.run_dir/"heldout.llmzip").stat().st_size > 0
    report = (cfg.run_dir/"report.md").read_text()
    for section in ("Before and after", "Export", "Pruning", "Compression"): assert section in report
    r2 = subprocess.run([str(BIN/"qlora-course"), "pipeline", "--config", str(tmp_path/"p.yaml")], capture_output=True, text=True,
                        cwd=tmp_path, timeout=600)
    assert r2.returncode == 0 and r2.stdout.count("done already") == len(STEPS) - 1

# Issue 33: a step's fingerprint hashed the data file's path, not its bytes, and `--only` ran a step on stale inputs
def test_changed_data_file_redoes_the_data_step(tmp_path):
    from qlora_course.models import data_dir
    src = tmp_path/"dates.jsonl"; src.write_bytes((data_dir()/"dates.jsonl").read_bytes())
    cfg, log = tiny_cfg(tmp_path, data=str(src)), []
    run_pipeline(cfg, only=["data"], log=log.append)
    run_pipeline(cfg, only=["data"], log=log.append)
    assert "[data] done already, skipping (force to redo)" in log
    lines = src.read_text().splitlines(keepends=True); src.write_text("".join(lines[:len(lines) // 2]))   # same path, half the records
    log.clear(); state = run_pipeline(cfg, only=["data"], log=log.append)
    assert "[data] its settings changed since it ran: redoing it" in log
    assert sum(state["data"]["counts"].values()) <= len(lines) // 2

def test_only_refuses_a_step_whose_inputs_are_stale(tmp_path):
    from qlora_course.models import data_dir
    src = tmp_path/"dates.jsonl"; src.write_bytes((data_dir()/"dates.jsonl").read_bytes())
    cfg = tiny_cfg(tmp_path, data=str(src))
    with pytest.raises(StepFailed, match="'base_eval' uses the results of data, which are missing"): run_pipeline(cfg, only=["base_eval"], log=lambda m: None)
    run_pipeline(cfg, only=["data"], log=lambda m: None)
    src.write_text(src.read_text().replace("2", "3"))
    before = (cfg.run_dir/"state.json").read_text()
    with pytest.raises(StepFailed, match=r"uses the results of data.*other settings or files.*add data"):
        run_pipeline(cfg, only=["base_eval"], log=lambda m: None)
    assert (cfg.run_dir/"state.json").read_text() == before   # nothing stored under the new fingerprint
