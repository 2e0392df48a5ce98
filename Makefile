# `make run`: the whole workflow on the default config (the built-in demo on a CPU).
# `make test`: the test suite. Both create .venv from the pinned requirements when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ONNX_STAMP := $(VENV)/.onnx
CORES ?= all
HVD_VENV := .venv-horovod
HVD_STAMP := $(HVD_VENV)/.installed
HOROVOD := horovod==0.28.1
BENCH := .bench

.PHONY: run test test-fast clean-results horovod-env bench-env onnx-env

$(STAMP): envs/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r envs/requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	@echo "Summary: $$($(BIN)/python -c "import json, yaml; c = yaml.safe_load(open('config.yaml')); r = c['results'] + '/' + c['task']; \
		b = json.load(open(r + '/best_configuration.json'))['best']; print(f\"{r}/{b['configurations'][0]}/evaluation/summary.json (chosen: {b['name']})\")")"

# The suite also trains with Horovod and compares with nnU-Net v2's own code, each in its own
# environment (built once, minutes), and tests the ONNX runtime (the optional extra, installed
# into .venv: small).
test: $(STAMP) $(HVD_STAMP) $(ONNX_STAMP) $(BENCH)/nnunet-venv/.installed
	$(BIN)/python -m pytest

# Unit tests only (no end-to-end Snakemake runs, no Horovod or nnU-Net environment).
test-fast: $(STAMP) $(ONNX_STAMP)
	$(BIN)/python -m pytest -m "not workflow and not horovod and not nnunet"

# `make onnx-env`: the optional ONNX extra (onnxruntime, onnx, tf2onnx; envs/onnx.txt) into .venv,
# for the ONNX export and runtime: about 33 MB to download, 105 MB installed. Installed with
# envs/requirements.txt as constraints, so that no pin of the main environment moves.
onnx-env: $(ONNX_STAMP)

$(ONNX_STAMP): $(STAMP) envs/onnx.txt
	$(BIN)/python -m pip install --quiet -r envs/onnx.txt -c envs/requirements.txt
	touch $@

# `make horovod-env`: .venv-horovod, for train.distribution: horovod. Horovod 0.28.1 builds only
# against TensorFlow <= 2.15, so it has an environment of its own (envs/horovod.txt, a complete lock
# installed without dependency resolution: see there), and is compiled here with TensorFlow and
# Gloo, without MPI. The build takes minutes.

horovod-env: $(HVD_STAMP)

$(HVD_STAMP): envs/horovod.txt pyproject.toml
	test -x $(HVD_VENV)/bin/python || $(PYTHON) -m venv $(HVD_VENV)
	$(HVD_VENV)/bin/python -m pip install --quiet --no-deps -r envs/horovod.txt
	HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 \
		HOROVOD_WITHOUT_MXNET=1 $(HVD_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation $(HOROVOD)
	$(HVD_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(HVD_VENV)/bin/python -c "import horovod.tensorflow, keras; print('horovod', horovod.__version__, 'keras', keras.__version__)"
	touch $(HVD_STAMP)

# `make bench-env`: the benchmarks' reference environments, each a complete pin list in envs/ (a
# measuring stick, not a dependency): $(BENCH)/nnunet-venv, nnU-Net v2 with the CPU build of torch
# (about 2 GB), and $(BENCH)/jax-venv, jax[cpu] and Keras, then this package editable (about
# 300 MB). The benchmark_* rules build the one they need through the stamp targets below.

bench-env: $(BENCH)/nnunet-venv/.installed $(BENCH)/jax-venv/.installed

$(BENCH)/nnunet-venv/.installed: envs/nnunet-bench.txt
	test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet -r envs/nnunet-bench.txt
	touch $@

$(BENCH)/jax-venv/.installed: envs/jax-bench.txt pyproject.toml
	test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet -r envs/jax-bench.txt
	$(@D)/bin/python -m pip install --quiet --no-deps -e .
	touch $@
