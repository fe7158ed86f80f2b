"""Bad input to `zip`, `unzip`, `merge`, `gguf` and `serve`, the cases test_cli_sweep.py does not hold (issue 16): each case names
the exit code and the words the message must hold; never a traceback, and no file that was there before is changed or removed.
The commands run in-process (`cli.main`) on `tiny-random`, so nothing heavy loads. An empty file is a valid input to `zip`: it
round-trips (an empty archive body, a 41-byte file), as `gzip` does with an empty file."""
import importlib.util, socket
import pytest
from qlora_course.cli import main
from qlora_course.models import tiny_random_dir

KEEP = "keep me: this file must survive"
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    "What some cases need, made once: a demo adapter, a small real GGUF file, a real archive, and a port something listens on."
    import qlora_course.export as ex
    d = tmp_path_factory.mktemp("sweep")
    (d/"a.txt").write_text("Some text to compress, and then to cut short. " * 4)
    assert main(["zip", str(d/"a.txt"), str(d/"a.llmz"), "--model", "tiny-random", "--context", "16"]) == 0
    busy = socket.socket(); busy.bind(("127.0.0.1", 0)); busy.listen()
    yield dict(ad=ex.make_demo_adapter("tiny-random", d/"ad"), gguf=ex.write_gguf(tiny_random_dir(), d/"tiny-F16.gguf", "f16"),
               blob=(d/"a.llmz").read_bytes(), busy=busy.getsockname()[1], tiny=tiny_random_dir())
    busy.close()

def files(tmp, made):
    "The inputs the cases refer to, made fresh in `tmp`."
    (tmp/"a.txt").write_text("Some text to compress. " * 5)
    (tmp/"empty.txt").write_bytes(b"")
    (tmp/"binary.bin").write_bytes(bytes(range(256)) * 2)
    (tmp/"adir").mkdir()
    (tmp/"full").mkdir(); (tmp/"full"/"precious.txt").write_text(KEEP)
    (tmp/"g").mkdir(); (tmp/"g"/"tiny-random-F16.gguf").write_text(KEEP)
    (tmp/"afile").write_text(KEEP)
    (tmp/"notmodel.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    (tmp/"cut-end.llmz").write_bytes(made["blob"][:-10])
    (tmp/"cut-head.llmz").write_bytes(made["blob"][:12])
    (tmp/"whole.llmz").write_bytes(made["blob"])

Z = ["--model", "tiny-random"]
CASES = [  # (name, argv, exit code, words the message must contain)
    ("zip: an empty file round-trips", ["zip", "{t}/empty.txt", "{t}/e.llmz", *Z], 0, ["0 ->", "e.llmz"]),
    ("zip: a binary file", ["zip", "{t}/binary.bin", "{t}/b.llmz", *Z, "--context", "32"], 0, ["512 ->"]),
    ("zip: a folder as input", ["zip", "{t}/adir", "{t}/o.llmz", *Z], 2, ["adir", "is a folder"]),
    ("zip: into a folder that does not exist", ["zip", "{t}/a.txt", "{t}/nodir/o.llmz", *Z], 2, ["nodir", "does not exist"]),
    ("zip: output is a folder", ["zip", "{t}/a.txt", "{t}/adir", *Z, "--force"], 2, ["adir", "is a folder"]),
    ("unzip: an archive cut at its end", ["unzip", "{t}/cut-end.llmz", "{t}/o.txt", *Z], 2, ["cut-end.llmz", "truncated"]),
    ("unzip: an archive cut in its header", ["unzip", "{t}/cut-head.llmz", "{t}/o.txt", *Z], 2, ["cut-head.llmz", "truncated"]),
    *[(f"unzip: --device {d} where there is none", ["unzip", "{t}/whole.llmz", "{t}/o.txt", *Z, "--device", d], 2, [f"'{d}'", "no such device"])
      for d in ("cuda", "mps")],   # tracebacks (issue 33)
    ("unzip: --device bogus", ["unzip", "{t}/whole.llmz", "{t}/o.txt", *Z, "--device", "bogus"], 2, ["'bogus'", "cpu, cuda"]),
    ("unzip: an empty file", ["unzip", "{t}/empty.txt", "{t}/o.txt", *Z], 2, ["empty.txt", "empty file"]),
    ("unzip: missing input", ["unzip", "{t}/missing.llmz", "{t}/o.txt", *Z], 2, ["missing.llmz", "not found"]),
    ("gguf: --type bogus", ["gguf", "{tiny}", "--type", "bogus", "--out-dir", "{t}/g2"], 2, ["'bogus'", "F16", "Q4_K_M"]),
    ("gguf: --out-dir onto an existing .gguf", ["gguf", "{tiny}", "--out-dir", "{t}/g", "--no-verify"], 2,
     ["tiny-random-F16.gguf", "already exists", "--force"]),
    ("gguf: --out-dir is a file", ["gguf", "{tiny}", "--out-dir", "{t}/afile", "--no-verify"], 2, ["afile", "not a folder"]),
    ("merge: --out a non-empty folder merge did not write", ["merge", "--base", "tiny-random", "--adapter", "{ad}", "--out", "{t}/full"], 2,
     ["full", "not empty", "--force"]),
    ("merge: --prompts 0", ["merge", "--base", "tiny-random", "--adapter", "{ad}", "--out", "{t}/m", "--prompts", "0"], 2, ["--prompts", "at least 1"]),
    ("serve: not a GGUF file", ["serve", "{t}/notmodel.gguf"], 2, ["notmodel.gguf", "not a GGUF file"]),
    ("serve: missing file", ["serve", "{t}/missing.gguf"], 2, ["missing.gguf", "not found"]),
    ("serve: a folder", ["serve", "{t}/adir"], 2, ["adir", "is a folder"]),
    ("serve: --port 0", ["serve", "{gguf}", "--port", "0"], 2, ["--port 0", "not a TCP port"]),
    ("serve: --port in use", ["serve", "{gguf}", "--port", "{busy}"], 2, ["already in use", "--port"]),
    pytest.param("serve: without the llama extra", ["serve", "{gguf}", "--port", "{free}"], 2, ["qlora-course[llama]"],
                 marks=pytest.mark.skipif(HAVE_LLAMA, reason="llama-cpp-python is installed: the server would start")),
]

def _name(c): return (c.values if hasattr(c, "values") else c)[0]

@pytest.mark.parametrize("name,argv,code,words", CASES, ids=[_name(c) for c in CASES])
def test_bad_input(name, argv, code, words, made, tmp_path, bad_input):
    from qlora_course.export import free_port
    files(tmp_path, made)
    out = bad_input(name, [a.format(t=tmp_path, free=free_port(), **made) for a in argv], code, words)
    if code: assert len([l for l in out.err.splitlines() if "error:" in l]) == 1, f"{name}: not one error line: {out.err[-500:]}"
    if code: assert not [p for p in tmp_path.rglob(".*")], f"{name}: a temporary file was left behind"

def test_empty_file_round_trips(tmp_path):
    "`zip` of an empty file makes a valid archive, and `unzip` gives the empty file back."
    (tmp_path/"empty.txt").write_bytes(b"")
    assert main(["zip", str(tmp_path/"empty.txt"), str(tmp_path/"e.llmz"), *Z]) == 0
    assert main(["unzip", str(tmp_path/"e.llmz"), str(tmp_path/"e.out"), *Z]) == 0
    assert (tmp_path/"e.out").read_bytes() == b"" and (tmp_path/"e.llmz").stat().st_size > 0

def test_gguf_refuses_a_system_message_the_modelfile_cant_hold_before_writing(tmp_path, capsys):
    'Issue 33: `gguf --system \'a """ b\'` wrote the .gguf, then refused the Modelfile: a partial output.'
    assert main(["gguf", str(tiny_random_dir()), "--out-dir", str(tmp_path/"g"), "--no-verify", "--system", 'a """ b']) == 2
    assert '"""' in capsys.readouterr().err
    assert not (tmp_path/"g").exists() or not list((tmp_path/"g").iterdir())
