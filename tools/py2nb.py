"""Authoring aid: turn a percent-format script (`# %%` code cells, `# %% [markdown]` prose cells)
into a clean notebook, or a notebook back into that script.

    python tools/py2nb.py draft.py nbs/03_train.ipynb     # script -> notebook
    python tools/py2nb.py nbs/03_train.ipynb draft.py     # notebook -> script

The notebook is the source of truth; the script form is only a convenient way to write or
review many cells at once. Markdown cells are written as `# ` comment lines.
"""
import json, re, sys
from pathlib import Path

def script_to_cells(text):
    "Split percent-format `text` into (cell_type, source) pairs."
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        src = "\n".join(buf).strip("\n")
        if kind == "markdown":
            src = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in src.splitlines())
        cells.append((kind, src))
    for line in text.splitlines():
        m = re.match(r"^# %%( \[markdown\])?\s*$", line)
        if m:
            flush(); kind, buf = ("markdown" if m.group(1) else "code"), []
        else: buf.append(line)
    flush()
    return cells

def cells_to_nb(cells):
    "A minimal nbformat-4 notebook dict holding `cells`."
    def cell(k, s):
        c = {"cell_type": k, "metadata": {}, "source": s.splitlines(keepends=True)}
        if k == "code": c.update(execution_count=None, outputs=[])
        return c
    return {"cells": [cell(k, s) for k, s in cells], "metadata": {
        "kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5}

def nb_to_script(nb):
    "Percent-format text of notebook `nb`."
    out = []
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            out.append("# %% [markdown]\n" + "\n".join("# " + l if l else "#" for l in src.splitlines()))
        else: out.append("# %%\n" + src)
    return "\n\n".join(out) + "\n"

if __name__ == "__main__":
    src, dst = map(Path, sys.argv[1:3])
    if src.suffix == ".ipynb": dst.write_text(nb_to_script(json.loads(src.read_text())))
    else: dst.write_text(json.dumps(cells_to_nb(script_to_cells(src.read_text())), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {dst}")
