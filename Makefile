# Entry points of eachlabs-pipeline. `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The DuckDB file `make report` reads: `make report DB=eachlabs_data.duckdb` for a real one.
DB ?= eachlabs_demo.duckdb

.PHONY: install demo report test check-spec lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,report]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eachlabs-pipeline demo --executions 1000 --db eachlabs_demo.duckdb

# Executes notebooks/model_performance.ipynb on $(DB) (read-only) and writes
# reports/model_performance.html plus one PNG per figure; the install includes `.[report]`.
report: $(STAMP)
	@$(BIN)/eachlabs-pipeline report --db "$(DB)" --out reports

# Tests run on 4 pytest-xdist workers (most of a test's time is spent waiting on a server, a
# DuckDB file or a child process, so 4 overlap well even on 2 cores): `make test WORKERS=1`.
WORKERS ?= 4
test: $(STAMP)
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/python -m pytest -q -n $(WORKERS)

# CI only: does our API contract (tests/eachlabs_api.schema.json) still agree with the vendor's
# published spec? Reads ../shared/eachlabs-api/workflows.openapi.yaml or $$EACHLABS_API_SPEC.
check-spec: $(STAMP)
	$(BIN)/python tests/openapi_contract.py check

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
	rm -rf $(VENV) .pytest_cache .ruff_cache reports eachlabs_demo.duckdb eachlabs_demo.duckdb.wal eachlabs_demo.duckdb.lock
