# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/cobuy up

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package) for the load"; \
	  apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf .cobuy test-output .pytest_cache
