# netmark: `make demo` and `make test` work on a fresh machine.
# They create .venv, install torch 2.13.0 (CPU wheel) *first* so that the `torch>=2.2`
# requirement is already satisfied and pip never pulls a CUDA build, then the project.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.netmark-installed
TSTAMP := $(VENV)/.netmark-test-installed
TORCH  := torch==2.13.0
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: venv data test demo lint reproduce clean

# the package and its runtime dependencies: all `make demo` needs (no ray, no pytest)
# (--no-compile: no .pyc for every file of torch and ray at install time, ~20 s of a clean install; Python
# compiles the modules it imports on first use)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile $(TORCH)
	$(PY) -m pip install -q --no-compile -e .
	touch $(STAMP)

# the test extra on top: pytest, ruff, mypy, import-linter, and ray (the Ray executor's test runs on a local Ray instance)
$(TSTAMP): $(STAMP)
	$(PY) -m pip install -q --no-compile -e '.[test]'
	touch $(TSTAMP)

venv: $(STAMP)

# Fashion-MNIST from Debian when apt is there and the data is absent; skipped quietly otherwise.
data:
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1 \
	  && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
	   || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
	  || echo "note: dataset-fashion-mnist not installed; tests that need it are skipped"; \
	fi

test: $(TSTAMP) data
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m mypy src/netmark
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -n 2 --dist loadfile

demo: venv data
	$(VENV)/bin/netmark demo

lint: $(TSTAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests

# the committed reports (hours on 2 CPU cores; trained runs are cached in .cache/, so a rerun resumes)
reproduce: venv data
	$(VENV)/bin/netmark reproduce uchida --jobs 2 --cache-dir .cache/uchida --force
	$(VENV)/bin/netmark reproduce wang --jobs 2 --cache-dir .cache/wang --force
	$(VENV)/bin/netmark reproduce tartaglione --jobs 2 --cache-dir .cache/tartaglione --force
	$(VENV)/bin/netmark reproduce chen-wu --jobs 2 --cache-dir .cache/chen-wu --force

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
