# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev bench clean translations

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

# The pages' and mails' words (SPEC §12): each service's translations/<lang>/LC_MESSAGES/messages.po,
# compiled here to the .mo files the services load (never committed: .gitignore).
TRANSLATED := services/catalog services/mailer
MO := $(patsubst %.po,%.mo,$(wildcard $(addsuffix /translations/*/LC_MESSAGES/messages.po,$(TRANSLATED))))
%.mo: %.po | $(BIN)/.installed-run
	$(BIN)/pybabel compile --statistics -i $< -o $@

# After marking new words: extract them to messages.pot and merge them into every .po, then translate.
translations: $(BIN)/.installed-run
	for service in $(TRANSLATED); do \
	  $(BIN)/pybabel extract -F babel.cfg -k _l --sort-output --project cobuy \
	    -o $$service/translations/messages.pot $$service && \
	  $(BIN)/pybabel update --ignore-obsolete --no-fuzzy-matching -w 100 \
	    -i $$service/translations/messages.pot -d $$service/translations || exit 1; \
	done

install: $(BIN)/.installed-run $(MO)

install-dev: $(BIN)/.installed-dev $(AXE) $(MO)

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
