# qlora-course: two commands from a fresh clone.
#   make test    set up .venv (once), then run every check CI runs
#   make course  set up .venv (once), then run the whole course pipeline on the embedded model
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qlora-course-installed
# make test NBDEV_WORKERS=1 to run the notebooks one at a time
NBDEV_WORKERS ?= 2
COURSE_CONFIG ?= course.yaml

.PHONY: test course setup sync-check nbtest pytest readme clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml tools/setup.sh
	bash tools/setup.sh $(VENV)
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
