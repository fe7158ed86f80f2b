"""Bad input to `qlora-course data` and `eval`, the way a careless user gives it: one clear line, exit code 2, no traceback,
nothing overwritten (the table style of test_cli_sweep.py). The refusals come before the tokenizer loads where they can."""
import json
import pytest
from qlora_course.cli import main

KEEP = "keep me: this file must survive"
REC = lambda i: json.dumps({"instruction": f"Say {i}.", "output": f"{i}"})

def files(tmp):
    "The inputs the cases refer to, made fresh in `tmp`."
    ok = "\n".join(REC(i) for i in range(30)) + "\n"
    (tmp/"ok.jsonl").write_text(ok)
    (tmp/"u16.jsonl").write_bytes(ok.encode("utf-16"))
    (tmp/"u32.jsonl").write_bytes(ok.encode("utf-32"))
    (tmp/"latin1.jsonl").write_bytes(ok.replace("Say 1.", "Caf\u00e9 1.").encode("latin-1"))
    (tmp/"surrogate.jsonl").write_text('{"instruction": "\\ud800 half a pair", "output": "x"}\n' + ok)
    (tmp/"deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp/"deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n" + ok)
    (tmp/"empty.jsonl").write_text("")
    (tmp/"adir").mkdir()
    (tmp/"full").mkdir(); (tmp/"full"/"precious.txt").write_text(KEEP)
    (tmp/"afile").write_text(KEEP)

D = ["data", "{t}/ok.jsonl", "--model", "tiny-random"]
CASES = [  # (name, argv, exit code, words the message must contain)
    ("data: ratios not numbers", D + ["--ratios", "nan", "0", "0", "--out", "{t}/o"], 2, ["ratios", "nan"]),
    ("data: ratios do not sum to 1", D + ["--ratios", "0.5", "0.1", "0.1", "--out", "{t}/o"], 2, ["summing to 1"]),
    ("data: negative max-len", D + ["--max-len", "-5", "--out", "{t}/o"], 2, ["max_len", "-5"]),
    ("data: --out is a non-empty folder", D + ["--out", "{t}/full"], 2, ["full", "--force"]),
    ("data: --out is a file", D + ["--out", "{t}/afile"], 2, ["afile", "not a folder"]),
    ("data: missing input", ["data", "{t}/missing.jsonl", "--model", "tiny-random", "--out", "{t}/o"], 2, ["missing.jsonl"]),
    ("data: empty input", ["data", "{t}/empty.jsonl", "--model", "tiny-random", "--out", "{t}/o"], 2, ["empty.jsonl", "empty"]),
    ("data: UTF-16 input", ["data", "{t}/u16.jsonl", "--model", "tiny-random", "--out", "{t}/o"], 2, ["UTF-16", "iconv -f UTF-16"]),
    ("data: UTF-32 input", ["data", "{t}/u32.jsonl", "--model", "tiny-random", "--out", "{t}/o"], 2, ["UTF-32"]),
    ("data: latin-1 input", ["data", "{t}/latin1.jsonl", "--model", "tiny-random", "--out", "{t}/o"], 2, ["not UTF-8", "line 2"]),
    ("data: lone surrogate", ["data", "{t}/surrogate.jsonl", "--model", "tiny-random", "--out", "{t}/o"], 2, ["surrogate.jsonl:1", "surrogate", "--lenient"]),
    ("data: 100,000-deep JSON", ["data", "{t}/deep.json", "--model", "tiny-random", "--out", "{t}/o"], 2, ["deep.json", "nested too deeply"]),
    ("data: 100,000-deep JSON line", ["data", "{t}/deep.jsonl", "--model", "tiny-random", "--out", "{t}/o"], 2, ["deep.jsonl line 1", "nested too deeply"]),
    ("data: a folder with no data files", ["data", "{t}/adir", "--model", "tiny-random", "--out", "{t}/o"], 2, ["adir"]),
    ("eval: --csv in a missing folder", ["eval", "--model", "tiny-random", "--csv", "{t}/nowhere/rows.csv"], 2, ["nowhere", "create it first"]),
    ("eval: --csv is a folder", ["eval", "--model", "tiny-random", "--csv", "{t}/adir"], 2, ["adir", "is a folder"]),
]

@pytest.mark.parametrize("name,argv,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, argv, code, words, tmp_path, bad_input):
    files(tmp_path)
    bad_input(name, [a.format(t=tmp_path) for a in argv], code, words)
    assert not (tmp_path/"o").exists() or not any((tmp_path/"o").iterdir()), f"{name}: wrote output after refusing"

def test_lenient_skips_the_bad_records_and_counts_them(tmp_path, capsys):
    "--lenient keeps the 30 good records of surrogate.jsonl and reports the one it skipped, naming its line."
    files(tmp_path)
    assert main(["data", str(tmp_path/"surrogate.jsonl"), "--model", "tiny-random", "--lenient", "--out", str(tmp_path/"o")]) in (0, None)
    meta = json.loads((tmp_path/"o"/"prepared.json").read_text())
    assert meta["report"]["read"] == 31 and meta["report"]["kept"] == 30
    assert "surrogate.jsonl:1" in meta["report"]["skipped"][0][0]
    assert sum(1 for s in ("train", "validation", "test") for _ in open(tmp_path/"o"/f"{s}.jsonl")) == 30

def test_force_replaces_only_what_data_writes(tmp_path):
    files(tmp_path)
    assert main(["data", str(tmp_path/"ok.jsonl"), "--model", "tiny-random", "--out", str(tmp_path/"full"), "--force"]) in (0, None)
    assert (tmp_path/"full"/"precious.txt").read_text() == KEEP
    assert (tmp_path/"full"/"train.jsonl").is_file() and not [p for p in (tmp_path/"full").iterdir() if p.name.startswith(".")]
