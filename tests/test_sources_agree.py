"""Every way in gives the same rows: the same bodies loaded by ID from the API, from JSON Lines
and through the webhook receiver's spool (duplicates delivered, the receiver killed mid-run)
end in identical `executions`, `step_outputs` and `step_params`.

Real processes throughout: the simulator over HTTP, the receiver as `eachlabs-pipeline
webhook`, every load through the CLI into its own DuckDB file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_from_files import TABLES, load_files, table_rows, write_jsonl
from webhook_fixtures import kill_and_resend, post_bodies, start_receiver, webhook_body
from workspace import Workspace, make_workspace

from pipelines.simulator import Simulator


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], Workspace]:
    """The simulator's 2,000 executions (some still running), their bodies as the API sends
    them, and a load of them by ID (`--ids-file`)."""
    from simulator_fixtures import start_simulator

    simulator: Simulator = start_simulator(executions=2000, running_share=0.05)
    bodies = [simulator.app.execution_response(i).body for i in simulator.execution_ids]
    ws = make_workspace(tmp_path_factory.mktemp("ids"))
    ids = ws.root / "ids.txt"
    ids.write_text("\n".join(simulator.execution_ids) + "\n")
    result = ws.load(simulator, extra=["--ids-file", str(ids), "--quiet"])
    simulator.stop()
    assert result.returncode == 0, result.stderr
    return bodies, ws


def test_jsonl_spool_and_ids_file_give_identical_rows(
    simulated: tuple[list[bytes], Workspace], tmp_path: Path
) -> None:
    bodies, by_id = simulated
    from_jsonl = make_workspace(tmp_path / "jsonl")
    jsonl = write_jsonl(tmp_path / "bodies.jsonl", bodies)
    assert load_files(from_jsonl, "--from-jsonl", str(jsonl)).returncode == 0

    from_spool = make_workspace(tmp_path / "spool-load")
    spool = tmp_path / "spool"
    receiver = start_receiver(from_spool, spool)
    twice = bodies[::10]  # 10% delivered a second time, as the engine's retries do
    assert post_bodies(receiver.webhook_url, bodies + twice) == [200] * (len(bodies) + 200)
    assert receiver.stop()[0] == 0
    result = load_files(from_spool, "--from-spool", str(spool))
    assert result.returncode == 0, result.stderr
    assert "read 2200 bodies" in result.stdout and "(200 duplicates ignored)" in result.stdout

    for table in TABLES:
        expected = table_rows(by_id, table)
        assert len(expected) > 2000 if table != "executions" else len(expected) == 2000
        assert table_rows(from_jsonl, table) == expected, table
        assert table_rows(from_spool, table) == expected, table


def test_every_acknowledged_webhook_is_loaded_once_after_a_kill(
    workspace: Workspace, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    bodies = [webhook_body(i) for i in range(1000)]
    run = kill_and_resend(workspace, spool, bodies)
    assert run.acked_by_first and run.resent  # the kill fell in the middle

    result = load_files(workspace, "--from-spool", str(spool))

    assert result.returncode == 0, result.stderr
    acknowledged = {json.loads(bodies[i])["execution_id"] for i in range(len(bodies))}
    stored = workspace.query("select execution_id from eachlabs.executions")
    assert len(stored) == len({row[0] for row in stored})  # none twice
    assert {row[0] for row in stored} == acknowledged  # every one (all were acknowledged)
    assert workspace.query("select count(*) from eachlabs.fetch_errors") == [(0,)]
    steps = workspace.query(
        "select count(*), count(distinct execution_id) from eachlabs.step_outputs"
    )
    assert steps == [(1000, 1000)]
