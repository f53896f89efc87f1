# The README's commands. Each one creates .venv/ from the committed constraints on first use.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: install demo test lint unit integration bench gpu-check fuzz clean lock

# One pip call resolves every package together (installed one after another, the OpenTelemetry pins of
# mlflow and the inference server clash). Reinstalled whenever the constraints or pyproject change.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: a local end-to-end run on built-in synthetic data.
demo: $(STAMP)
	$(VENV)/bin/azure-dl demo --out $(DEMO_OUT)

## The test suite: lint, types, then every test that runs without Azure.
test: $(STAMP) lint
	$(PYTHON) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PYTHON) -m pytest tests/unit

integration: $(STAMP)
	$(PYTHON) -m pytest tests/integration

bench: $(STAMP)
	$(PYTHON) -m benchmarks.run_all

## The one prepared GPU check (benchmarks/gpu_check): no venv stamp, since the GPU machine has no network and its
## own PyTorch; it runs with .venv's python when there is one, else python3 (override: GPU_CHECK_PYTHON=...).
## Results go to $OUT when it is set (the folder the device tool brings back), else to runs/gpu-check.
GPU_CHECK_PYTHON ?= $(or $(wildcard $(PYTHON)),python3)
gpu-check:
	$(GPU_CHECK_PYTHON) -m benchmarks.gpu_check --out $${OUT:-runs/gpu-check}

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache runs mlruns

## Re-resolve every dependency in one pip call and rewrite the constraints (needs the package registry).
lock:
	rm -rf /tmp/azure-dl-lock && python3 -m venv /tmp/azure-dl-lock
	/tmp/azure-dl-lock/bin/python -m pip install --quiet "$$(pwd)[dev]"
	( echo "# Every version, resolved together in one pip call (see Makefile). Regenerate: make lock"; \
	  /tmp/azure-dl-lock/bin/python -m pip freeze --exclude-editable | grep -v -E '^(azure-dl|pip|setuptools|wheel)[= ]' \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' ) > requirements/constraints.txt

## Property-based fuzzing: the hypothesis tests with 10,000 examples per property (the suite runs 200).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PYTHON) -m pytest -q tests/unit/test_fuzz_*.py
