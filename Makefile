# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev bench clean

# `make run` installs what cobuy runs on; `make test` adds the test tools (browser driver, fuzzers…).
$(BIN)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed-run
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# axe-core, which the browser tests inject into the pages (never fetched at test time)
AXE := tests/e2e/axe/node_modules/axe-core/axe.min.js
$(AXE): tests/e2e/axe/package.json
	cd tests/e2e/axe && npm ci --no-audit --no-fund --silent
	touch $@

install: $(BIN)/.installed-run

install-dev: $(BIN)/.installed-dev $(AXE)

run: install
	$(BIN)/cobuy up

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package) for the load"; \
	  apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf .cobuy test-output .pytest_cache
