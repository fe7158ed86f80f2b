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

CASES = [  # (name, argv, exit code, words the message must contain)
    ("train: missing config", ["train", "--config", "{t}/missing.yaml"], 2, ["missing.yaml"]),
    ("train: YAML syntax error", ["train", "--config", "{t}/bad.yaml"], 2, ["bad.yaml", "line"]),
    ("train: a list, not a mapping", ["train", "--config", "{t}/list.yaml"], 2, ["list.yaml", "mapping"]),
    ("train: zero steps", ["train", "--config", "{t}/zero.yaml"], 2, ["max_steps"]),
    ("train: negative learning rate", ["train", "--config", "{t}/neglr.yaml"], 2, ["learning_rate"]),
    ("train: learning rate not a number", ["train", "--config", "{t}/strlr.yaml"], 2, ["learning_rate"]),
    ("eval: negative limit", ["eval", "--model", "tiny-random", "--limit", "-1"], 2, ["--limit", "at least 0"]),
    ("eval: csv exists", ["eval", "--model", "tiny-random", "--csv", "{t}/rows.csv"], 2, ["rows.csv", "--force"]),
    ("zip: missing input", ["zip", "{t}/missing.txt", "{t}/o.llmz", "--model", "tiny-random"], 2, ["missing.txt"]),
    ("zip: output exists", ["zip", "{t}/a.txt", "{t}/existing.out", "--model", "tiny-random"], 2, ["existing.out", "--force"]),
    ("unzip: not an archive", ["unzip", "{t}/notarchive.bin", "{t}/o.txt", "--model", "tiny-random"], 2, ["notarchive.bin"]),
    ("unzip: a directory", ["unzip", "{t}/adir", "{t}/o.txt", "--model", "tiny-random"], 2, ["adir"]),
    ("unzip: output exists", ["unzip", "{t}/notarchive.bin", "{t}/existing.out", "--model", "tiny-random"], 2, ["existing.out", "--force"]),
    ("merge: not an adapter folder", ["merge", "--base", "tiny-random", "--adapter", "{t}/adir", "--out", "{t}/full"], 2, ["adapter_config.json"]),
    ("gguf: not a model", ["gguf", "{t}/notmodel.gguf", "--out-dir", "{t}/g"], 2, ["notmodel.gguf"]),
    ("pipeline: missing config", ["pipeline", "--config", "{t}/missing.yaml"], 2, ["missing.yaml"]),
    ("pipeline: YAML syntax error", ["pipeline", "--config", "{t}/bad.yaml"], 2, ["bad.yaml", "line"]),
]

@pytest.mark.parametrize("name,argv,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, argv, code, words, tmp_path, bad_input):
    files(tmp_path)
    bad_input(name, [a.format(t=tmp_path) for a in argv], code, words)
