"""Bad input to `prune` and `distill`, the way a careless user gives it: one clear line, exit code 2, never a
traceback, nothing overwritten and nothing written. Each case names the exit code and the words the message must hold.
The commands run in-process (`cli.main`), so an uncaught exception (a traceback for the user) fails the case, and
every refusal must come before a model is loaded: loading one here fails the case."""
import pytest
from qlora_course.cli import main
from qlora_course.models import tiny_random_dir, cache_dir

KEEP = "keep me: this file must survive"

def files(tmp):
    "The inputs the cases refer to, made fresh in `tmp`."
    (tmp/"full").mkdir(); (tmp/"full"/"precious.txt").write_text(KEEP)
    (tmp/"existing.out").write_text(KEEP)
    (tmp/"adir").mkdir()
    (tmp/"utf16.txt").write_bytes(("Some prose to distil on. " * 50).encode("utf-16"))
    (tmp/"latin1.txt").write_bytes(("Caf\xe9 prose to distil on. " * 50).encode("latin-1"))

PRUNE = ["prune", "--model", "tiny-random"]
DISTILL = ["distill", "--teacher", "tiny-random", "--student", "tiny-random", "--cpu"]

CASES = [  # (name, argv, exit code, words the message must contain)
    ("prune: --out a non-empty folder", PRUNE + ["--method", "l2", "--out", "{t}/full"], 2, ["full", "--force"]),
    ("prune: --out a file", PRUNE + ["--method", "l2", "--out", "{t}/existing.out"], 2, ["existing.out"]),
    ("prune: --nm not N:M", PRUNE + ["--method", "wanda", "--nm", "2:x", "--out", "{t}/o"], 2, ["--nm", "2:x"]),
    ("prune: --nm with N > M", PRUNE + ["--method", "wanda", "--nm", "4:2", "--out", "{t}/o"], 2, ["--nm", "4:2"]),
    ("prune: --nm with a structured method", PRUNE + ["--method", "l2", "--nm", "2:4", "--out", "{t}/o"], 2, ["--nm", "structured"]),
    # issue 33: with --force these wrote over the model being read, or changed what a course name means
    ("prune: --out the --model folder", PRUNE + ["--method", "l2", "--out", str(tiny_random_dir()), "--force"], 2, ["is the --model folder"]),
    ("prune: --out inside the model cache", PRUNE + ["--method", "l2", "--out", str(cache_dir()/"my-pruned"), "--force"], 2, ["model cache"]),
    ("prune: --calib-batches -1", PRUNE + ["--method", "wanda", "--calib-batches", "-1", "--out", "{t}/o"], 2, ["--calib-batches", "at least 1"]),
    ("distill: --out the --student folder", DISTILL + ["--out", str(tiny_random_dir()), "--force"], 2, ["is the --teacher folder"]),
    ("prune: sparsity 1.5", PRUNE + ["--method", "l2", "--sparsity", "1.5", "--out", "{t}/o"], 2, ["--sparsity", "1.5"]),
    ("prune: sparsity nan", PRUNE + ["--method", "l2", "--sparsity", "nan", "--out", "{t}/o"], 2, ["--sparsity"]),
    ("prune: sparsity not a number", PRUNE + ["--method", "l2", "--sparsity", "half", "--out", "{t}/o"], 2, ["--sparsity"]),
    ("prune: unknown method", PRUNE + ["--method", "bogus", "--out", "{t}/o"], 2, ["bogus"]),
    ("prune: missing calibration file", PRUNE + ["--method", "wanda", "--calib", "{t}/missing.txt", "--out", "{t}/o"], 2, ["missing.txt"]),
    ("prune: UTF-16 calibration file", PRUNE + ["--method", "wanda", "--calib", "{t}/utf16.txt", "--out", "{t}/o"], 2, ["utf16.txt", "UTF-16"]),
    ("distill: --out a non-empty folder", DISTILL + ["--out", "{t}/full"], 2, ["full", "--force"]),
    ("distill: --out a file", DISTILL + ["--out", "{t}/existing.out"], 2, ["existing.out"]),
    ("distill: --seq-len 0", DISTILL + ["--seq-len", "0", "--out", "{t}/o"], 2, ["--seq-len"]),
    ("distill: --seq-len 1", DISTILL + ["--seq-len", "1", "--out", "{t}/o"], 2, ["--seq-len", "at least 2"]),
    ("distill: --steps 0", DISTILL + ["--steps", "0", "--out", "{t}/o"], 2, ["--steps"]),
    ("distill: --steps not a number", DISTILL + ["--steps", "many", "--out", "{t}/o"], 2, ["--steps"]),
    ("distill: --batch-size 0", DISTILL + ["--batch-size", "0", "--out", "{t}/o"], 2, ["--batch-size"]),
    ("distill: --alpha 2", DISTILL + ["--alpha", "2", "--out", "{t}/o"], 2, ["--alpha"]),
    ("distill: --temperature 0", DISTILL + ["--temperature", "0", "--out", "{t}/o"], 2, ["--temperature"]),
    ("distill: --temperature inf", DISTILL + ["--temperature", "inf", "--out", "{t}/o"], 2, ["--temperature", "finite"]),   # exited 0 with NaN weights (issue 33)
    ("distill: --lr inf", DISTILL + ["--lr", "inf", "--out", "{t}/o"], 2, ["--lr", "finite"]),
    ("distill: --lr nan", DISTILL + ["--lr", "nan", "--out", "{t}/o"], 2, ["--lr", "finite"]),
    ("distill: unknown loss", DISTILL + ["--kind", "tvd", "--out", "{t}/o"], 2, ["tvd"]),
    ("distill: --data UTF-16", DISTILL + ["--data", "{t}/utf16.txt", "--out", "{t}/o"], 2, ["utf16.txt", "UTF-16", "iconv -f UTF-16 -t UTF-8"]),
    ("distill: --data not UTF-8", DISTILL + ["--data", "{t}/latin1.txt", "--out", "{t}/o"], 2, ["latin1.txt", "UTF-8"]),
    ("distill: --data missing", DISTILL + ["--data", "{t}/missing.txt", "--out", "{t}/o"], 2, ["missing.txt"]),
    ("distill: --data a folder", DISTILL + ["--data", "{t}/adir", "--out", "{t}/o"], 2, ["adir", "folder"]),
]

def _no_model(*a, **kw): raise RuntimeError("a model was loaded before the bad input was refused")

@pytest.mark.parametrize("name,argv,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, argv, code, words, tmp_path, bad_input, monkeypatch):
    import qlora_course.prune as prune, qlora_course.distill as distill
    for mod in (prune, distill):
        if hasattr(mod, "load_model"): monkeypatch.setattr(mod, "load_model", _no_model)
    files(tmp_path)
    before = set(tmp_path.rglob("*"))   # folders too: a refused command creates none
    bad_input(name, [a.format(t=tmp_path) for a in argv], code, words)
    assert set(tmp_path.rglob("*")) == before, f"{name}: wrote {sorted(str(p) for p in set(tmp_path.rglob('*')) - before)}"

@pytest.mark.parametrize("argv", [PRUNE + ["--method", "l2", "--sparsity", "0.3"], DISTILL + ["--steps", "1", "--seq-len", "16"]],
                         ids=["prune", "distill"])
def test_force_writes_into_a_non_empty_folder_and_keeps_other_files(argv, tmp_path, capsys):
    "With --force the command writes its model into the folder, replacing only its own files, and leaves nothing beside it."
    files(tmp_path)
    assert main(argv + ["--out", str(tmp_path/"full"), "--force"]) == 0, capsys.readouterr().err[-500:]
    assert (tmp_path/"full"/"precious.txt").read_text() == KEEP
    assert (tmp_path/"full"/"config.json").exists() and (tmp_path/"full"/"model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "existing.out", "full", "latin1.txt", "utf16.txt"]
