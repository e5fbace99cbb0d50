# Quick start: `make demo` runs the pipeline on generated demo data; `make test` runs the tests.
# Each target creates the virtual environment it needs (.venv) from pyproject.toml + constraints.txt.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint test-fast bench-rerun bench-speed bench-quality browser clean

# infra/install.sh is also what the worker images run (infra/Dockerfile): one install, no drift.
$(STAMP): pyproject.toml constraints.txt infra/install.sh
	PYTHON=$(PYTHON) infra/install.sh $(VENV) test,s3,infra --editable
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dfp demo --out demo-output

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The report test renders HTML in headless Chromium (Debian's package). Installed when we can (root + apt);
# elsewhere that one test skips, unless DFP_REQUIRE_CHROMIUM is set (CI sets it).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the report rendering test will skip"

# ruff's rule set and the import-linter contracts (flows -> tasks -> features; no Prefect/Dask in features/;
# the features/ sub-packages layered) live in pyproject.toml. .ci/run runs this before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench-rerun: $(STAMP)
	$(BIN)/python bench/rerun.py

bench-speed: $(STAMP)
	$(BIN)/python bench/extract_speed.py

bench-quality: $(STAMP)
	$(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV) demo-output
