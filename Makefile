# autokfp developer commands. `make demo` and `make test` install everything they need
# into .venv first (Python 3.10-3.12 and Java 17 for H2O; Java is installed with apt-get
# when missing and this runs as root).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.autokfp-installed
# each test has a time limit (pyproject.toml: pytest-timeout, 600 s; 1,200 s for tests marked
# slow; tests/timeouts.py kills what a timed-out test started): PYTEST_ARGS=--timeout=0 lifts it
PYTEST_ARGS ?=
# make test runs the suite on this many processes (pytest-xdist); 0 runs it in one process
PYTEST_WORKERS ?= 2

.PHONY: help install demo test test-fast lint layers lock images test-cluster compile clean distclean

help:
	@echo "make demo      create .venv, install, run the training pipeline locally on example data"
	@echo "make test      create .venv, install, run the test suite"
	@echo "make test-fast the suite without the slow end-to-end runs"
	@echo "make test-cluster  build the images, run the pipelines task by task in them (Docker)"
	@echo "make lint      ruff, the layer contracts (lint-imports) and mypy on autokfp/"
	@echo "make compile   write every pipeline as KFP YAML into compiled/"
	@echo "make images    build the runtime, training (GPU) and serving images (Docker)"
	@echo "make lock      re-resolve constraints.txt after a dependency change"
	@echo "make clean     remove local state (.autokfp) and compiled YAML"

# constraints.txt pins every version (the images install with the same file); `make lock`
# re-resolves it after a change to pyproject.toml's dependencies.
$(STAMP): pyproject.toml constraints.txt
	@bash scripts/ensure_java.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade -c constraints.txt pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/autokfp demo

# the layer contracts (pyproject.toml [tool.importlinter]) take a second: every test run
# checks them, so CI does too
layers: $(STAMP)
	$(BIN)/lint-imports --no-cache

test: layers
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# the whole loop in containers against real services (needs Docker; see scripts/test_cluster.sh)
test-cluster: $(STAMP)
	PYTHON=$(BIN)/python PYTEST_ARGS="$(PYTEST_ARGS)" bash scripts/test_cluster.sh

test-fast: layers
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

lint: layers
	$(BIN)/ruff check autokfp components pipelines tests scripts
	$(BIN)/mypy

lock: $(STAMP)
	$(BIN)/python -m pip install --dry-run --ignore-installed --quiet --report .lock-report.json '.[dev,gpu]'
	$(BIN)/python scripts/lock_constraints.py .lock-report.json > constraints.txt
	rm -f .lock-report.json

images: $(STAMP)
	PYTHON=$(BIN)/python scripts/build_images.sh

compile: $(STAMP)
	$(BIN)/autokfp compile --out compiled

clean:
	rm -rf .autokfp compiled

distclean: clean
	rm -rf $(VENV)
