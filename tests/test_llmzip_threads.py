"An llmzip file decodes the same whatever thread count the decoding process runs with (issue 16): zip with 2 threads, unzip with 1."
import os, subprocess, sys
import pytest

TEXT = ("Thread counts change the order in which a matrix product adds its partial sums. " * 12 + "ünïcödé ✓\n") * 2

def _run(args, threads, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    code = f"import torch, sys; torch.set_num_threads({threads}); from qlora_course.cli import main; sys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=1800)

def _round_trip(tmp_path, model, extra=()):
    src = tmp_path/"in.txt"; src.write_text(TEXT, encoding="utf-8")
    z = _run(["zip", str(src), str(tmp_path/"a.llmz"), "--model", model, "--no-verify", "--engine", "lean", *extra], 2, tmp_path)   # machine-only (format 3) files carry the thread count
    assert z.returncode == 0, z.stderr[-2000:]
    from qlora_course.llmzip import read_header
    h = read_header((tmp_path/"a.llmz").read_bytes())
    assert h["threads"] == 2   # the encoder's thread count is in the file
    u = _run(["unzip", str(tmp_path/"a.llmz"), str(tmp_path/"out.txt"), "--model", model], 1, tmp_path)
    assert u.returncode == 0, u.stderr[-2000:]
    assert (tmp_path/"out.txt").read_bytes() == src.read_bytes()

def test_zip_2_threads_unzip_1_thread_tiny(tmp_path):
    _round_trip(tmp_path, "tiny-random", ["--context", "32", "--batch", "4"])

@pytest.mark.slow
def test_zip_2_threads_unzip_1_thread_real_model(tmp_path):
    _round_trip(tmp_path, "smollm2-135m-instruct", ["--context", "64", "--batch", "8"])

def test_decoder_sets_the_files_thread_count(monkeypatch):
    "In one process: the decoder runs under the header's thread count and puts the caller's back afterwards."
    import torch
    from qlora_course import llmzip
    from qlora_course.models import load_model
    m, tok = load_model("tiny-random")
    seen = []
    for cls in (llmzip.StepRunner, llmzip.LeanStep):   # both engines
        monkeypatch.setattr(cls, "step", lambda self, *a, _orig=cls.step: (seen.append(torch.get_num_threads()), _orig(self, *a))[1])
    torch.set_num_threads(1)
    for engine in ("lean", "transformers"):
        z = llmzip.compress("a few words", m, tok, context_size=8, batch_size=2, threads=2, verify=False, engine=engine)
        seen.clear(); torch.set_num_threads(1)
        assert llmzip.decompress(z, m, tok) == b"a few words"
        assert seen and set(seen) == {2} and torch.get_num_threads() == 1
