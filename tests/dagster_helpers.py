"""Shared by the Dagster tests: the settings a run gets, running the job in this process and
reading back what it did."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from workspace import isolated_env, isolated_process_state

from pipelines.orchestration import dagster as orchestration
from pipelines.simulator import Simulator

EXECUTIONS = 300
KEY = "dagster-test-key-7f3c9e"  # distinctive: must appear in no output or event
TABLES = ["executions", "step_outputs", "step_params", "fetch_errors"]
VIEWS = [view.name for view in orchestration.VIEWS]
REPORTING_VIEWS = [view.name for view in orchestration.VIEWS if view.kind == "reporting"]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def dagster_bin() -> str:
    found = Path(sys.executable).with_name("dagster")
    if not found.exists():
        pytest.fail("no `dagster` command beside this Python: run `make install` (.[dev])")
    return str(found)


@dataclass
class Run:
    """What one run of the job did, read from its events."""

    success: bool
    materialized: dict[str, dict[str, Any]]  # asset name -> metadata values
    data_versions: dict[str, str]
    checks: dict[str, dg.AssetCheckEvaluation]
    logs: str


def settings_env(root: Path, simulator: Simulator, **more: str) -> dict[str, str]:
    env = isolated_env(root / "dlt-data")
    env.update(
        {
            "SOURCES__EACHLABS__BASE_URL": simulator.base_url,
            "SOURCES__EACHLABS__API_KEY": simulator.api_key,
            "ORCHESTRATION__WORKFLOWS": json.dumps(simulator.workflow_ids),
            "ORCHESTRATION__DB_PATH": str(root / "dagster.duckdb"),
            "ORCHESTRATION__REPORT_DIR": str(root / "reports"),
            **more,
        }
    )
    return env


def run_job(
    root: Path,
    env: dict[str, str],
    instance: dg.DagsterInstance | None = None,
    run_config: dict[str, Any] | None = None,
    assets: list[dg.AssetKey] | None = None,
) -> Run:
    """`eachlabs_job` (the whole graph, or only `assets` and their checks) in this process,
    with `env` as its environment and `instance` (default: a new ephemeral one)."""
    instance = instance or dg.DagsterInstance.ephemeral()
    job_def = orchestration.defs.resolve_job_def(orchestration.JOB_NAME)
    with isolated_process_state(root, env, None) as (out, err):
        result = job_def.execute_in_process(
            run_config=run_config, instance=instance, asset_selection=assets,
            raise_on_error=False,
        )  # fmt: skip
    materialized, versions = {}, {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        name = materialization.asset_key.path[-1]
        materialized[name] = {k: v.value for k, v in materialization.metadata.items()}
        if "dagster/data_version" in materialization.tags:
            versions[name] = materialization.tags["dagster/data_version"]
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    events = "\n".join(str(record) for record in instance.all_logs(result.run_id))
    return Run(
        result.success, materialized, versions, checks, out.getvalue() + err.getvalue() + events
    )


def stored(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db_path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


TABLE_KEYS = [dg.AssetKey(["eachlabs", table]) for table in TABLES]


def dagster_simulator(factory: Callable[..., Simulator], **config: Any) -> Simulator:
    """A simulator of `EXECUTIONS` executions whose clock starts now (so the data is fresh),
    accepting `KEY`; `config` as for the `simulator_factory` fixture."""
    return factory(executions=EXECUTIONS, start_time=_now(), api_key=KEY, **config)
