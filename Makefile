# Entry points of eachlabs-pipeline. `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eachlabs-pipeline demo --executions 1000 --db eachlabs_demo.duckdb

test: $(STAMP)
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/ruff format --check pipelines tests bench

format: $(STAMP)
	$(BIN)/ruff format pipelines tests bench
	$(BIN)/ruff check --fix pipelines tests bench

# All five measurements of docs/performance.md side by side: one table, and bench/results.json.
bench: $(STAMP)
	$(BIN)/python bench/bench_all.py --json bench/results.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache eachlabs_demo.duckdb eachlabs_demo.duckdb.wal
