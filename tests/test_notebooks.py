"""The course as a learner opens it: every notebook is committed executed, with clean outputs, and every
numbered stage notebook has at least one figure, three exercises with hidden worked solutions and visible
check cells, a summary and further reading. `make notebooks` writes the outputs these tests read."""
import base64, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/"nbs"
STAGES = sorted(NBS.glob("[0-9][0-9]_*.ipynb"))
STAGES = [p for p in STAGES if int(p.name[:2]) < 90]          # 00-09: the course's stages
EXECUTED = [p for p in sorted(NBS.glob("*.ipynb")) if p.name != "index.ipynb"]
MACHINE_PATH = re.compile(r"(/root/|/home/[a-z]|/work/|/Users/|/tmp/|site-packages|[A-Z]:\\\\Users)")

def load(p): return json.loads(p.read_text(encoding="utf-8"))
def src(c): return "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
def flags(c): return set(re.findall(r"^#\|\s*(\w+)", src(c), re.M))
def texts(o):
    if "text" in o: yield "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
    for k, v in o.get("data", {}).items():
        if k.startswith("text/"): yield "".join(v) if isinstance(v, list) else v
    if o.get("output_type") == "error": yield "\n".join(o.get("traceback", []))

def test_stage_notebooks_found(): assert len(STAGES) == 10, [p.name for p in STAGES]

@pytest.mark.parametrize("p", STAGES, ids=lambda p: p.name)
def test_exercises_summary_reading(p):
    cells = load(p)["cells"]
    heads = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and src(c).lstrip().startswith("## Exercises")]
    assert heads, f"{p.name}: no '## Exercises' section"
    ex = [i for i, c in enumerate(cells) if i > heads[0] and c["cell_type"] == "markdown" and src(c).lstrip().startswith("### Exercise")]
    assert len(ex) >= 3, f"{p.name}: {len(ex)} exercises, want at least 3"
    for a, b in zip(ex, [*ex[1:], len(cells)]):
        code = [c for c in cells[a+1:b] if c["cell_type"] == "code"]
        name = src(cells[a]).splitlines()[0]
        hidden = [c for c in code if c.get("metadata", {}).get("jupyter", {}).get("source_hidden")]
        assert hidden, f"{p.name}: {name!r} has no worked solution in a collapsed cell (metadata jupyter.source_hidden)"
        first = code.index(hidden[0])   # a place to try before the answer (issue 30)
        assert first > 0 and src(code[first - 1]).startswith("# Your turn"), f"{p.name}: {name!r} has no '# Your turn' cell before its solution"
        assert not any({"slow", "cuda"} & flags(c) for c in hidden), f"{p.name}: {name!r}: CI must run the solution"
        checks = [c for c in code if c not in hidden and ("assert" in src(c) or "test_" in src(c))]
        assert checks, f"{p.name}: {name!r} has no visible check cell (an assert or test_* the learner runs)"
    md = [src(c) for c in cells if c["cell_type"] == "markdown"]
    box = [s for s in md[:6] if "**Before you start.**" in s]   # issue 30: what to read first, what you need, level, time
    assert box and all(w in box[0] for w in ("Read first:", "Level:", "Time:", "On a GPU:")), f"{p.name}: no 'Before you start' box at the top"
    assert any(s.lstrip().startswith("## What you learned") for s in md), f"{p.name}: no '## What you learned'"
    quiz = [s for s in md if s.lstrip().startswith("## Quiz")]   # issue 30: about five questions, answers folded
    assert quiz and quiz[0].count("<details><summary>Answer</summary>") >= 5, f"{p.name}: no '## Quiz' of five folded answers"
    reading = [s for s in md if s.lstrip().startswith("## Further reading")]
    assert reading and len(re.findall(r"\]\(https?://", reading[0])) >= 2, f"{p.name}: '## Further reading' needs links"

@pytest.mark.parametrize("p", EXECUTED, ids=lambda p: p.name)
def test_committed_executed_and_clean(p):
    nb = load(p)
    assert p.stat().st_size < 2 * 2**20, f"{p.name}: {p.stat().st_size/2**20:.1f} MB, keep notebooks under 2 MB"
    assert "widgets" not in nb["metadata"], f"{p.name}: widget state saved in the metadata"
    top = [src(c) for c in nb["cells"][:5] if c["cell_type"] == "markdown"]
    assert any("**Saved outputs**" in s for s in top), f"{p.name}: no 'Saved outputs' note at the top (run `make notebooks`)"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    shown = [c for c in code if c.get("outputs")]
    assert shown, f"{p.name}: committed without outputs (run `make notebooks`)"
    for c in code:
        for o in c.get("outputs", []):
            assert o.get("output_type") != "error", f"{p.name}: an error output is saved"
            for t in texts(o):
                m = MACHINE_PATH.search(t)
                assert not m, f"{p.name}: a machine path in a saved output: ...{t[max(0, m.start()-40):m.end()+40]!r}"
                assert t.count("\r") <= 1 and len(re.findall(r"\w/s\]|s/\w+\]", t)) <= 1, f"{p.name}: progress-bar spam saved: {t[:120]!r}"
                lines = [l for l in t.splitlines() if l.strip()] if "text" in o else []   # printed text (tables repeat their tags)
                most = max((lines.count(l) for l in set(lines)), default=0)
                assert most <= 10, f"{p.name}: one line saved {most} times (say it once): {max(set(lines), key=lines.count)[:120]!r}"
            widgets = [k for k in o.get("data", {}) if "jupyter.widget" in k]
            assert not widgets, f"{p.name}: a widget saved as output ({widgets[0]}): it shows as dead text; end the cell with a value instead"
            for k, v in o.get("data", {}).items():
                if k.startswith("image/"):
                    assert k == "image/png", f"{p.name}: image saved as {k}, use PNG"
                    n = len(base64.b64decode("".join(v) if isinstance(v, list) else v))
                    assert n < 150_000, f"{p.name}: a {n/1000:.0f} KB image, keep them under 150 KB"

@pytest.mark.parametrize("p", STAGES, ids=lambda p: p.name)
def test_at_least_one_figure(p):
    outs = [o for c in load(p)["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    imgs = sum("image/png" in o.get("data", {}) for o in outs)
    md_imgs = sum(len(re.findall(r"!\[[^\]]*\]\(images/", src(c))) for c in load(p)["cells"] if c["cell_type"] == "markdown")
    assert imgs >= 1, f"{p.name}: no figure in the saved outputs ({md_imgs} linked images do not count)"

def test_py2nb_retired():
    assert not (ROOT/"tools"/"py2nb.py").exists(), "notebooks are edited as notebooks; rebuilding them from scripts wipes outputs"
