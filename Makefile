# `make demo` and `make test` work on a fresh machine with Python and a C compiler.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean gpu-check

$(STAMP): pyproject.toml setup.py $(wildcard src/gumbelkit/kernels/csrc/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# Pinned: an unpinned torch would resolve to a multi-gigabyte CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[experiments,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m gumbelkit compare

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# On a machine with a CUDA GPU: the GPU tests, the ahead-of-time compile and the
# GPU timing table, outputs in $(OUT) (scripts/gpu_check.sh).
OUT ?= runs/gpu-check
gpu-check: $(STAMP)
	PYTHON=$(PY) scripts/gpu_check.sh $(OUT)

clean:
	rm -rf $(VENV) build src/*.egg-info
