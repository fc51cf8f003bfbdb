# Two commands on a fresh machine:  make ask Q="where are the new battlegroups?"   and   make test
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
Q ?= where are the new battlegroups?

.PHONY: install install-test ask chat test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, as the CPU wheel: a bare `torch` requirement would pull gigabytes of CUDA packages.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

ask: install
	$(BIN)/citebot ask "$(Q)"

chat: install
	$(BIN)/citebot chat

test: install-test
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python benchmarks/latency.py

clean:
	rm -rf $(VENV) .citebot
