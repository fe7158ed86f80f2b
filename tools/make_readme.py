"""Write README.md from nbs/index.ipynb (the course home), without Quarto.

Markdown cells are copied with their relative links rewritten for the repository root (the notebook
lives in nbs/, so `00_models.ipynb` becomes `nbs/00_models.ipynb` and `../data/x` becomes `data/x`);
code cells become ```python blocks (cells starting with `#| hide` are left out); outputs are not copied. tests/test_readme.py checks that README.md is
exactly what this script writes, so the two never disagree.
"""
import json, posixpath, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, then run `make readme`. -->\n\n"

def _from_root(m) -> str:
    "A markdown link target relative to nbs/, rewritten relative to the repository root."
    t = m.group(2)
    if re.match(r"[a-z]+:|#|/", t): return m.group(0)
    return f"{m.group(1)}({posixpath.normpath(posixpath.join('nbs', t))})"

def render(nb_path=ROOT/"nbs"/"index.ipynb") -> str:
    "The README text for notebook `nb_path`."
    parts = []
    for c in json.loads(Path(nb_path).read_text(encoding="utf-8"))["cells"]:
        src = "".join(c["source"]).strip("\n")
        if not src or src.lstrip().startswith("#| hide"): continue
        if c["cell_type"] == "markdown": parts.append(re.sub(r"(\]|\]\s)\(([^)\s]+)\)", _from_root, src))
        elif c["cell_type"] == "code":
            lines = [l for l in src.splitlines() if not l.startswith("#|")]
            parts.append("```python\n" + "\n".join(lines) + "\n```")
    return HEADER + "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    out = ROOT/"README.md"
    out.write_text(render(), encoding="utf-8")
    print(f"wrote {out}")
