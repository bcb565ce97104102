# The two README commands: `make run` and `make test`. Each creates its own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck schemas clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/portfolio up

lint: $(STAMP)
	$(VENV)/bin/ruff check contracts shared services tests
	$(VENV)/bin/ruff format --check contracts shared services tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider

schemas: $(STAMP)
	$(PY) -m contracts.export

clean:
	rm -rf $(VENV) .portfolio
