# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean-demo

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) recipes/demo/run_demo.py

test: $(STAMP)
	$(PY) -m pytest tests sssl_brain -q

lint: $(STAMP)
	$(PY) -m ruff check sssl_brain recipes tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_loading.py
	$(PY) benchmarks/bench_epoch.py
	$(PY) benchmarks/bench_features.py
	$(PY) benchmarks/bench_inference.py
