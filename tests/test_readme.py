"README.md is generated from nbs/index.ipynb and states the two commands and the course map."
import importlib.util, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _render():
    spec = importlib.util.spec_from_file_location("make_readme", ROOT/"tools"/"make_readme.py")
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m.render()

def test_readme_matches_index():
    assert (ROOT/"README.md").read_text(encoding="utf-8") == _render(), \
        "README.md is out of date: run `make readme` (tools/make_readme.py) and commit it"

def test_readme_states_commands_and_every_notebook():
    text = (ROOT/"README.md").read_text(encoding="utf-8")
    assert "make test" in text and "make course" in text
    for nb in sorted((ROOT/"nbs").glob("[0-9][0-9]_*.ipynb")):
        assert nb.name in text, f"the course map in nbs/index.ipynb does not mention {nb.name}"

def test_ci_runs_only_make_test():
    cmds = [l.strip() for l in (ROOT/".ci"/"run").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert cmds[-1] == "make test" and not any(re.match(r"(pip|python|pytest|nbdev)", c) for c in cmds)

def _relative_links(text):
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:|#", t)]

def test_links_resolve_from_nbs_and_from_the_root():
    import json
    index = "\n".join("".join(c["source"]) for c in json.loads((ROOT/"nbs"/"index.ipynb").read_text())["cells"] if c["cell_type"] == "markdown")
    links = _relative_links(index)
    assert len(links) >= 11
    for t in links: assert (ROOT/"nbs"/t.split("#")[0]).exists(), f"nbs/index.ipynb links to {t}, which does not exist from nbs/"
    for t in _relative_links((ROOT/"README.md").read_text(encoding="utf-8")):
        assert (ROOT/t.split("#")[0]).exists(), f"README.md links to {t}, which does not exist from the repository root"
