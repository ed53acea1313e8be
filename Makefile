# Two commands on a fresh machine: `make repro` and `make test`.
# The virtual environment is rebuilt whenever requirements.lock or pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Stage commands call `python`: put the project's environment first on PATH for DVC's subprocesses.
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
CODE   := nn pipeline stages nn_mnist sweep tests bench examples tools tutorial docs/tutorials \
	docs/conf.py docs/_ext

.PHONY: venv repro verify serve sweep docs test test-fast test-keras lint format bench bench-kernel bench-peers bench-time-to-accuracy bench-training lock clean-venv

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found: $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

repro: $(STAMP)
	$(BIN)/dvc repro

# Rerun the whole pipeline from nothing in a temporary clone of HEAD and compare every output with
# the committed dvc.lock (and reports/environment.json): one line per difference.
verify: $(STAMP)
	$(BIN)/python tools/verify.py

# The draw-a-digit web app over models/ on http://127.0.0.1:8000/ (docs/web-app.md).
#   make serve ARGS="--port 8080 --format onnx"
serve: $(STAMP)
	$(BIN)/nn-mnist serve $(ARGS)

# A sweep of DVC experiments on Dask, each pushed to the git remote `origin` (docs/sweeps.md).
#   make sweep SWEEP=sweeps/lr.yaml ARGS="--scheduler tcp://HOST:8786"
SWEEP ?= sweeps/lr.yaml
sweep: $(STAMP)
	$(BIN)/python -m sweep $(SWEEP) $(ARGS)

# The documentation site (docs/), every lesson run on the way, warnings as errors: offline.
#   open docs/_build/html/index.html
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The whole suite, on TEST_PROCESSES processes (pytest-xdist; 0: in this one process).
TEST_PROCESSES ?= 2
test: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/python -m pytest -n $(TEST_PROCESSES)

# The unit tests, for the edit loop: no pipeline, sweep, subprocess-training or CLI runs.
test-fast: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/python -m pytest -q -m "not slow" --ignore=tests/test_pipeline.py \
		--ignore=tests/test_sweep.py --ignore=tests/test_sweep_cluster.py \
		--ignore=tests/test_determinism.py \
		--ignore=tests/test_keras_loader.py --ignore=tests/test_models_out.py

lint: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

format: $(STAMP)
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)

bench: $(STAMP)
	$(BIN)/python -m bench.bench_nn --json bench/results/nn.json

# The pinned numerics against OpenBLAS's and NumPy's own picks: OPENBLAS_CORETYPE unset here only.
bench-kernel: $(STAMP)
	env -u OPENBLAS_CORETYPE $(BIN)/python -m bench.bench_kernel --json bench/results/kernel.json

# The peers benchmark needs PyTorch and TensorFlow: a separate environment keeps them out of .venv.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(BENCH_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements.lock
	# The CPU build of PyTorch (a plain `torch` can resolve to a CUDA build of several GB).
	$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.13.0 || \
		$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.13.0 \
			--index-url https://download.pytorch.org/whl/cpu
	$(BENCH_VENV)/bin/python -m pip install --quiet -e ".[torch,tensorflow]"
	touch $@

# The Keras loader (fetch.source: keras) for real: TensorFlow from the bench environment. Set
# DATA_MIRROR to a folder with fashion_mnist/ holding the real Fashion-MNIST .gz files.
test-keras: $(BENCH_VENV)/.installed
	MNIST_MIRROR="$${MNIST_MIRROR:-$(abspath ..)/shared/data/mnist}" \
		$(BENCH_VENV)/bin/python -m pytest tests/test_keras_loader.py -v -rs

bench-peers: $(BENCH_VENV)/.installed
	env -u OPENBLAS_CORETYPE $(BENCH_VENV)/bin/python -m bench.bench_peers --rounds 2 --prune

# Wall time to 99% test accuracy with the pipeline's conv recipe in nn, PyTorch and Keras.
bench-time-to-accuracy: $(BENCH_VENV)/.installed
	env -u OPENBLAS_CORETYPE $(BENCH_VENV)/bin/python -m bench.bench_time_to_accuracy \
		--json bench/results/time_to_accuracy.json

# The training stages with params.yaml's shards against one shard, and their share of the matmul
# limit (needs data/processed: `make repro` first).
bench-training: $(STAMP)
	$(BIN)/python -m bench.bench_training --json bench/results/training.json

# Regenerate the lock (needs uv: `pip install uv`).
lock:
	uv pip compile pyproject.toml --extra pipeline --extra models --extra serve --extra sweep --extra docs --extra dev \
		--universal --python-version 3.11 \
		--generate-hashes -o requirements.lock

clean-venv:
	rm -rf $(VENV)
