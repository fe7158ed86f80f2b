"""Bad input, the way a careless user gives it, to every command: one clear line, the right exit code,
never a traceback, and nothing overwritten. Each case names the exit code and the words the message must hold.
The commands run in-process (`cli.main`), so an uncaught exception (a traceback for the user) fails the case."""
import pytest

KEEP = "keep me: this file must survive"

def files(tmp):
    "The inputs the cases refer to, made fresh in `tmp`."
    (tmp/"bad.yaml").write_text("model: tiny-random\nmax_steps: [1,\n")
    (tmp/"list.yaml").write_text("- model\n- tiny-random\n")
    (tmp/"zero.yaml").write_text("model: tiny-random\nmax_steps: 0\n")
    (tmp/"neglr.yaml").write_text("model: tiny-random\nlearning_rate: -1\n")
    (tmp/"strlr.yaml").write_text("model: tiny-random\nlearning_rate: fast\n")
    (tmp/"a.txt").write_text("Some text to compress. " * 5)
    (tmp/"existing.out").write_text(KEEP)
    (tmp/"rows.csv").write_text(KEEP)
    (tmp/"notarchive.bin").write_bytes(b"\x00\x01 this is not an archive" * 3)
    (tmp/"adir").mkdir()
    (tmp/"full").mkdir(); (tmp/"full"/"precious.txt").write_text(KEEP)
    (tmp/"notmodel.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    (tmp/"empty.jsonl").write_text("")
    for k in ("eval_n", "prune_eval_n", "compress_chars"): (tmp/f"neg_{k}.yaml").write_text(f"model: tiny-random\n{k}: -5\n")
    # issue 33, the red-team's last rows: a YAML alias bomb (2 * 9**8 names in 400 bytes), a GGUF that claims an array of 2**40 entries,
    # a data folder whose run was interrupted before prepared.json, checkpoints without a run record or with a damaged optimizer.pt
    bomb = '&x0 ["q_proj", "k_proj"]'   # anchors inside the one field: each list nine of the one before
    for i in range(1, 9): bomb = f"&x{i} [{bomb}, " + ", ".join([f"*x{i-1}"] * 8) + "]"
    (tmp/"bomb.yaml").write_text(f"model: tiny-random\ntarget_modules: {bomb}\n")
    import struct
    (tmp/"bomb.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + struct.pack("<Q", 20) + b"general.architecture"
                                  + struct.pack("<IQ", 8, 5) + b"llama" + struct.pack("<Q", 5) + b"x.arr" + struct.pack("<IIQ", 9, 0, 1 << 40))
    (tmp/"badlora.yaml").write_text("preset: tiny\nlora_args: {layers_pattern: layers}\n")   # PEFT: layers_pattern needs layers_to_transform
    (tmp/"half").mkdir(); (tmp/"half"/"train.jsonl").write_text('{"instruction": "q", "output": "a"}\n' * 20)
    (tmp/"norec"/"checkpoint-2").mkdir(parents=True); (tmp/"norec"/"checkpoint-2"/"trainer_state.json").write_text("{}")
    import json, dataclasses
    from qlora_course.train import TrainConfig, RUN_RECORD
    c = TrainConfig.preset("tiny"); ck = tmp/"badopt"/"checkpoint-2"; ck.mkdir(parents=True)
    (ck/RUN_RECORD).write_text(json.dumps(dict(fingerprint=c.fingerprint(), world_size=1, config=dataclasses.asdict(c), data_digest=c.data_digest())))
    (ck/"optimizer.pt").write_bytes(b"PK\x03\x04 half a file")

CASES = [  # (name, argv, exit code, words the message must contain)
    ("train: missing config", ["train", "--config", "{t}/missing.yaml"], 2, ["missing.yaml"]),
    ("train: YAML syntax error", ["train", "--config", "{t}/bad.yaml"], 2, ["bad.yaml", "line"]),
    ("train: a list, not a mapping", ["train", "--config", "{t}/list.yaml"], 2, ["list.yaml", "mapping"]),
    ("train: zero steps", ["train", "--config", "{t}/zero.yaml"], 2, ["max_steps"]),
    ("train: negative learning rate", ["train", "--config", "{t}/neglr.yaml"], 2, ["learning_rate"]),
    ("train: learning rate not a number", ["train", "--config", "{t}/strlr.yaml"], 2, ["learning_rate"]),
    # issue 33: these exited 0 (NaN weights, or gradient clipping silently off)
    ("train: weight decay nan", ["train", "--preset", "tiny", "--weight-decay", "nan", "--output-dir", "{t}/r"], 2, ["weight_decay", "finite"]),
    ("train: weight decay inf", ["train", "--preset", "tiny", "--weight-decay", "inf", "--output-dir", "{t}/r"], 2, ["weight_decay", "finite"]),
    ("train: max grad norm nan", ["train", "--preset", "tiny", "--max-grad-norm", "nan", "--output-dir", "{t}/r"], 2, ["max_grad_norm", "finite"]),
    ("train: epochs inf", ["train", "--preset", "tiny", "--max-steps", "-1", "--epochs", "inf", "--output-dir", "{t}/r"], 2, ["epochs", "finite"]),
    ("train: compute dtype bogus", ["train", "--preset", "tiny", "--compute-dtype", "bogus", "--output-dir", "{t}/r"], 2, ["compute_dtype", "bogus", "float32"]),
    ("train: LoRA rank above the layers' width", ["train", "--preset", "tiny", "--lora-r", "100000000", "--output-dir", "{t}/r"], 2, ["lora_r", "at most"]),
    ("train: LoRA rank that overflows", ["train", "--preset", "tiny", "--lora-r", "99999999999999999999999", "--output-dir", "{t}/r"], 2, ["lora_r", "at most"]),
    ("chat: top-p above 1", ["chat", "--model", "tiny-random", "--top-p", "2"], 2, ["--top-p", "(0, 1]"]),
    ("chat: temperature nan", ["chat", "--model", "tiny-random", "--temperature", "nan"], 2, ["--temperature"]),
    ("eval: negative limit", ["eval", "--model", "tiny-random", "--limit", "-1"], 2, ["--limit", "at least 0"]),
    *[(f"survey: {o} -8", ["survey", "--model", "tiny-random", o, "-8"], 2, [o, "at least 1"]) for o in ("--r", "--n-virtual", "--bottleneck")],   # printed negative counts (issue 33)
    ("eval: more new tokens than the model has positions", ["eval", "--model", "tiny-random", "--limit", "1", "--max-new-tokens", "100000"], 2, ["max_new_tokens=100000", "positions", "at most"]),   # issue 33: generated past them
    ("eval: csv exists", ["eval", "--model", "tiny-random", "--csv", "{t}/rows.csv"], 2, ["rows.csv", "--force"]),
    ("zip: missing input", ["zip", "{t}/missing.txt", "{t}/o.llmz", "--model", "tiny-random"], 2, ["missing.txt"]),
    ("zip: --force onto a device", ["zip", "{t}/a.txt", "/dev/null", "--model", "tiny-random", "--force"], 2, ["/dev/null", "not a regular file"]),   # replaced /dev/null (issue 33)
    ("zip: --device bogus", ["zip", "{t}/a.txt", "{t}/o.llmz", "--model", "tiny-random", "--device", "bogus"], 2, ["'bogus'", "cpu, cuda"]),   # tracebacks (issue 33)
    *[(f"{c}: --device {d} where there is none", [c, "{t}/a.txt", "{t}/o.out", "--model", "tiny-random", "--device", d], 2,
       [f"'{d}'", "no such device"]) for c in ("zip",) for d in ("cuda", "mps")],
    ("zip: output exists", ["zip", "{t}/a.txt", "{t}/existing.out", "--model", "tiny-random"], 2, ["existing.out", "--force"]),
    ("unzip: not an archive", ["unzip", "{t}/notarchive.bin", "{t}/o.txt", "--model", "tiny-random"], 2, ["notarchive.bin"]),
    ("unzip: a directory", ["unzip", "{t}/adir", "{t}/o.txt", "--model", "tiny-random"], 2, ["adir"]),
    ("unzip: output exists", ["unzip", "{t}/notarchive.bin", "{t}/existing.out", "--model", "tiny-random"], 2, ["existing.out", "--force"]),
    ("merge: not an adapter folder", ["merge", "--base", "tiny-random", "--adapter", "{t}/adir", "--out", "{t}/full"], 2, ["adapter_config.json"]),
    ("gguf: not a model", ["gguf", "{t}/notmodel.gguf", "--out-dir", "{t}/g"], 2, ["notmodel.gguf"]),
    ("train: YAML alias bomb in target_modules", ["train", "--config", "{t}/bomb.yaml", "--output-dir", "{t}/r"], 2, ["bomb.yaml", "more than 10,000 values"]),
    ("eval: GGUF whose header claims 2**40 entries", ["eval", "--model", "{t}/bomb.gguf", "--limit", "1"], 2, ["bomb.gguf", "1,099,511,627,776 entries"]),
    ("train: --data folder of an interrupted data run", ["train", "--preset", "tiny", "--data", "{t}/half", "--output-dir", "{t}/r"], 2,
     ["no prepared.json", "--force"]),
    ("train: --resume a checkpoint without its run record", ["train", "--preset", "tiny", "--output-dir", "{t}/norec", "--resume"], 2,
     ["checkpoint-2", "course_run.json"]),
    ("train: --resume a checkpoint whose optimizer.pt is damaged", ["train", "--preset", "tiny", "--output-dir", "{t}/badopt", "--resume"], 2,
     ["optimizer.pt can't be read", "damaged"]),
    # issue 32: TRL's and PEFT's other fields pass through (sft_args, lora_args; --sft-arg, --lora-arg), checked against their dataclasses
    ("train: --sft-arg without =", ["train", "--preset", "tiny", "--sft-arg", "neftune_noise_alpha", "--output-dir", "{t}/r"], 2, ["--sft-arg", "KEY=VALUE"]),
    ("train: --sft-arg misspelt", ["train", "--preset", "tiny", "--sft-arg", "neftune_noise_alfa=5", "--output-dir", "{t}/r"], 2,
     ["sft_args", "no field 'neftune_noise_alfa'", "did you mean neftune_noise_alpha"]),
    ("train: --sft-arg the course sets", ["train", "--preset", "tiny", "--sft-arg", "learning_rate=1", "--output-dir", "{t}/r"], 2, ["learning_rate", "set that instead"]),
    ("train: --lora-arg of the wrong type", ["train", "--preset", "tiny", "--lora-arg", "use_rslora=maybe", "--output-dir", "{t}/r"], 2, ["use_rslora takes bool", "'maybe'"]),
    ("train: lora_args in YAML PEFT refuses", ["train", "--config", "{t}/badlora.yaml", "--output-dir", "{t}/r"], 2, ["badlora.yaml", "lora_args", "LoraConfig"]),
    ("pipeline: missing config", ["pipeline", "--config", "{t}/missing.yaml"], 2, ["missing.yaml"]),
    ("pipeline: YAML syntax error", ["pipeline", "--config", "{t}/bad.yaml"], 2, ["bad.yaml", "line"]),
    # issue 33: a negative count took all but the last N records (recs[:-5]) without a word
    *[(f"pipeline: {k} -5", ["pipeline", "--config", "{t}/neg_%s.yaml" % k], 2, [f"neg_{k}.yaml", k, "at least 1"]) for k in ("eval_n", "prune_eval_n", "compress_chars")],
]

@pytest.mark.parametrize("name,argv,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, argv, code, words, tmp_path, bad_input):
    files(tmp_path)
    bad_input(name, [a.format(t=tmp_path) for a in argv], code, words)

# Issue 33: tracebacks found by the red-team sweep
def test_chat_says_when_its_input_is_not_utf8(monkeypatch, bad_input):
    import io, sys
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("caf\xe9\n".encode("latin-1")), encoding="utf-8"))
    bad_input("chat: latin-1 on stdin", ["chat", "--model", "tiny-random"], 2, ["not UTF-8", "iconv"])

def test_a_pickled_adapter_is_one_line(tmp_path, bad_input):
    import torch
    from qlora_course.export import make_demo_adapter
    ad = make_demo_adapter("tiny-random", tmp_path/"ad")
    for f in ad.glob("adapter_model.*"): f.unlink()
    torch.save({"w": torch.zeros(1), "run": print}, ad/"adapter_model.bin")   # not plain tensors: weights_only refuses it
    out = bad_input("eval: a pickled adapter", ["eval", "--model", "tiny-random", "--adapter", str(ad), "--limit", "1"], 2, ["pickle", "safetensors"])
    assert len(out.err.strip().splitlines()) == 1
