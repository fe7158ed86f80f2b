# qlora-course: two commands from a fresh clone.
#   make test    set up .venv (once), then run every check CI runs
#   make course  set up .venv (once), then run the whole course pipeline on the embedded model
#   make test-latest  the same checks in .venv-latest, with the newest versions pyproject.toml allows
#   make notebooks  execute the notebooks and save their outputs (FULL=1: full budgets; NB=nbs/03_train.ipynb: one)
#   make lock    write constraints.txt from .venv (after a green `make test`)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qlora-course-installed
# make test NBDEV_WORKERS=1 to run the notebooks one at a time
NBDEV_WORKERS ?= 2
COURSE_CONFIG ?= course.yaml
# LATEST=1: install the newest allowed versions instead of constraints.txt's
LATEST ?= 0

.PHONY: test test-latest notebooks lock course setup sync-check nbtest pytest readme clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt tools/setup.sh
	QLORA_COURSE_LATEST=$(LATEST) bash tools/setup.sh $(VENV)
	@touch $@

sync-check: setup
	bash tools/check_sync.sh $(VENV)

nbtest: setup
	$(VENV)/bin/nbdev-test --n-workers $(NBDEV_WORKERS) --timing

pytest: setup
	$(VENV)/bin/pytest -q tests

test: setup
	bash tools/check_sync.sh $(VENV)
	$(VENV)/bin/nbdev-test --n-workers $(NBDEV_WORKERS) --timing
	$(VENV)/bin/pytest -q tests

course: setup
	QLORA_COURSE_FULL=1 $(VENV)/bin/qlora-course pipeline --config $(COURSE_CONFIG)

readme: setup
	$(PY) tools/make_readme.py

test-latest:
	$(MAKE) test VENV=.venv-latest LATEST=1

lock: setup
	bash tools/lock.sh $(VENV) > constraints.txt

FULL ?= 0
NB ?=
notebooks: setup
	$(PY) tools/run_notebooks.py $(if $(filter 1,$(FULL)),--full) $(NB)

# --- course site (issue 20): the static site in _docs/ from the notebooks as saved (tools/build_docs.py, nbconvert) ---
.PHONY: docs
docs: setup
	$(PY) tools/build_docs.py --out _docs
# --- end course site ---
