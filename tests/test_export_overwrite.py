"Export stage: `merge` and `gguf` never delete or overwrite what they did not write; wrong base refused; K-quants without the extra."
import json, os, sys
from pathlib import Path
import pytest
from transformers import AutoTokenizer

import qlora_course.export as ex
from qlora_course.models import tiny_random_dir, random_model
from qlora_course.cli import main as cli_main


@pytest.fixture(scope="module")
def ad(tmp_path_factory):
    "A demo LoRA adapter for tiny-random."
    return ex.make_demo_adapter("tiny-random", tmp_path_factory.mktemp("ow")/"adapter", std=0.05, seed=1)

def _tree(d:Path) -> dict:
    "Every file under `d` with its bytes."
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

def _merge(ad, out, *extra):
    return cli_main(["merge", "--base", "tiny-random", "--adapter", str(ad), "--out", str(out), "--dtype", "fp32", "--no-verify", *extra])

def _one_error(capsys, cmd):
    err = capsys.readouterr().err   # (progress bars of the model saves before the command may be there too)
    errs = [l for l in err.splitlines() if l.startswith("qlora-course")]
    assert len(errs) == 1 and errs[0].startswith(f"qlora-course {cmd}: error:") and "Traceback" not in err, err
    return errs[0]


# ---------- merge --out ----------
def test_merge_refuses_a_training_run_folder_and_force_keeps_its_files(ad, tmp_path, capsys):
    "The reported data loss: --out set to a training run's folder deleted its adapter, metrics and plot."
    run = tmp_path/"run"; (run/"adapter").mkdir(parents=True)
    (run/"adapter"/"adapter_model.safetensors").write_bytes(b"weights"); (run/"metrics.json").write_text("{}"); (run/"loss.png").write_bytes(b"png")
    before = _tree(run)
    assert _merge(ad, run) == 2
    err = _one_error(capsys, "merge")
    assert "not empty" in err and "--force" in err and str(run) in err
    assert _tree(run) == before
    assert _merge(ad, run, "--force") == 0
    after = _tree(run)
    assert {k: v for k, v in after.items() if k in before} == before   # nothing of the run was touched
    assert {"model.safetensors", "config.json", "export.json"} <= set(after)
    assert not [p for p in run.iterdir() if p.name.startswith(".")]     # no temporary folder left

def test_merge_out_dot_is_refused(ad, tmp_path, monkeypatch, capsys):
    "`--out .` emptied the working directory."
    (tmp_path/"notes.txt").write_text("mine"); (tmp_path/"sub").mkdir(); (tmp_path/"sub"/"x").write_text("x")
    before = _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert _merge(ad, ".") == 2
    assert "not empty" in _one_error(capsys, "merge")
    assert _tree(tmp_path) == before

def test_merge_force_replaces_only_what_a_merge_wrote(ad, tmp_path):
    out = tmp_path/"m"
    ex.merge_adapter("tiny-random", ad, out, dtype="fp32")
    (out/"notes.txt").write_text("mine")
    # an earlier merge that wrote a file this one does not write: it is removed; an unlisted file is kept
    info = json.loads((out/"export.json").read_text()); info["files"].append("model-00002-of-00002.safetensors")
    (out/"export.json").write_text(json.dumps(info)); (out/"model-00002-of-00002.safetensors").write_bytes(b"stale")
    ex.merge_adapter("tiny-random", ad, out, dtype="fp16", force=True)
    names = {p.name for p in out.iterdir()}
    assert "notes.txt" in names and "model-00002-of-00002.safetensors" not in names
    assert json.loads((out/"export.json").read_text())["dtype"] == "float16"
    assert set(json.loads((out/"export.json").read_text())["files"]) == names - {"notes.txt"}

def test_merge_into_empty_or_new_folder(ad, tmp_path):
    (tmp_path/"empty").mkdir()
    for o in (tmp_path/"empty", tmp_path/"new"/"deeper"):
        ex.merge_adapter("tiny-random", ad, o, dtype="fp32")
        assert (o/"model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]

def test_merge_never_writes_into_the_adapter_or_base_folder(ad, tmp_path, capsys):
    before = _tree(ad)
    assert _merge(ad, ad, "--force") == 2
    assert "is the adapter folder" in _one_error(capsys, "merge")
    with pytest.raises(ValueError, match="is the base model folder"):
        ex.merge_adapter("tiny-random", ad, tiny_random_dir(), force=True)
    assert _tree(ad) == before

def test_merge_out_is_a_file(ad, tmp_path, capsys):
    (tmp_path/"f").write_text("x")
    assert _merge(ad, tmp_path/"f", "--force") == 2
    assert "not a folder" in _one_error(capsys, "merge") and (tmp_path/"f").read_text() == "x"

@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_merge_interrupted_leaves_only_what_was_there(ad, tmp_path, monkeypatch, exc):
    import transformers.modeling_utils as mu
    out = tmp_path/"m"; out.mkdir(); (out/"notes.txt").write_text("mine")
    def boom(*a, **k): raise exc("stop")
    monkeypatch.setattr(mu, "safe_save_file", boom)
    with pytest.raises(exc):
        ex.merge_adapter("tiny-random", ad, out, force=True)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(exc):
        ex.merge_adapter("tiny-random", ad, tmp_path/"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ---------- an adapter merged into another base ----------
def test_adapter_base_of_the_same_shapes_is_refused(ad, tmp_path, capsys):
    other = tmp_path/"other"   # tiny-random's architecture and shapes, other weights
    random_model("tiny-random", seed=7).save_pretrained(other); AutoTokenizer.from_pretrained(tiny_random_dir()).save_pretrained(other)
    assert cli_main(["merge", "--base", str(other), "--adapter", str(ad), "--out", str(tmp_path/"o"), "--no-verify"]) == 2
    err = _one_error(capsys, "merge")
    assert "says the adapter was trained on" in err and str(tiny_random_dir()) in err and "--other-base" in err
    assert not (tmp_path/"o").exists()
    assert cli_main(["merge", "--base", str(other), "--adapter", str(ad), "--out", str(tmp_path/"o"), "--no-verify", "--other-base"]) == 0
    assert json.loads((tmp_path/"o"/"export.json").read_text())["adapter_base"] == str(tiny_random_dir())

def test_same_base(tmp_path):
    t = tiny_random_dir()
    assert ex.same_base(str(t), "tiny-random") and ex.same_base(str(t), t) and ex.same_base(None, "tiny-random")
    assert ex.same_base("/elsewhere/cache/tiny-random", "tiny-random")   # the same course model in another cache folder
    assert ex.same_base(str(t) + "/", str(t))
    assert not ex.same_base(str(t), "smollm2-135m-instruct")
    assert not ex.same_base("/some/other-model", "tiny-random")


# ---------- gguf ----------
def test_gguf_refuses_existing_files_unless_force(tmp_path, capsys):
    m = tiny_random_dir()
    args = ["gguf", str(m), "--type", "q8_0", "--out-dir", str(tmp_path), "--no-verify"]
    assert cli_main(args) == 0
    capsys.readouterr()
    f = tmp_path/"tiny-random-Q8_0.gguf"
    f.write_bytes(b"GGUF mine"); mf = (tmp_path/"Modelfile").read_text()
    assert cli_main(args) == 2
    assert "already exists" in _one_error(capsys, "gguf") and f.read_bytes() == b"GGUF mine"
    # only the Modelfile exists: refused before any GGUF is written
    f.unlink()
    assert cli_main(args) == 2 and not f.exists()
    assert "Modelfile already exists" in _one_error(capsys, "gguf")
    assert cli_main(args + ["--force"]) == 0 and f.stat().st_size > 1000 and (tmp_path/"Modelfile").read_text() == mf
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Modelfile", "README.md", "tiny-random-Q8_0.gguf"]

def test_write_gguf_refuses_and_never_leaves_a_partial_file(tmp_path, monkeypatch):
    import gguf
    (tmp_path/"x.gguf").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="already exists"):
        ex.write_gguf(tiny_random_dir(), tmp_path/"x.gguf", "f16")
    with pytest.raises(IsADirectoryError):
        ex.write_gguf(tiny_random_dir(), tmp_path, "f16")
    def stop(self, **k): raise KeyboardInterrupt
    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", stop)
    with pytest.raises(KeyboardInterrupt):
        ex.write_gguf(tiny_random_dir(), tmp_path/"x.gguf", "f16", force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["x.gguf"] and (tmp_path/"x.gguf").read_bytes() == b"mine"

def test_write_gguf_keeps_a_file_named_like_the_old_partial(tmp_path):
    "The temporary name is unique: a user's `x.gguf.partial` is neither used nor removed."
    (tmp_path/"x.gguf.partial").write_text("mine")
    ex.write_gguf(tiny_random_dir(), tmp_path/"x.gguf", "f16")
    assert (tmp_path/"x.gguf.partial").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["x.gguf", "x.gguf.partial"]


# ---------- K-quants without the llama extra ----------
def test_k_quants_without_llama_cpp_name_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)   # import llama_cpp now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'qlora-course\[llama\]'"):
        ex.llama_cpp_module()
    assert cli_main(["gguf", str(tiny_random_dir()), "--type", "f16", "--type", "Q4_K_M", "--out-dir", str(tmp_path/"o"), "--no-verify"]) == 2
    err = _one_error(capsys, "gguf")
    assert "pip install 'qlora-course[llama]'" in err and "llama-cpp-python" in err
    assert not (tmp_path/"o").exists() or not list((tmp_path/"o").iterdir())   # nothing written, not even the F16 file
    # the pure-Python types still work without it
    assert cli_main(["gguf", str(tiny_random_dir()), "--type", "q4_0", "--out-dir", str(tmp_path/"o"), "--no-verify"]) == 0
