# Entry points of eachlabs-pipeline. `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The DuckDB file `make report` reads: `make report DB=eachlabs_data.duckdb` for a real one.
DB ?= eachlabs_demo.duckdb

.PHONY: install demo report dagster test test-stress check-spec lint format bench clean

install: $(STAMP)

# setuptools announces every editable install of a package with a mapped folder (sql/ ships as
# pipelines.sql) with an informational "Editable installation." notice, shown by pip as a
# BuildBackendWarning. It reports nothing wrong; filtering it keeps the install log free of
# warnings, so a real one stands out (tests/test_wheel.py holds the log to that).
EDITABLE_NOTICE_OFF := PYTHONWARNINGS="ignore:Editable installation"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(EDITABLE_NOTICE_OFF) $(BIN)/python -m pip install --quiet -e ".[dev,report]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eachlabs-pipeline demo --executions 1000 --db eachlabs_demo.duckdb

# Executes notebooks/model_performance.ipynb on $(DB) (read-only) and writes
# reports/model_performance.html plus one PNG per figure; the install includes `.[report]`.
# `make report DESTINATION=postgres` reads the views from PostgreSQL instead (read-only; the
# credentials as for `load --destination postgres`: DESTINATION__POSTGRES__CREDENTIALS or
# .dlt/secrets.toml). Notebook parameters: make report ARGS="-p top_n=5 -p start_date=2026-02-01".
report: $(STAMP)
	@$(BIN)/eachlabs-pipeline report --destination "$(or $(DESTINATION),duckdb)" --db "$(DB)" \
		--out reports $(ARGS)

# Dagster's UI (http://127.0.0.1:3000) on pipelines/orchestration/dagster.py, loading from a
# local simulator with the demo's data set (pipelines/orchestration/dev.py): open Assets and
# click "Materialize all". Other dagster arguments: make dagster ARGS="-p 3001".
dagster: $(STAMP)
	$(BIN)/python -m pipelines.orchestration.dev dev $(ARGS)

# Tests run on 4 pytest-xdist workers (most of a test's time is spent waiting on a server, a
# DuckDB file or a child process, so 4 overlap well even on 2 cores): `make test WORKERS=1`.
WORKERS ?= 4
test: $(STAMP)
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/python -m pytest -q -n $(WORKERS) $(PYTEST_ARGS)

# The whole suite on one core shared with two CPU-burning processes (all three pinned with
# taskset -c 0): the suite gets about a third of a core, roughly what a busy CI box gives. Each
# burner starts a session of its own, so the kernel's per-session fair share (autogroup) gives
# the suite's four workers together one third, not four sixths. A test whose outcome depends
# on wall time or machine speed fails here. See docs/testing.md.
BURN_CPU := import os; os.setsid(); exec("while True: pass")
test-stress: $(STAMP)
	@command -v taskset >/dev/null || { echo "test-stress needs taskset (util-linux)"; exit 1; }
	@taskset -c 0 $(BIN)/python -c '$(BURN_CPU)' & b1=$$!; \
	taskset -c 0 $(BIN)/python -c '$(BURN_CPU)' & b2=$$!; \
	trap 'kill $$b1 $$b2 2>/dev/null' EXIT INT TERM; \
	echo "two CPU burners share core 0 with the suite (PIDs $$b1 $$b2)"; \
	taskset -c 0 $(BIN)/python -m pytest -q -n $(WORKERS) $(PYTEST_ARGS)

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
	rm -rf $(VENV) .pytest_cache .ruff_cache reports eachlabs_demo.duckdb eachlabs_demo.duckdb.wal eachlabs_demo.duckdb.lock \
		.dagster eachlabs_dagster.duckdb eachlabs_dagster.duckdb.wal eachlabs_dagster.duckdb.lock
