#!/usr/bin/env bash
# Fail if the notebooks are not clean (nbdev-clean would change them) or the library is out of sync
# with them (nbdev-export would change it). Leaves the fixed files in place for you to review.
set -euo pipefail
VENV=${1:-.venv}
snap() { find nbs qlora_course -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' \
           -print0 | sort -z | xargs -0 sha256sum; }
before=$(snap)
"$VENV/bin/nbdev-clean"
"$VENV/bin/nbdev-export"
after=$(snap)
if [ "$before" != "$after" ]; then
  echo "check_sync: nbdev-clean / nbdev-export changed these files:"
  diff <(echo "$before") <(echo "$after") | grep '^>' | awk '{print "  " $3}'
  echo "check_sync: run 'nbdev-clean && nbdev-export' and commit the result."
  exit 1
fi
"$VENV/bin/ruff" check --quiet qlora_course || { echo "check_sync: ruff found the problems above in the exported package: fix them in the notebooks"; exit 1; }
echo "check_sync: notebooks clean, library in sync, ruff clean"
