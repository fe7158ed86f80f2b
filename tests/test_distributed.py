"""Training on several processes (DDP over gloo on this CPU, started by `accelerate launch` and by `torchrun`) against one
process: same loss curve at the same global batch, one writer, resume across a changed world size; the shipped accelerate configs."""
import json, os, shutil, socket, subprocess, sys
from pathlib import Path
import pytest, torch, yaml
from qlora_course.train import TrainConfig, train, adapter_state, RUN_RECORD
import qlora_course.train as qt

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# DDP all-reduces the two processes' gradients, so sums happen in another order than in one process: allow float noise
LOSS_ATOL, WEIGHT_ATOL = 1e-3, 1e-5  # on losses of about 10.7 (tiny-random) and on LoRA weights of about 1e-2

# Records, per rank, every file the process opens for writing under AUDIT_WATCH (Python's audit hook sees Python-level
# opens: configs, metrics, plots, torch.save, PEFT's adapter_config.json; not safetensors' own Rust writes), then runs the CLI.
AUDIT = '''
import os, sys
log = open(os.path.join(os.environ["AUDIT_DIR"], "rank%s.txt" % os.environ.get("RANK", "0")), "w", buffering=1)
watch = os.environ["AUDIT_WATCH"]
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE)
        if writes and isinstance(path, (str, os.PathLike)) and os.path.abspath(path).startswith(watch): log.write(os.path.abspath(path) + "\\n")
    elif event in ("os.rename", "os.replace") and str(args[1]).startswith(watch): log.write(os.path.abspath(args[1]) + "\\n")
sys.addaudithook(hook)
from qlora_course.cli import main
sys.exit(main(sys.argv[1:]))
'''

def _port() -> int:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def _env(**kw):
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **kw}

def _cfg(out, **kw) -> TrainConfig:
    return TrainConfig.preset("tiny", **{**dict(output_dir=str(out), max_steps=4, batch_size=4, grad_accum=2, save_steps=2,
                                              lora_dropout=0.0, eval_samples=8), **kw})

def _run(cmd, tmp):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, cwd=tmp, env=_env())
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return r

def _losses(metrics) -> dict: return {h["step"]: h["loss"] for h in metrics["log_history"] if "loss" in h}

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "The same config trained by one process (in this one) and by two (`accelerate launch`, audited), each from scratch."
    tmp = tmp_path_factory.mktemp("dist")
    one = train(_cfg(tmp/"one"))
    cfgf = _cfg(tmp/"two").to_yaml(tmp/"two.yaml")
    (tmp/"audit.py").write_text(AUDIT); (tmp/"audit").mkdir()
    env = _env(AUDIT_DIR=str(tmp/"audit"), AUDIT_WATCH=str(tmp/"two"))
    r = subprocess.run([str(BIN/"accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_port()),
                        str(tmp/"audit.py"), "train", "--config", str(cfgf)], capture_output=True, text=True, timeout=600, cwd=tmp, env=env)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return tmp, one, json.loads((tmp/"two"/"metrics.json").read_text()), r.stdout

def test_two_processes_match_one(runs):
    tmp, one, two, out = runs
    assert two["world_size"] == 2 and one.metrics["world_size"] == 1 and two["global_batch"] == one.metrics["global_batch"] == 8
    assert "on 2 processes (ddp)" in out and out.count("adapter saved to") == 1  # rank 0 alone prints
    a, b = _losses(one.metrics), _losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert a[4] < a[1]  # the loss really went down
    for s in a: assert abs(a[s] - b[s]) <= LOSS_ATOL, (s, a[s], b[s])
    wa, wb = adapter_state(one.adapter_dir), adapter_state(tmp/"two"/"adapter")
    assert max(wa[k].abs().max().item() for k in wa if "lora_B" in k) > 0
    for k in wa: torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=WEIGHT_ATOL)
    # the half-size accumulation per process read the same examples: same token count per step
    ta = [h["num_tokens"] for h in one.metrics["log_history"] if "loss" in h]
    assert ta == [h["num_tokens"] for h in two["log_history"] if "loss" in h]

def test_only_rank0_writes(runs):
    tmp, *_ = runs
    r0 = (tmp/"audit"/"rank0.txt").read_text().split(); r1 = (tmp/"audit"/"rank1.txt").read_text().split()
    names = {Path(p).relative_to(tmp/"two").as_posix() for p in r0}
    assert {"config.yaml", "metrics.json", "loss.png", "adapter/adapter_config.json", f"checkpoint-2/{RUN_RECORD}"} <= names, names
    # rank 1 ran the same audited script (its log exists); the trainer may save its RNG state in a checkpoint, nothing else
    assert (tmp/"audit"/"rank1.txt").exists() and all(Path(p).name == "rng_state_1.pth" for p in r1), r1

def test_adapter_loads_and_answers(runs):
    from peft import PeftModel
    from qlora_course.models import load_model, chat_once
    tmp, *_ = runs
    base, tok = load_model("tiny-random")
    m = PeftModel.from_pretrained(base, str(tmp/"two"/"adapter"))
    sd = {k: v for k, v in m.state_dict().items() if "lora_" in k}
    saved = adapter_state(tmp/"two"/"adapter")
    assert len(sd) == len(saved) and all(torch.equal(v, saved[k.replace(".default", "")]) for k, v in sd.items())
    ans = chat_once(m, tok, "When was the moon landing?", max_new_tokens=5)
    assert isinstance(ans, str) and len(tok(ans)["input_ids"]) >= 1

def test_resume_across_world_sizes(runs):
    "A two-process run cut after step 2 (only its checkpoint kept) resumes on two processes (torchrun) and on one."
    tmp, one, two, _ = runs
    for d in ("r2", "r1"): shutil.copytree(tmp/"two"/"checkpoint-2", tmp/d/"checkpoint-2")
    cfgf = _cfg(tmp/"r2").to_yaml(tmp/"r2.yaml")
    _run([BIN/"torchrun", "--standalone", "--nproc_per_node", "2", BIN/"qlora-course", "train", "--config", cfgf, "--resume"], tmp)
    r2 = json.loads((tmp/"r2"/"metrics.json").read_text())
    r1 = train(_cfg(tmp/"r1", resume=True))
    assert r2["resumed_from"].endswith("checkpoint-2") and r1.metrics["resumed_from"].endswith("checkpoint-2")
    full = _losses(two)
    for got in (_losses(r2), _losses(r1.metrics)):
        assert sorted(got) == [1, 2, 3, 4]  # steps 1-2 come from the checkpoint's log history, 3-4 were trained again
        for s in got: assert abs(got[s] - full[s]) <= LOSS_ATOL, (s, got[s], full[s])
    wf = adapter_state(tmp/"two"/"adapter")
    for d in ("r2", "r1"):
        w = adapter_state(tmp/d/"adapter")
        for k in wf: torch.testing.assert_close(w[k], wf[k], rtol=0, atol=WEIGHT_ATOL)
    assert json.loads((tmp/"r1"/"checkpoint-4"/RUN_RECORD).read_text())["world_size"] == 1

def test_resume_refuses_changed_config(runs, tmp_path):
    tmp, *_ = runs
    shutil.copytree(tmp/"two"/"checkpoint-2", tmp_path/"checkpoint-2")
    with pytest.raises(ValueError, match=r"lora_r: 16 -> 8"): train(_cfg(tmp_path, resume=True, lora_r=8))
    assert not (tmp_path/"adapter").exists()

def test_accum_must_divide(monkeypatch, tmp_path):
    monkeypatch.setattr(qt, "dist_info", lambda: dict(world_size=2, rank=0, local_rank=0, device=torch.device("cpu"), engine="ddp"))
    with pytest.raises(ValueError, match=r"grad_accum=3 does not divide by the 2 training processes"): train(_cfg(tmp_path, grad_accum=3))
    assert not any(tmp_path.iterdir())

# --- the shipped accelerate configs, read by accelerate's own loader and turned into the launch environment by its
# launcher code; FSDP's plugin is then built from that environment. DeepSpeed is not installed here: its config is
# checked as far as accelerate goes without it (the environment the launcher would hand to DeepSpeed).
def _launch_env(name, *extra):
    from accelerate.commands.launch import launch_command_parser, _validate_launch_command
    from accelerate.utils.launch import prepare_multi_gpu_env, prepare_deepspeed_cmd_env
    args = launch_command_parser().parse_args(["--config_file", str(ROOT/"configs"/name), *extra, "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return defaults, prepare_deepspeed_cmd_env(args)[1], args
    return defaults, prepare_multi_gpu_env(args), args  # the launcher also sets torchrun's arguments on `args`

CONFIGS = ["ddp.yaml", "fsdp-qlora.yaml", "deepspeed-zero3.yaml", "multinode-example.yaml"]

@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads(name):
    from accelerate.commands.config.config_args import load_config_from_file, ClusterConfig
    c = load_config_from_file(str(ROOT/"configs"/name))
    assert isinstance(c, ClusterConfig) and c.num_processes >= 2 and not c.use_cpu
    assert c.mixed_precision in ("no", "bf16")

def _fsdp_plugin(env):
    from unittest import mock
    import accelerate.utils.dataclasses as acd
    from accelerate.utils import FullyShardedDataParallelPlugin
    # sync_module_states asks for the current GPU: pretend one exists, the rest of the checks are accelerate's own
    with mock.patch.dict(os.environ, env), mock.patch.object(acd, "is_cuda_available", lambda: True), \
         mock.patch.object(torch.cuda, "current_device", lambda: 0):
        return FullyShardedDataParallelPlugin()

@pytest.mark.parametrize("name", ["fsdp-qlora.yaml", "multinode-example.yaml"])
def test_fsdp_qlora_config(name):
    from qlora_course.models import load_model
    _, env, _ = _launch_env(name)
    p = _fsdp_plugin(env)
    assert p.cpu_ram_efficient_loading and p.sync_module_states and p.activation_checkpointing and not p.use_orig_params
    assert "FULL_SHARD" in str(p.sharding_strategy) or "HYBRID_SHARD" in str(p.sharding_strategy)
    assert p.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"] and p.auto_wrap_policy is not None
    m, _ = load_model("tiny-random")  # the wrapped class is the decoder layer of the course's models
    assert type(m.model.layers[0]).__name__ in p.transformer_cls_names_to_wrap

def test_deepspeed_config():
    defaults, env, _ = _launch_env("deepspeed-zero3.yaml")
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    # left to the trainer ("auto"), so the run config's grad_accum and max_grad_norm rule
    assert "gradient_accumulation_steps" not in defaults.deepspeed_config and "gradient_clipping" not in defaults.deepspeed_config

def test_multinode_config():
    defaults, env, a = _launch_env("multinode-example.yaml", "--machine_rank", "1")
    assert (defaults.num_machines, defaults.num_processes) == (2, 16)
    assert (str(a.nnodes), str(a.node_rank), str(a.nproc_per_node)) == ("2", "1", "8")  # 8 processes on each machine
    where = f"{defaults.main_process_ip}:{defaults.main_process_port}"  # machine 0's address, as torchrun gets it
    assert getattr(a, "rdzv_endpoint", None) == where or f"{getattr(a, 'master_addr', '')}:{getattr(a, 'master_port', '')}" == where
