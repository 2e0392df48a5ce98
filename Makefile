# `make run`: the whole workflow on the default config (the built-in demo on a CPU).
# `make test`: the test suite. Both create .venv from the pinned requirements when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: run test test-fast clean-results

$(STAMP): envs/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r envs/requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	@echo "Summary: $$($(BIN)/python -c "import yaml; c = yaml.safe_load(open('config.yaml')); print(c['results'] + '/' + c['task'] + '/evaluation/summary.json')")"

test: $(STAMP)
	$(BIN)/python -m pytest

# Unit tests only (no end-to-end Snakemake runs).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not workflow"
