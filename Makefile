# `make test` and `make run` set themselves up: a virtual environment in $(VENV), built with
# $(PYTHON), holding asoq (editable) and its test and dev tools. DJANGO pins another Django
# release in it (CI: DJANGO='django>=6.0,<6.1'); give each such pin its own VENV.
PYTHON ?= python3
VENV ?= .venv
DJANGO ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint bench run clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(if $(DJANGO),$(BIN)/python -m pip install --quiet '$(DJANGO)')
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check asoq tests benchmarks
	$(BIN)/ruff format --check asoq tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/enqueue.py

run: $(STAMP)
	$(BIN)/python sample_app/manage.py migrate --noinput
	$(BIN)/python sample_app/serve.py $(SERVE_ARGS)

clean:
	rm -rf $(VENV) .venv-* .mypy_cache .ruff_cache .pytest_cache
