"`qlora-course zip`/`unzip` never overwrite without --force, never leave a partial file, and refuse hand-made archives fast (issue 16)."
from pathlib import Path
import pytest, torch
from qlora_course.cli import main
from qlora_course.models import load_model
from qlora_course import llmzip, models
from qlora_course.llmzip import compress, decompress, read_header, pack_container, FORMAT_VERSION, pack_ranks

@pytest.fixture(scope="module")
def mt():
    torch.set_num_threads(1)
    return load_model("tiny-random")

@pytest.fixture(scope="module")
def blob(mt):
    return compress("A text for forged headers. " * 4, *mt, context_size=16, batch_size=2)

def forge(blob, version=FORMAT_VERSION, payload=None, **kw):
    "`blob` with header fields changed and both CRCs recomputed."
    h = {**read_header(blob), **kw}
    if payload is not None: h["payload"] = payload
    return pack_container(h, version)

def test_forge_is_faithful(mt, blob):
    assert forge(blob) == blob and decompress(forge(blob), *mt) == b"A text for forged headers. " * 4

@pytest.mark.parametrize("kw,words", [
    (dict(version=0, engine="lean", dtype=0, device=0, threads=1), "version 0"),   # versions before 4 have format 3's fields
    (dict(version=1, engine="lean", dtype=0, device=0, threads=1), "earlier qlora-course"),
    (dict(tokens=10**12, nbytes=10**12), "more than its"),
    (dict(tokens=2**60, nbytes=2**61), "more than its"),
    (dict(batch_size=10**9), "batch_size"),
    (dict(batch_size=0), "batch_size"),
    (dict(context_size=10**9), "context_size"),
    (dict(context_size=9000), "positions"),
    (dict(threads=10**6, version=3, engine="lean", dtype=0, device=0), "threads"),   # format 3's thread count
    (dict(window=10**9), "window"),
    (dict(window=1), "window"),
    (dict(tokens=3, nbytes=10**9), "cannot stand for"),
    (dict(tokens=10**6, nbytes=10), "tokens for"),
    (dict(start_id=10**7), "start token"),
    (dict(codec=7), "arithmetic"),
    (dict(payload=b"\x00" * 6), "arithmetic"),
])
def test_crafted_header_fails_fast_and_clean(mt, blob, kw, words):
    with pytest.raises(ValueError, match=words): decompress(forge(blob, **kw), *mt)

def test_rank_stream_bomb(mt):
    "A rank stream that decompresses to far more ranks than the header's tokens is refused without decompressing it all."
    z = compress("rank mode text", *mt, mode="rank", context_size=16, verify=False)
    codec, bomb = pack_ranks([0] * 2_000_000)
    with pytest.raises(ValueError, match="more than the"):
        decompress(forge(z, codec=codec, payload=bomb), *mt)

def test_memory_and_index_errors_become_clean(mt, blob, monkeypatch):
    for exc in (MemoryError, IndexError):
        def boom(*a, **k): raise exc("boom")
        monkeypatch.setattr(llmzip, "_decode", boom)
        with pytest.raises(ValueError, match="corrupted llmzip file"): decompress(blob, *mt)

def _files(d): return sorted(p.name for p in Path(d).iterdir())

@pytest.fixture()
def files(tmp_path):
    src = tmp_path/"in.txt"; src.write_bytes("force test ✓\n".encode() * 3)
    assert main(["zip", str(src), str(tmp_path/"a.llmz"), "--model", "tiny-random", "--context", "16"]) == 0
    return tmp_path, src

@pytest.mark.parametrize("cmd", ["zip", "unzip"])
def test_refuses_existing_output_unless_force(files, capsys, cmd):
    d, src = files
    inp = src if cmd == "zip" else d/"a.llmz"
    out = d/"exists.out"; out.write_bytes(b"precious")
    capsys.readouterr()
    assert main([cmd, str(inp), str(out), "--model", "tiny-random"]) == 2
    err = capsys.readouterr().err
    assert "exists.out" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"
    assert main([cmd, str(inp), str(out), "--model", "tiny-random", "--force"]) == 0
    assert out.read_bytes() != b"precious"
    if cmd == "unzip": assert out.read_bytes() == src.read_bytes()

def test_output_is_a_folder(files, capsys):
    d, src = files
    (d/"sub").mkdir()
    assert main(["zip", str(src), str(d/"sub"), "--model", "tiny-random", "--force"]) == 2
    assert "folder" in capsys.readouterr().err

@pytest.mark.parametrize("where", ["coding", "rename"])
def test_no_partial_file_after_ctrl_c(files, monkeypatch, where):
    d, src = files
    before = _files(d)
    def interrupt(*a, **k): raise KeyboardInterrupt
    if where == "coding": monkeypatch.setattr(llmzip, "compress", interrupt)
    else: monkeypatch.setattr(models.os, "replace", interrupt)   # the rename in models.atomic_file, which write_atomic uses
    assert main(["zip", str(src), str(d/"new.llmz"), "--model", "tiny-random", "--context", "16"]) == 130
    assert _files(d) == before   # neither the output nor a temporary file

def test_crafted_archive_on_the_command_line(files, capsys, blob):
    d, _ = files
    (d/"bad.llmz").write_bytes(forge(blob, tokens=10**12, nbytes=10**12))
    assert main(["unzip", str(d/"bad.llmz"), str(d/"bad.out"), "--model", "tiny-random"]) == 2
    err = capsys.readouterr().err
    assert "corrupted llmzip file" in err and "Traceback" not in err and not (d/"bad.out").exists()
