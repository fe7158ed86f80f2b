"The course pipeline: config errors, and (slow) a full run on tiny-random whose artifacts all load."
import json, subprocess, sys
from pathlib import Path
import pytest

from qlora_course.pipeline import PipelineConfig, run_pipeline, STEPS, StepFailed, STEP_FNS
from qlora_course.cli import main

BIN = Path(sys.executable).parent

def tiny_cfg(tmp_path, **kw):
    return PipelineConfig(name="t", model="tiny-random", quant=None, train_preset="tiny", train_steps=3, eval_n=6,
                          distill_steps=2, recover_steps=2, compress_chars=200, compress_ctx=64,
                          runs_dir=str(tmp_path/"runs"), **kw)

def test_config_errors(tmp_path):
    (tmp_path/"a.yaml").write_text("model: tiny-random\ntrain_step: 3\n")
    with pytest.raises(ValueError, match="train_step"): PipelineConfig.from_yaml(tmp_path/"a.yaml")
    (tmp_path/"b.yaml").write_text("skip: [trian]\n")
    with pytest.raises(ValueError, match="trian"): PipelineConfig.from_yaml(tmp_path/"b.yaml")
    assert main(["pipeline", "--config", str(tmp_path/"a.yaml")]) == 2

def test_shipped_configs_parse():
    root = Path(__file__).resolve().parents[1]
    import yaml
    shipped = [root/"course.yaml", *(p for p in sorted((root/"configs").glob("*.yaml"))
                                     if "compute_environment:" not in p.read_text())]   # the others are accelerate's configs
    assert len(shipped) >= 2
    for p in shipped:
        cfg = PipelineConfig.from_yaml(p)
        for k, v in yaml.safe_load(p.read_text()).items():   # every field the file sets is what the config holds
            assert getattr(cfg, k) == v or (isinstance(v, str) and str(getattr(cfg, k)) == v), (p.name, k)

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
    AutoModelForCausalLM.from_pretrained(state["export"]["merged"])
    for g in state["export"]["gguf"]: read_gguf_meta(cfg.run_dir/"gguf"/g["file"])
    AutoModelForCausalLM.from_pretrained(state["prune_distill"]["student"])
    assert (cfg.run_dir/"heldout.llmzip").stat().st_size > 0
    report = (cfg.run_dir/"report.md").read_text()
    for section in ("Before and after", "Export", "Pruning", "Compression"): assert section in report
    r2 = subprocess.run([str(BIN/"qlora-course"), "pipeline", "--config", str(tmp_path/"p.yaml")], capture_output=True, text=True,
                        cwd=tmp_path, timeout=600)
    assert r2.returncode == 0 and r2.stdout.count("done already") == len(STEPS) - 1
