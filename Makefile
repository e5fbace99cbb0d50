# Quick start: `make demo` runs the pipeline on generated demo data; `make test` runs the tests.
# Each target creates the virtual environment it needs (.venv) from pyproject.toml + constraints.txt.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench-rerun clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,s3]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dfp demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench-rerun: $(STAMP)
	$(BIN)/python bench/rerun.py

clean:
	rm -rf $(VENV) demo-output
