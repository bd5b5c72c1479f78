# The two commands of the README's first screen: `make demo` and `make test`;
# `make cluster-demo` runs the demo as a cluster (PostgreSQL, three instances, HAProxy).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo cluster-demo test check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/loginbridge demo --config conf/bridge.yaml

cluster-demo: $(VENV)/.installed  # needs PostgreSQL's server binaries and haproxy (apt-get install postgresql haproxy)
	$(BIN)/loginbridge cluster-demo --config conf/bridge.yaml

# Two workers for everything that does not measure time, then the tests that do, alone (tests/conftest.py):
# about half the wall time of one process on a 2-core machine.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 -m "not serial"
	$(BIN)/python -m pytest -q -p no:cacheprovider -m serial

check: $(VENV)/.installed  # ruff, mypy --strict, the import contracts of pyproject.toml
	$(BIN)/ruff check bridge connectors printers tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed
	$(BIN)/python bench/login.py

clean:
	rm -rf $(VENV) state .pytest_cache .mypy_cache .ruff_cache
