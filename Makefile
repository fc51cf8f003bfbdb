# Two commands on a fresh machine:  make ask Q="where are the new battlegroups?"   and   make test
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
Q ?= where are the new battlegroups?

.PHONY: install install-test ask chat test test-fast lint bench docs docs-serve wheel wheelhouse image clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, as the CPU wheel: a bare `torch` requirement would pull gigabytes of CUDA packages.
# The discord extra too: the README's commands include `citebot discord`.
$(VENV)/.installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[discord]'
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

# While working: without the tests marked slow (the real model over seeds/, servers of their own).
test-fast: install-test
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

lint: install-test
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/latency.py

# The documentation site (mkdocs.yml, docs/) into site/; docs-serve shows it at http://127.0.0.1:8000.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --quiet

docs-serve: install-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# dist/citebot-*.whl, with config/default.toml and seeds/ inside (setup.py). build/ goes first: setuptools
# would otherwise keep modules deleted since the last build.
wheel: install
	rm -rf build
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .

# dist/wheelhouse/: citebot's wheel and every wheel it needs, for a container build without network.
wheelhouse: install
	rm -rf build dist/wheelhouse
	$(BIN)/pip wheel --quiet --wheel-dir dist/wheelhouse torch==2.13.0 pip '.[discord,postgres]'

image: wheelhouse
	podman build -f deploy/Containerfile -t citebot dist/

clean:
	rm -rf $(VENV) .citebot build dist
