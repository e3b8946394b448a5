# segbench: `make bench` runs the default grid and writes the report; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup bench report test test-all microbench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

# Every grid runs even if a job fails; the report is written either way; the exit code says
# whether every job succeeded.
bench: setup
	status=0; \
	$(PY) -m bench sweep=default $(ARGS) || status=1; \
	$(PY) -m bench sweep=adversarial $(ARGS) || status=1; \
	$(PY) -m bench sweep=resolutions $(ARGS) || status=1; \
	$(PY) -m bench sweep=backends $(ARGS) || status=1; \
	$(PY) -m bench.report || status=1; \
	exit $$status

report: setup
	$(PY) -m bench.report

test: setup
	$(PY) -m pytest -q --benchmark-disable -m "not slow"

test-all: setup  # includes the slow 360x480 model checks that faster tests already cover
	$(PY) -m pytest -q --benchmark-disable

microbench: setup
	$(PY) -m pytest -q tests/test_microbench.py --benchmark-only --benchmark-group-by=group

clean:
	rm -rf results .pytest_cache .benchmarks
