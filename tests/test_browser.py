"""The course in a real browser: the built site, and the chat widget in JupyterLab.

Playwright (PyPI `playwright`, in the dev extra) drives Debian's Chromium (`/usr/bin/chromium`, or
$QLORA_COURSE_CHROMIUM); Playwright's own browser download is not used. `make setup` installs both where it
can; without them this module is skipped with one line saying what to install.
Screenshots go to $QLORA_COURSE_SHOTS when set, otherwise into the test's temporary folder. To refresh the course
home's: `QLORA_COURSE_SHOTS=nbs/images QLORA_COURSE_CHAT_MODEL=smollm2-135m-instruct .venv/bin/pytest tests/test_browser.py`.
"""
import contextlib, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("QLORA_COURSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# the model the chat runs on: tiny-random checks the code path; a real one (smollm2-135m-instruct) makes a readable screenshot
CHAT_MODEL = os.environ.get("QLORA_COURSE_CHAT_MODEL", "tiny-random")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
try: from playwright.sync_api import sync_playwright
except ImportError: sync_playwright = None
if sync_playwright is None:
    pytest.skip("browser tests need Playwright: run `make setup` or `.venv/bin/python -m pip install playwright`", allow_module_level=True)
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("browser tests need Chromium: `apt-get install chromium` (Debian/Ubuntu) or set QLORA_COURSE_CHROMIUM", allow_module_level=True)
sys.path.insert(0, str(ROOT/"tools"))
import build_docs

@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The course site, built into a temporary folder as `make docs` builds it."
    return build_docs.build(tmp_path_factory.mktemp("site")/"_docs", verbose=False)[0].parent

@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = Path(os.environ.get("QLORA_COURSE_SHOTS") or tmp_path_factory.mktemp("shots"))
    d.mkdir(parents=True, exist_ok=True)
    return d

def save_png(page_or_el, path:Path, max_kb:int=150):
    "Screenshot into `path` as a palette PNG, small enough to commit."
    from PIL import Image
    raw = path.with_suffix(".raw.png")
    page_or_el.screenshot(path=str(raw))
    for colors in (128, 64, 32):
        Image.open(raw).convert("RGB").quantize(colors=colors).save(path, optimize=True)
        if path.stat().st_size < max_kb * 1024: break
    raw.unlink()
    assert path.stat().st_size < max_kb * 1024, f"{path} is {path.stat().st_size // 1024} KB"
    return path

def _offline(context, blocked:list):
    "Fail any request that leaves the machine: a page of the site must need nothing from the network."
    def handle(route):
        if route.request.url.startswith(("file:", "data:", "blob:")): return route.continue_()
        blocked.append(route.request.url); route.abort()
    context.route("**/*", handle)

def test_site_pages_links_images(site, browser, shots):
    "Every page loads without console errors, every image and internal link resolves, the home links each notebook."
    pages = sorted(site.glob("*.html"))
    expected = [build_docs.page_name(p) for p in build_docs.course_notebooks()] + ["api.html"]
    assert sorted(p.name for p in pages) == sorted(expected)
    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    blocked, problems, ids, links = [], [], {}, []
    _offline(ctx, blocked)
    for f in pages:
        page = ctx.new_page()
        page.on("console", lambda m, f=f: m.type == "error" and problems.append(f"{f.name}: console error: {m.text}"))
        page.on("pageerror", lambda e, f=f: problems.append(f"{f.name}: page error: {e}"))
        page.on("requestfailed", lambda r, f=f: problems.append(f"{f.name}: failed to load {r.url}"))
        page.goto(f.as_uri(), wait_until="load")
        page.wait_for_function("() => !window.MathJax || !MathJax.Hub || MathJax.Hub.queue.pending === 0", timeout=30_000)
        broken = page.eval_on_selector_all("img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.getAttribute('src').slice(0, 80))")
        problems += [f"{f.name}: image does not load: {s}" for s in broken]
        ids[f.name] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
        links += [(f.name, h) for h in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")]
        if f.name == "index.html": save_png(page, shots/"site_home.png")
        page.close()
    ctx.close()
    for src, href in links:
        u = urlsplit(href)
        if u.scheme or href.startswith("//"): continue             # external: not checked offline
        target = (site/unquote(u.path)).resolve() if u.path else site/src
        if not target.is_file(): problems.append(f"{src}: link to missing {href}"); continue
        # a browser matches the fragment as written, then percent-decoded (nbconvert's ids keep "%25" for "%")
        if u.fragment and target.suffix == ".html" and not {u.fragment, unquote(u.fragment)} & ids.get(target.name, set()):
            problems.append(f"{src}: link to missing anchor {href}")
    home = {h for s, h in links if s == "index.html"}
    problems += [f"index.html: no link to {e}" for e in expected if e != "index.html" and e not in home]
    assert not blocked, f"pages asked the network for {blocked[:5]}"
    assert not problems, "\n".join(problems[:30])

def chat_notebook(dest:Path) -> Path:
    """The chat section of the inference notebook, as a notebook in `dest`: its chat widget cells exactly as written,
    after one set-up cell that imports the module and loads `CHAT_MODEL` as `real` (in the notebook: the real model)."""
    import nbformat
    nb = nbformat.read(ROOT/"nbs"/"04_infer.ipynb", as_version=4)
    i = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "chat_box(" in c.source and "def chat_box" not in c.source), None)
    assert i is not None, "nbs/04_infer.ipynb has no cell that shows chat_box(...)"
    md = [c for c in nb.cells[:i] if c.cell_type == "markdown"]
    setup = nbformat.v4.new_code_cell("from fastcore.test import test_eq\nfrom qlora_course.infer import *\n"
                                      "from qlora_course.models import load_model, DEFAULT_MODEL\n"
                                      f"MODEL = {CHAT_MODEL!r}\nreal, rtok0 = load_model(MODEL)")   # the names the notebook's chat cell uses
    show = nb.cells[i + 1]   # the cell that shows the widget (`ui`)
    assert show.cell_type == "code" and show.source.lstrip().startswith("ui"), "the chat_box cell must be followed by one that shows `ui`"
    cells = [md[0], setup, md[-1], nb.cells[i], show]
    for c in cells:
        if c.cell_type == "code": c.outputs, c.execution_count = [], None
    nb.cells = cells
    nbformat.write(nb, dest/"04_infer.ipynb")
    return dest/"04_infer.ipynb"

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

@contextlib.contextmanager
def jupyterlab(tmp_path:Path):
    "A JupyterLab server on 127.0.0.1 with a random port and token, serving `tmp_path/work`; yields its base URL and token."
    work, cfg = tmp_path/"work", tmp_path/"jupyter"
    work.mkdir(); cfg.mkdir()
    news = cfg/"settings"/"@jupyterlab"/"apputils-extension"/"notification.jupyterlab-settings"
    news.parent.mkdir(parents=True); news.write_text('{"fetchNews": "false"}')   # no "Jupyter news?" toast, nothing fetched
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(cfg/"config"), JUPYTER_RUNTIME_DIR=str(cfg/"runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(cfg/"settings"), JUPYTERLAB_WORKSPACES_DIR=str(cfg/"workspaces"),
               OMP_NUM_THREADS="1")
    env.pop("QLORA_COURSE_FULL", None)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0: cmd.append("--allow-root")   # CI runs as root
    log = open(tmp_path/"lab.log", "w")
    srv = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if srv.poll() is not None: break
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2); break
            except OSError: time.sleep(0.5)
        else: raise AssertionError("JupyterLab did not start in 60 s")
        assert srv.poll() is None, f"JupyterLab exited: {(tmp_path/'lab.log').read_text()[-2000:]}"
        yield url, token, work
    finally:
        try: urllib.request.urlopen(urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST"), timeout=10)
        except OSError: pass
        try: srv.wait(timeout=20)
        except subprocess.TimeoutExpired: srv.kill(); srv.wait()
        log.close()

@pytest.fixture
def lab(tmp_path):
    with jupyterlab(tmp_path) as r: yield r

def test_chat_widget_in_jupyterlab(lab, browser, shots):
    "JupyterLab runs the inference notebook's chat widget cell on tiny-random; a typed message gets a reply in the widget."
    url, token, work = lab
    nb = chat_notebook(work)
    ctx = browser.new_context(viewport={"width": 1200, "height": 850})
    page = ctx.new_page()
    page.goto(f"{url}/lab/tree/{nb.name}?token={token}")
    page.locator(".jp-Notebook").wait_for(timeout=60_000)
    dialog = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    try: dialog.click(timeout=5_000)              # a kernel picker, where JupyterLab asks which kernel to start
    except Exception: pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    box = page.locator(".widget-text input[type='text']").last
    try: box.wait_for(timeout=180_000)
    except Exception:
        errs = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
        raise AssertionError(f"the chat widget did not appear; notebook stderr: {errs[-3:]}")
    assert not page.get_by_text("Error displaying widget").count(), "JupyterLab could not display the widget (ipywidgets/JupyterLab mismatch?)"
    box.fill("Hello, who are you?")
    box.press("Enter")
    out = page.locator(".widget-output").last
    page.wait_for_function("""() => {   // the reply to the typed message (the cell itself already sent one, to test Enter)
        const t = [...document.querySelectorAll('.widget-output')].pop().innerText, i = t.indexOf('you: Hello, who are you?');
        return i >= 0 && t.indexOf('model:', i) > i; }""", timeout=120_000)
    text = out.inner_text()
    assert "you: Hello, who are you?" in text, text
    assert box.input_value() == "", "the text box is not cleared after sending"
    box.scroll_into_view_if_needed()
    save_png(page, shots/"jupyterlab_chat.png")
    ctx.close()
