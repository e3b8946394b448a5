# segbench: `make bench` runs the default grid and writes the report; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GPU_STAMP := $(VENV)/.installed-gpu
ARGS ?=
REPORT_ARGS ?=

.PHONY: setup bench claims report test test-all microbench gpu-check clean

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
	$(PY) -m bench sweep=default_profile $(ARGS) || status=1; \
	$(PY) -m bench sweep=adversarial $(ARGS) || status=1; \
	$(PY) -m bench sweep=resolutions $(ARGS) || status=1; \
	$(PY) -m bench sweep=backends $(ARGS) || status=1; \
	$(PY) -m bench.report $(REPORT_ARGS) || status=1; \
	exit $$status

# The rows for the review's exact claims (README, "The review's claims"), then the report.
claims: setup
	status=0; \
	$(PY) -m bench sweep=review_claims $(ARGS) || status=1; \
	$(PY) -m bench sweep=fcdensenet_upsampling $(ARGS) || status=1; \
	$(PY) -m bench.report $(REPORT_ARGS) || status=1; \
	exit $$status

# Budgets for the report's picks: make report REPORT_ARGS="report.latency_budget_ms=50"
report: setup
	$(PY) -m bench.report $(REPORT_ARGS)

test: setup
	$(PY) -m pytest -q -n auto --dist worksteal --benchmark-disable -m "not slow"

test-all: setup  # includes the slow 360x480 model checks that faster tests already cover
	$(PY) -m pytest -q --benchmark-disable

microbench: setup
	$(PY) -m pytest -q tests/test_microbench.py --benchmark-only --benchmark-group-by=group

# The GPU validation kit (benchmarks/gpu_check.py): every CUDA path on one GPU, or a dry run on the
# CPU with every CUDA check skipped. Where nvidia-smi is present it adds the gpu extra (NVML).
# Output: $(OUT) when given, else results/gpu-check/<timestamp>; exits 1 naming each failed check.
gpu-check: setup
	if command -v nvidia-smi >/dev/null 2>&1; then $(MAKE) --no-print-directory $(GPU_STAMP); fi
	$(PY) -m benchmarks.gpu_check $(if $(OUT),--out '$(OUT)')

$(GPU_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --editable '.[dev,gpu]'
	touch $(GPU_STAMP)

clean:
	rm -rf results .pytest_cache .benchmarks
