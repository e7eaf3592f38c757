"""The Dagster definitions (pipelines/orchestration/dagster.py) materialised in this process
against the simulator: the whole graph twice, failing IDs, run config, PostgreSQL, the checks.
The `dagster` CLI, `make dagster` and the schedule: tests/test_dagster_process.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from dagster_helpers import (
    EXECUTIONS,
    KEY,
    REPORTING_VIEWS,
    TABLE_KEYS,
    TABLES,
    VIEWS,
    dagster_simulator,
    run_job,
    settings_env,
    stored,
)  # fmt: skip
from listing_helpers import WF, detail_requests, put_executions
from workspace import isolated_env, isolated_process_state

from pipelines.orchestration import job
from pipelines.simulator import Simulator


# Two loads and two rendered reports: about 40 s on two free cores, several times that on
# the third of a core `make test-stress` gives, hence more than the default 300 s.
@pytest.mark.timeout(900)
def test_the_whole_graph_twice_loads_once_then_only_unfinished_executions(
    tmp_path: Path, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = dagster_simulator(simulator_factory)
    env = settings_env(tmp_path, simulator)
    db_path = tmp_path / "dagster.duckdb"
    instance = dg.DagsterInstance.ephemeral()

    first = run_job(tmp_path, env, instance)
    assert first.success, first.logs[-3000:]
    assert sorted(first.materialized) == sorted([*TABLES, *VIEWS, "model_performance_report"])
    executions = first.materialized["executions"]
    assert executions["requested"] == executions["loaded"] == EXECUTIONS
    assert (executions["failed"], executions["not_found"], executions["rejected"]) == (0, 0, 0)
    assert executions["listed"] == EXECUTIONS
    assert executions["elapsed_s"] > 0
    for table in TABLES:  # each table's row count, as stored
        (count,) = stored(db_path, f"select count(*) from eachlabs.{table}")[0]
        assert first.materialized[table]["dagster/row_count"] == count
    assert first.materialized["fetch_errors"]["dagster/row_count"] == 0
    for view in VIEWS:
        (count,) = stored(db_path, f"select count(*) from eachlabs.{view}")[0]
        assert first.materialized[view]["dagster/row_count"] == count, view
    for view in REPORTING_VIEWS:  # a view's data version is the fingerprint of its rows
        assert first.data_versions[view] == first.materialized[view]["fingerprint"]
    report = Path(first.materialized["model_performance_report"]["path"])
    assert report == (tmp_path / "reports" / "model_performance.html").resolve()
    assert "<html" in report.read_text(encoding="utf-8")[:2000].lower()

    share = first.checks["fetch_error_share"]
    assert share.passed and share.metadata["share"].value == 0.0
    assert share.metadata["requested"].value == EXECUTIONS
    assert first.checks["fresh"].passed
    # The simulator's data set has models that got worse; the warning names exactly those.
    worse = first.checks["nothing_got_worse"]
    flagged = stored(
        db_path,
        "select model from eachlabs.model_recent_changes "
        "where latency_regressed or failures_regressed order by model",
    )
    assert flagged, "the simulated data set should hold a model that got worse"
    assert not worse.passed and worse.severity == dg.AssetCheckSeverity.WARN
    assert sorted(worse.metadata["models"].value) == [model for (model,) in flagged]
    assert all(model in worse.description for (model,) in flagged)

    running = {
        execution_id
        for (execution_id,) in stored(
            db_path, "select execution_id from eachlabs.executions where status = 'running'"
        )
    }
    assert running, "the simulated data set should hold running executions"
    simulator.clear_request_log()
    second = run_job(tmp_path, env, instance)

    assert second.success, second.logs[-3000:]
    fetched = detail_requests(simulator)
    # No finished execution is requested again: only the ones still running.
    assert sorted(fetched) == sorted(running)
    executions = second.materialized["executions"]
    assert executions["loaded"] == len(running)
    assert executions["requested"] == executions["loaded"] + executions["skipped_final"]
    assert all(check.passed for name, check in second.checks.items() if name != "nothing_got_worse")
    assert not second.checks["nothing_got_worse"].passed  # the same models, still worse
    # Nothing changed, so no view did: the same data version as the first run.
    for view in REPORTING_VIEWS:
        assert second.data_versions[view] == first.data_versions[view], view
    assert KEY not in first.logs + second.logs


def test_a_run_with_failing_ids_fails_the_fetch_errors_check_with_its_share(
    tmp_path: Path, simulator_factory: Callable[..., Simulator]
) -> None:
    probe = dagster_simulator(simulator_factory)
    failing = sorted(probe.execution_ids)[::20]  # 5% of the IDs: 15 of 300
    probe.stop()
    simulator = dagster_simulator(
        simulator_factory, faults={"fail_ids": {i: [503] * 10 for i in failing}}
    )
    env = settings_env(tmp_path, simulator, SOURCES__EACHLABS__MAX_ATTEMPTS="2")

    run = run_job(tmp_path, env, dg.DagsterInstance.ephemeral())

    assert not run.success  # a blocking check: the run is not green
    check = run.checks["fetch_error_share"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["share"].value == pytest.approx(0.05)
    assert (check.metadata["fetch_errors"].value, check.metadata["requested"].value) == (15, 300)
    assert "15 of 300 requested IDs in fetch_errors (5.00%)" in check.description
    # The rows that could be loaded are committed; the views and the report wait for a fix.
    assert run.materialized["executions"]["failed"] == 15
    (stored_rows,) = stored(
        tmp_path / "dagster.duckdb", "select count(*) from eachlabs.executions"
    )[0]
    assert stored_rows == 285
    errors = stored(
        tmp_path / "dagster.duckdb", "select execution_id, http_status from eachlabs.fetch_errors"
    )
    assert sorted(errors) == [(i, 503) for i in failing]
    assert "model_performance_report" not in run.materialized
    assert "blocking asset check" in run.logs


def test_a_run_under_the_limit_passes_the_check(
    tmp_path: Path, simulator_factory: Callable[..., Simulator]
) -> None:
    probe = dagster_simulator(simulator_factory)
    failing = sorted(probe.execution_ids)[:3]  # 1% of 300: at the limit, not over it
    probe.stop()
    simulator = dagster_simulator(
        simulator_factory, faults={"fail_ids": {i: [503] * 10 for i in failing}}
    )
    env = settings_env(tmp_path, simulator, SOURCES__EACHLABS__MAX_ATTEMPTS="1")

    run = run_job(tmp_path, env, assets=TABLE_KEYS)  # the check runs in the tables' step

    check = run.checks["fetch_error_share"]
    assert check.passed and check.metadata["share"].value == pytest.approx(0.01)
    assert check.metadata["fetch_errors"].value == 3
    assert run.success


def test_a_job_with_nothing_to_load_fails_saying_what_to_set(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "dlt-data")
    env["ORCHESTRATION__DB_PATH"] = str(tmp_path / "dagster.duckdb")
    run = run_job(tmp_path, env, dg.DagsterInstance.ephemeral())
    assert not run.success
    assert "names nothing to load: set workflows, ids_file or spool" in run.logs
    assert not (tmp_path / "dagster.duckdb").exists()


def test_freshness_fails_once_the_newest_execution_is_older_than_the_limit(
    tmp_path: Path, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = dagster_simulator(simulator_factory)
    env = settings_env(tmp_path, simulator)
    with isolated_process_state(tmp_path, env, None):
        settings = job.resolve_job_settings()
        job.load(settings)
        (newest,) = stored(
            tmp_path / "dagster.duckdb", "select max(started_at) from eachlabs.executions"
        )[0]
        fresh = job.freshness(settings, now=newest + timedelta(hours=23))
        stale = job.freshness(settings, now=newest + timedelta(hours=25))
    assert fresh.passed and fresh.metadata["age_s"] == 23 * 3600
    assert not stale.passed and stale.metadata["age_s"] == 25 * 3600
    assert stale.description == (
        "the newest execution started 25.0 h ago (older than the limit of 24.0 h)"
    )


def test_a_view_fingerprint_ignores_row_order_and_a_sum_s_last_bits() -> None:
    import pandas as pd

    frame = pd.DataFrame({"model": ["a", "b", "c"], "p95": [1.5, 2.25, 0.1 + 0.2]})
    shuffled = frame.iloc[[2, 0, 1]].reset_index(drop=True)
    noisy = frame.assign(p95=frame["p95"] + 1e-13)
    changed = frame.assign(p95=[1.5, 2.25, 0.31])
    assert job.fingerprint(shuffled) == job.fingerprint(frame) == job.fingerprint(noisy)
    assert job.fingerprint(changed) != job.fingerprint(frame)
    assert job.fingerprint(frame.rename(columns={"p95": "p50"})) != job.fingerprint(frame)


def test_a_run_s_config_chooses_what_to_load_and_where(
    tmp_path: Path, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = dagster_simulator(simulator_factory)
    env = settings_env(tmp_path, simulator)  # the settings name every workflow
    ids = sorted(simulator.execution_ids)[:10]
    (tmp_path / "ids.txt").write_text("# ten IDs\n" + "\n".join(ids) + "\n")
    other = tmp_path / "other.duckdb"
    by_id = {
        "ops": {
            # the settings' workflows are replaced, not added to
            "eachlabs_load": {"config": {"ids_file": str(tmp_path / "ids.txt")}}
        },
        "resources": {"eachlabs": {"config": {"db_path": str(other)}}},
    }

    run = run_job(tmp_path, env, run_config=by_id, assets=TABLE_KEYS)

    assert run.success, run.logs[-3000:]
    assert run.materialized["executions"]["requested"] == 10
    assert "listed" not in run.materialized["executions"]
    assert (
        sorted(i for (i,) in stored(other, "select execution_id from eachlabs.executions")) == ids
    )
    assert not (tmp_path / "dagster.duckdb").exists()  # the setting's file was left alone

    workflow = simulator.workflow_ids[0]
    one_workflow = {"ops": {"eachlabs_load": {"config": {"workflows": [workflow]}}}}
    run = run_job(tmp_path, env, run_config=one_workflow, assets=TABLE_KEYS)
    assert run.success, run.logs[-3000:]
    assert stored(
        tmp_path / "dagster.duckdb", "select distinct workflow_id from eachlabs.executions"
    ) == [(workflow,)]


def test_the_tables_and_views_go_to_postgresql(
    tmp_path: Path, simulator_factory: Callable[..., Simulator], postgres_db: Any
) -> None:
    server, dbname = postgres_db
    simulator = dagster_simulator(simulator_factory)
    env = {**settings_env(tmp_path, simulator), **server.credentials_env(dbname)}
    env["ORCHESTRATION__DESTINATION"] = "postgres"
    keys = [*TABLE_KEYS, dg.AssetKey(["eachlabs", "execution_runs"]),
            dg.AssetKey(["eachlabs", "workflow_performance"])]  # fmt: skip
    run = run_job(tmp_path, env, assets=keys)
    assert run.success, run.logs[-3000:]
    assert server.password not in run.logs and KEY not in run.logs
    with server.connect(dbname) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from eachlabs.executions")
        assert cursor.fetchone() == (EXECUTIONS,)
        cursor.execute("select count(*) from eachlabs.workflow_performance")
        (workflows,) = cursor.fetchone()
    assert run.materialized["executions"]["dagster/row_count"] == EXECUTIONS
    assert run.materialized["workflow_performance"]["dagster/row_count"] == workflows == 8
    assert not (tmp_path / "dagster.duckdb").exists()


def test_nothing_got_worse_passes_when_no_model_did(
    tmp_path: Path, simulator_factory: Callable[..., Simulator]
) -> None:
    """Ten alike executions of one model in one week: nothing to compare, nothing worse."""
    simulator = simulator_factory(executions=0, api_key=KEY)
    ids = put_executions(simulator, 10)
    env = settings_env(tmp_path, simulator, ORCHESTRATION__WORKFLOWS=json.dumps([WF]))
    keys = [*TABLE_KEYS, *(dg.AssetKey(["eachlabs", view]) for view in VIEWS)]
    run = run_job(tmp_path, env, assets=keys)
    assert run.success, run.logs[-3000:]
    checks = run.checks
    assert checks["nothing_got_worse"].passed
    assert checks["nothing_got_worse"].description == "no model got worse in the last 7 days"
    assert checks["nothing_got_worse"].metadata["models"].value == []
    assert checks["fetch_error_share"].metadata["requested"].value == len(ids)
    assert not checks["fresh"].passed  # the hand-made executions started in January 2026


def test_the_share_counts_every_row_the_run_wrote_to_fetch_errors(
    tmp_path: Path, simulator_factory: Callable[..., Simulator]
) -> None:
    """A failed listing, an unknown ID (404) and an unsafe one: three rows, three errors."""
    simulator = dagster_simulator(simulator_factory)
    ids = sorted(simulator.execution_ids)[:5]
    given = {
        "workflows": ["wf-unknown", simulator.workflow_ids[0]],
        "ids_file": str(tmp_path / "ids.txt"),
    }
    (tmp_path / "ids.txt").write_text("\n".join([*ids, "missing-id", "bad/id"]) + "\n")
    with isolated_process_state(tmp_path, settings_env(tmp_path, simulator), None):
        settings = job.resolve_job_settings(given)
        summary = job.load(settings)
    rows = stored(tmp_path / "dagster.duckdb", "select count(*) from eachlabs.fetch_errors")
    assert summary.error_rows == rows[0][0] == 3  # the listing, the 404, the unsafe ID
    outcome = job.fetch_error_share(summary, 0.01)
    assert outcome.metadata["fetch_errors"] == 3
    assert outcome.metadata["requested"] == summary.requested
    assert not outcome.passed


def test_the_views_are_applied_once_per_run(
    tmp_path: Path, simulator_factory: Callable[..., Simulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load applies the views at its end, so the views step of the same run only reads
    them; a run of the views alone (after a change to sql/) applies them itself."""
    from pipelines import load

    applied: list[str] = []
    apply_views = load.apply_views

    def counted(*args: Any, **kwargs: Any) -> list[str]:
        applied.append("views step")
        return apply_views(*args, **kwargs)

    monkeypatch.setattr(load, "apply_views", counted)
    simulator = simulator_factory(executions=0, api_key=KEY)
    put_executions(simulator, 10)
    env = settings_env(tmp_path, simulator, ORCHESTRATION__WORKFLOWS=json.dumps([WF]))
    views = [dg.AssetKey(["eachlabs", view]) for view in VIEWS]

    loaded = run_job(tmp_path, env, assets=[*TABLE_KEYS, *views])
    assert loaded.success, loaded.logs[-3000:]
    assert applied == []
    with duckdb.connect(str(tmp_path / "dagster.duckdb")) as connection:
        connection.execute("drop view eachlabs.workflow_performance")

    only_views = run_job(tmp_path, env, assets=views)
    assert only_views.success, only_views.logs[-3000:]
    assert applied == ["views step"]
    assert only_views.materialized["workflow_performance"]["dagster/row_count"] == 1
