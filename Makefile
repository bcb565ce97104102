# The two README commands: `make run` and `make test`. Each creates its own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck layers schemas bench clean browser

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/portfolio up

lint: $(STAMP)
	$(VENV)/bin/ruff check contracts domain shared services tests bench
	$(VENV)/bin/ruff format --check contracts domain shared services tests bench

layers: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Chromium from Debian for the dashboard's browser test (skipped without it, unless
# PORTFOLIO_REQUIRE_BROWSER=1, as in CI).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"

test: $(STAMP) browser lint typecheck layers
	$(VENV)/bin/pytest -q -p no:cacheprovider

schemas: $(STAMP)
	$(PY) -m contracts.export

# Every figure beside a raw baseline from the same run; `make bench ARGS=--quick` takes about a minute.
bench: $(STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) .portfolio
