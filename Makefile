# The two set-up commands a newcomer needs are `make demo` and `make test`;
# each creates or refreshes .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv system-deps demo serve test test-fast lint format bench mutation clean images

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[runner,dev]'
	touch $(STAMP)

venv: $(STAMP)

# orbit's three images (bot, runner-cpu, runner-gpu), tagged with the version; see scripts/images.
images:
	scripts/images

system-deps:
	scripts/system-deps

# Both work from a fresh clone: the model is pulled (dvc pull) or trained (dvc repro) when missing,
# each step printed as it starts with its time when it ends.
demo: venv
	$(BIN)/orbit local demo

SERVE_PORT ?= 3000
serve: venv
	$(BIN)/orbit local serve --port $(SERVE_PORT)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

mutation: venv
	$(BIN)/python scripts/mutation

test-fast: venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: venv system-deps
	$(BIN)/python -m bench.ingest
	$(BIN)/python bench/runner.py
	$(BIN)/python -m bench.serve
	$(BIN)/python -m bench.report
	$(BIN)/python -m bench.report_render
	$(BIN)/python -m bench.deploy
	$(BIN)/python -m bench.drain
	$(BIN)/python -m bench.soak
	$(BIN)/python -m bench.ingest_profile
	$(BIN)/python -m bench.retrain

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
