"""One model switch (issue 14): every numbered notebook sets `MODEL = course_model()` before it loads the real model,
and loads the real model only through `MODEL`; running a notebook with `QLORA_COURSE_MODEL=tiny-random` proves the
switch is real (every model-dependent cell then runs on the 2-layer random model, and claims about the embedded
model are skipped, not failed)."""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = [p for p in sorted((ROOT/"nbs").glob("[0-9][0-9]_*.ipynb")) if int(p.name[:2]) < 90]
SWITCH = re.compile(r"^MODEL = course_model\(", re.M)
# ways of naming the embedded model other than MODEL: the literal name, or a loader called with its default
HARD_CODED = re.compile(r'"smollm2-135m-instruct"|load_model\(\)|load_model\((DEFAULT_MODEL|quant=)|load_tokenizer\(\)|'
                        r'load_with_adapter\(DEFAULT_MODEL|merge_adapter\(DEFAULT_MODEL')
LOADS = re.compile(r"load_model\(MODEL|load_tokenizer\(MODEL|meta_model\(MODEL|merge_adapter\(MODEL|load_with_adapter\(MODEL|model=MODEL")

def cells(p): return json.loads(p.read_text(encoding="utf-8"))["cells"]
def src(c): return "".join(c["source"])
def code(p): return [(i, src(c)) for i, c in enumerate(cells(p)) if c["cell_type"] == "code" and not src(c).startswith("#| export")]

@pytest.mark.parametrize("p", STAGES, ids=lambda p: p.name)
def test_one_switch_before_any_load(p):
    cs = code(p)
    sw = [i for i, s in cs if SWITCH.search(s)]
    assert len(sw) == 1, f"{p.name}: want exactly one `MODEL = course_model()` cell, found {len(sw)}"
    loads = [i for i, s in cs if LOADS.search(s)]
    assert all(i > sw[0] for i in loads), f"{p.name}: cell(s) {[i for i in loads if i < sw[0]]} use MODEL before it is set"
    heads = [i for i, c in enumerate(cells(p)) if c["cell_type"] == "markdown" and src(c).startswith("## ")]
    if p.name != "00_models.ipynb":   # 00 defines course_model in its first section; the others set MODEL before theirs
        assert sw[0] < heads[0], f"{p.name}: MODEL is set in cell {sw[0]}, after the first section (cell {heads[0]})"

@pytest.mark.parametrize("p", STAGES, ids=lambda p: p.name)
def test_no_hard_coded_model(p):
    bad = [(i, m.group(0)) for i, s in code(p) if "#| cuda" not in s and i > 0 for m in [HARD_CODED.search(s)] if m]
    assert not bad, f"{p.name}: cells load the embedded model without MODEL: {bad}"

def test_switch_reads_the_environment():
    r = subprocess.run([sys.executable, "-c", "from qlora_course.models import course_model; print(course_model())"],
                       env={**os.environ, "QLORA_COURSE_MODEL": "tiny-random"}, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "tiny-random"

@pytest.mark.parametrize("p", STAGES, ids=lambda p: p.name)
def test_notebook_runs_on_tiny_random(p, tmp_path):   # about 4 min for all ten on 2 cores
    "The whole notebook at the short budget with MODEL=tiny-random (a copy runs, so saved outputs are untouched)."
    (tmp_path/"nbs").mkdir()   # nbdev-test reads tst_flags from the pyproject.toml above the notebook: without it, slow and cuda cells run
    (tmp_path/"pyproject.toml").write_text((ROOT/"pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    nb = tmp_path/"nbs"/p.name
    nb.write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    env = {**os.environ, "QLORA_COURSE_MODEL": "tiny-random", "QLORA_COURSE_FULL": "0", "QLORA_COURSE_DATA": str(ROOT/"data")}
    r = subprocess.run([str(Path(sys.executable).parent/"nbdev-test"), str(nb)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
