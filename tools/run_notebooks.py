"""Execute the course's notebooks and save their outputs (`make notebooks`).

    python tools/run_notebooks.py                    # every notebook, short budgets (as `make test` runs them)
    python tools/run_notebooks.py --full nbs/03_train.ipynb   # full budget, `slow` cells included

Each notebook runs through `nbdev-test --save`, so the saved outputs are exactly those of the test run
(outputs are written back only when the whole notebook succeeds). Then the note at the top of the
notebook is updated with the run that produced them (budget, machine, date, wall time), machine paths
in the outputs are shortened, widget state and widget views are dropped, and `nbdev-clean` strips volatile metadata.
CI never runs this: it runs the notebooks without `--save`.
"""
import argparse, datetime, os, platform, re, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MARK = "**Saved outputs**"
QUIET = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}

def machine() -> str:
    "One line naming the machine: CPU model, cores, AVX-512 bf16 or not, GPU."
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), platform.processor() or "CPU")
    bf16 = "with AVX-512 bf16" if "avx512_bf16" in info else "without AVX-512 bf16"
    try:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError: gpu = "no GPU"
    return f"{os.cpu_count()}-core {cpu} CPU {bf16}, {gpu}"

def fmt_time(s:float) -> str: return f"{int(s // 60)} min {int(s % 60)} s" if s >= 60 else f"{s:.0f} s"

def note(full:bool, secs:float) -> str:
    budget = ("the **full budget** (`QLORA_COURSE_FULL=1`, `slow` cells run)" if full else
              "the **short budget** that `make test` uses (`slow` and `cuda` cells not run; `QLORA_COURSE_FULL=1` gives the full one)")
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return (f"> {MARK}: this notebook as saved ran at {budget}, on a {machine()}, on {day}, in {fmt_time(secs)} "
            "(`make notebooks`). Numbers from runs on other machines or budgets are labelled as such in the text.")

_TMP = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s'\"/)]+")
def shorten_paths(t:str) -> str:
    "Machine-specific paths in output text made readable anywhere: repo-relative, `~` for home, `<tmp>` for temp dirs."
    t = t.replace(str(ROOT/"nbs") + "/", "").replace(str(ROOT) + "/", "").replace(str(ROOT), ".")
    t = t.replace(str(Path.home()), "~")
    t = re.sub(r"\S*/site-packages/", "", t)
    return _TMP.sub("<tmp>", t)

def tidy(p:Path, full:bool, secs:float):
    "Update the top note, shorten paths in outputs and drop widget state and views in saved notebook `p`."
    nb = nbformat.read(p, as_version=4)
    for c in nb.cells:
        if c.get("outputs"):   # a widget's view is dead text in a saved notebook: keep the cell, drop that output
            c["outputs"] = [o for o in c["outputs"] if not any("jupyter.widget" in k for k in o.get("data", {}))]
        for o in c.get("outputs", []):
            if "text" in o: o["text"] = shorten_paths(o["text"])
            for k in list(o.get("data", {})):
                if k.startswith("text/"): o["data"][k] = shorten_paths(o["data"][k])
            if o.get("output_type") == "stream" and "\r" in o.get("text", ""):   # keep a progress bar's last state only
                o["text"] = "\n".join(l.rsplit("\r", 1)[-1] for l in o["text"].split("\n"))
    nb.metadata.pop("widgets", None)
    tops = [c for c in nb.cells[:6] if c.cell_type == "markdown" and MARK in c.source]
    if tops: tops[0].source = note(full, secs)
    else:
        title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), -1)
        nb.cells.insert(title + 1, nbformat.v4.new_markdown_cell(note(full, secs)))
    nbformat.write(nb, p)
    subprocess.run([str(BIN/"nbdev-clean"), "--fname", str(p)], check=True, cwd=ROOT)

def run(p:Path, full:bool) -> tuple[Path, bool, float, str]:
    env = {**os.environ, **QUIET, "QLORA_COURSE_FULL": "1" if full else "0"}
    cmd = [str(BIN/"nbdev-test"), str(p), "--save", *(["--flags", "slow"] if full else [])]
    t = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    secs = time.time() - t
    ok = r.returncode == 0
    if ok: tidy(p, full, secs)
    return p, ok, secs, (r.stdout + r.stderr)[-3000:]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks to run (default: every notebook in nbs/)")
    ap.add_argument("--full", action="store_true", help="full budgets and `slow` cells (QLORA_COURSE_FULL=1)")
    ap.add_argument("--workers", type=int, default=2, help="notebooks run side by side")
    a = ap.parse_args(argv)
    nbs = [Path(n).resolve() for n in a.notebooks] or sorted((ROOT/"nbs").glob("*.ipynb"))
    nbs = [p for p in nbs if any(c.cell_type == "code" for c in nbformat.read(p, as_version=4).cells)]
    failed = []
    with ThreadPoolExecutor(a.workers) as ex:
        for p, ok, secs, log in ex.map(lambda p: run(p, a.full), nbs):
            print(f"{'saved ' if ok else 'FAILED'} {p.relative_to(ROOT)}  {fmt_time(secs)}", flush=True)
            if not ok: failed.append(p); print(log, file=sys.stderr)
    if failed: sys.exit(f"run_notebooks: {len(failed)} notebook(s) failed; their saved outputs were left as they were")

if __name__ == "__main__": main()
