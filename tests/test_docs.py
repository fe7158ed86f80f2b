"""The course site's glue (tools/build_docs.py) on small inputs, and the screenshots the course home shows.
The whole site is built and checked in a browser by tests/test_browser.py."""
import sys
from pathlib import Path
import nbformat
from fastcore.test import test_eq as eq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/"tools"))
import build_docs as bd

def test_course_order():
    nbs = bd.course_notebooks()
    eq(nbs[0].name, "index.ipynb")
    eq([p.name for p in nbs[1:]], sorted(p.name for p in (ROOT/"nbs").glob("[0-9]*.ipynb")))
    eq([bd.page_name(p) for p in nbs[:2]], ["index.html", nbs[1].stem + ".html"])

def test_site_links():
    eq(bd.site_link("nbs/04_infer.ipynb"), "04_infer.html")           # repo-root-relative, as in the course home
    eq(bd.site_link("04_infer.ipynb#Chat"), "04_infer.html#Chat")     # notebook-relative, with an anchor
    img = next((ROOT/"nbs"/"images").glob("*.png")).name
    eq(bd.site_link(f"images/{img}"), f"images/{img}")
    eq(bd.site_link(f"nbs/images/{img}"), f"images/{img}")
    eq(bd.site_link("course.yaml"), f"{bd.REPO_URL}/course.yaml")    # other repo files: on GitHub
    for t in ("https://nbdev.fast.ai", "#Chat", "mailto:a@b.c", "no/such/file.md"): eq(bd.site_link(t), t)
    eq(bd.rewrite_links('[a](nbs/02_data.ipynb) and <img src="images/x.png"> [b](https://x.org/y.ipynb)'),
            '[a](02_data.html) and <img src="images/x.png"> [b](https://x.org/y.ipynb)')

def test_prepare():
    c = nbformat.v4
    out = c.new_output("display_data", data={"text/plain": "VBox()", "application/vnd.jupyter.widget-view+json": {"model_id": "1"}})
    nb = c.new_notebook(cells=[c.new_code_cell("# Colab only: install\nimport os"), c.new_code_cell("#| default_exp m"),
                               c.new_markdown_cell("# T\n\nSee [data](02_data.ipynb)."), c.new_code_cell("#| hide\nsecret = 1"),
                               c.new_code_cell("#| export\ndef f(): return 1"), c.new_code_cell("ui", outputs=[out])],
                        metadata={"widgets": {"state": {}}})
    nb = bd.prepare(nb)
    eq([x.source for x in nb.cells], ["# T\n\nSee [data](02_data.html).", "def f(): return 1", "ui"])
    eq(list(nb.cells[-1].outputs[0].data), ["text/plain"])
    assert "widgets" not in nb.metadata
    eq(bd.title_of(nb, "x"), "T")

def _f(a:int=8, # the rank
       b=None)->str: # the answer
    "Do a thing."
    return str(a)

def test_api_entry():
    md = bd.api_entry("m._f", _f)
    assert md.startswith("### m._f\n\n```python\n_f(a: int = 8, b=None) -> str\n```\n\nDo a thing."), md
    assert "| **a** | <code>int</code> | <code>8</code> | the rank |" in md, md
    assert "| **b** |  | <code>None</code> |  |" in md, md
    assert "| **return** | <code>str</code> |  | the answer |" in md, md

def test_course_home_shows_screenshots():
    "The site's home and the chat widget in JupyterLab, as saved by tests/test_browser.py, are in the course home."
    home = (ROOT/"nbs"/"index.ipynb").read_text(encoding="utf-8")
    for name in ("site_home.png", "jupyterlab_chat.png"):
        p = ROOT/"nbs"/"images"/name
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{p} is not a PNG"
        assert p.stat().st_size < 150 * 1024, f"{p} is {p.stat().st_size // 1024} KB; keep screenshots under 150 KB"
        assert f"](images/{name})" in home, f"nbs/index.ipynb does not show {name}"   # links relative to nbs/
        assert f"](nbs/images/{name})" in (ROOT/"README.md").read_text(encoding="utf-8"), f"README.md does not show {name}"
