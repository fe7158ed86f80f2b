"""Build the course site in `_docs/` (or `--out DIR`) with nbconvert, without Quarto.

Pages, in course order: the course home (nbs/index.ipynb) as index.html, each numbered notebook with
whatever outputs it was saved with, then api.html, the API reference of every exported function
(signature, docstring and the docments parameter table, from fastcore's `docments`).
The glue here only prepares notebooks for nbconvert's JupyterLab HTML exporter: nbdev directives are
removed (`#| hide` cells left out), links between notebooks point at their pages, and a navigation bar is
added (tools/docs/templates/course). Nothing is fetched at build time or when a page is viewed: the
pages load no require.js and MathJax comes from the PyPI package jupyter-server-mathjax, copied in.
Run: `make docs` (or `.venv/bin/python tools/build_docs.py [--out DIR]`).
"""
import argparse, html, importlib, inspect, re, shutil, sys, time
from pathlib import Path
import nbformat
from nbconvert import HTMLExporter
from fastcore.docments import docments

ROOT = Path(__file__).resolve().parents[1]
NBS, TEMPLATES = ROOT/"nbs", ROOT/"tools"/"docs"/"templates"
sys.path.insert(0, str(ROOT/"tools"))
from colab_cell import repo_url   # the repository URL is written once, in pyproject.toml
REPO_URL = repo_url() + "/blob/main"
MATHJAX = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"

def course_notebooks(nbs=NBS) -> list:
    "The course home, then the numbered notebooks in course order."
    return [nbs/"index.ipynb"] + sorted(p for p in nbs.glob("[0-9]*.ipynb"))

def page_name(nb_path) -> str:
    "The site page of notebook `nb_path`."
    return "index.html" if Path(nb_path).stem == "index" else Path(nb_path).stem + ".html"

def site_link(target:str, nbs=NBS) -> str:
    "Where a link in a notebook's markdown points on the site: notebooks to pages, images to images/, other repo files to GitHub."
    if re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", target, re.I): return target
    path, _, frag = target.partition("#")
    frag = "#" + frag if frag else ""
    for base in (nbs, nbs.parent):          # notebook-relative, or repo-root-relative as in the course home
        p = (base/path).resolve()
        if not p.exists(): continue
        if p.suffix == ".ipynb" and p.parent == nbs.resolve(): return page_name(p) + frag
        if nbs.resolve()/"images" in p.parents: return "images/" + p.name
        return f"{REPO_URL}/{p.relative_to(nbs.parent.resolve()).as_posix()}{frag}"
    return target

_LINK = re.compile(r"(\]\()([^)\s]+)|((?:src|href)=[\"'])([^\"']+)")

def rewrite_links(md:str, nbs=NBS) -> str:
    "Markdown `md` with every local link and image pointing where it lives on the site."
    return _LINK.sub(lambda m: (m[1] + site_link(m[2], nbs)) if m[1] else (m[3] + site_link(m[4], nbs)), md)

def prepare(nb):
    "Notebook `nb` ready for the exporter: no nbdev directives, no `#| hide` or Colab set-up cells, site links, no widget state."
    cells = []
    for c in nb.cells:
        if c.cell_type == "code" and c.source.startswith("# Colab only"): continue   # it does nothing off Colab
        lines = c.source.splitlines()
        if c.cell_type == "code":
            flags = [l[2:].strip() for l in lines if l.startswith("#|")]
            if "hide" in flags: continue
            c.source = "\n".join(l for l in lines if not l.startswith("#|")).strip("\n")
            if not c.source and not c.get("outputs"): continue
            for o in c.get("outputs", []):   # a live widget can't run in a static page: keep its text form
                if "data" in o: o.data.pop("application/vnd.jupyter.widget-view+json", None)
        elif c.cell_type == "markdown": c.source = rewrite_links(c.source)
        cells.append(c)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb

def title_of(nb, default:str) -> str:
    "The first markdown heading of `nb`."
    for c in nb.cells:
        m = re.search(r"^#\s+(.+)$", c.source, re.M) if c.cell_type == "markdown" else None
        if m: return m[1].strip()
    return default

def _params_table(obj) -> str:
    try: dm = docments(obj, full=True, returns=True)
    except Exception: return ""
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): sig = None
    rows = []
    for k, v in dm.items():
        if k == "self": continue
        a = v.anno            # the written annotation (docments would infer NoneType from a None default)
        if sig is not None: a = sig.return_annotation if k == "return" else getattr(sig.parameters.get(k), "annotation", a)
        anno = "" if a is inspect._empty else a if isinstance(a, str) else getattr(a, "__name__", str(a)) if isinstance(a, type) else str(a)
        default = "" if v.default is inspect._empty else repr(v.default)
        if k == "return" and not (anno or v.docment): continue
        cell = lambda s: html.escape(str(s)).replace("|", "&#124;")
        code = lambda s: f"<code>{cell(s)}</code>" if s else ""
        rows.append(f"| **{k}** | {code(anno)} | {code(default)} | {cell(v.docment or '')} |")
    return ("| | type | default | |\n|---|---|---|---|\n" + "\n".join(rows)) if rows else ""

def api_entry(name:str, obj) -> str:
    "Markdown for one exported function or class: heading, signature, docstring, parameter table."
    try: sig = str(inspect.signature(obj))
    except (TypeError, ValueError): sig = "(...)"
    kind = "class " if inspect.isclass(obj) else ""
    parts = [f"### {name}", f"```python\n{kind}{name.split('.')[-1]}{sig}\n```", inspect.getdoc(obj) or ""]
    tbl = _params_table(obj.__init__ if inspect.isclass(obj) else obj)
    if tbl: parts.append(tbl)
    return "\n\n".join(p for p in parts if p)

def api_notebook():
    "A notebook holding the API reference of every public symbol the package exports, module by module."
    from qlora_course._modidx import d
    homes = {}   # module name -> the notebook it is exported from
    for p in course_notebooks()[1:]:
        for c in nbformat.read(p, as_version=4).cells:
            m = re.match(r"#\|\s*default_exp\s+(\S+)", c.source) if c.cell_type == "code" else None
            if m: homes[m[1]] = p
    cells = [nbformat.v4.new_markdown_cell("# API reference\n\n> Every function and class the notebooks export into "
             "`qlora_course`, with its signature, docstring and documented parameters. Each module's notebook shows it in use.")]
    for mod, syms in d["syms"].items():
        m = importlib.import_module(mod)
        nb = homes.get(mod.split(".", 1)[1])
        src = f" (from [{nb.name}]({page_name(nb)}))" if nb else ""
        entries = []
        for full in syms:
            name = full[len(mod) + 1:]
            if any(part.startswith("_") for part in name.split(".")): continue
            obj = m
            for part in name.split("."): obj = getattr(obj, part, None)
            if obj is None or not callable(obj): continue
            entries.append(api_entry(name, obj))
        if entries: cells.append(nbformat.v4.new_markdown_cell(f"## `{mod}`{src}\n\n" + "\n\n".join(entries)))
    return nbformat.v4.new_notebook(cells=cells, metadata={"title": "API reference"})

def nav_html(pages:list, here:int) -> tuple:
    "The top bar linking every page and the previous/next links at the bottom of page `here`."
    bar = "".join(f'<a href="{f}"{" class=here" if i == here else ""}>{html.escape(t)}</a>' for i, (f, t, _) in enumerate(pages))
    prev = f'<a href="{pages[here-1][0]}">&larr; {html.escape(pages[here-1][1])}</a>' if here else "<span></span>"
    nxt = f'<a href="{pages[here+1][0]}">{html.escape(pages[here+1][1])} &rarr;</a>' if here + 1 < len(pages) else "<span></span>"
    return f'<nav class="course">{bar}</nav>', f'<nav class="pager">{prev}{nxt}</nav>'

def short_title(nb_path, title:str) -> str:
    "A short label for the navigation bar."
    stem = Path(nb_path).stem
    return "Home" if stem == "index" else stem.split("_", 1)[0] + " " + title.split(":")[0].replace("`", "").strip()

def build(out=ROOT/"_docs", verbose:bool=True) -> list:
    "Write the site into `out`; returns the pages written."
    t0, out = time.time(), Path(out)
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    if (NBS/"images").is_dir(): shutil.copytree(NBS/"images", out/"images")
    import jupyter_server_mathjax
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent/"static", out/"mathjax")
    nbs = []
    for p in course_notebooks():
        nb = prepare(nbformat.read(p, as_version=4))
        nb.metadata["title"] = title_of(nb, p.stem)
        nbs.append((p, nb))
    api = api_notebook()
    pages = [(page_name(p), short_title(p, nb.metadata["title"]), nb) for p, nb in nbs] + [("api.html", "API reference", api)]
    exp = HTMLExporter(template_name="course", extra_template_basedirs=[str(TEMPLATES)], mathjax_url=MATHJAX)
    for i, (fname, _, nb) in enumerate(pages):
        bar, pager = nav_html(pages, i)
        body, _ = exp.from_notebook_node(nb, resources={"course_nav": bar, "course_pager": pager})
        (out/fname).write_text(body, encoding="utf-8")
    if verbose: print(f"docs: {len(pages)} pages in {out} ({time.time()-t0:.0f} s); open {out/'index.html'}")
    return [out/f for f, _, _ in pages]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT/"_docs"), help="folder to write the site into (replaced)")
    build(ap.parse_args().out)
