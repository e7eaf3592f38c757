"""End to end: the real CLI against the real simulator over HTTP into a real DuckDB file."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import dlt
import duckdb
import pytest
from payloads import execution, model_step, utc

from pipelines.dlt_run import pipeline_name_for
from pipelines.eachlabs import eachlabs_source
from pipelines.eachlabs.normalise import (
    EXECUTIONS_SCHEMA,
    FETCH_ERRORS_SCHEMA,
    JSON_COLUMNS,
    STEP_OUTPUTS_SCHEMA,
    STEP_PARAMS_SCHEMA,
)
from pipelines.simulator import FaultConfig
from pipelines.views import discover_views

TABLE_SCHEMAS = {
    "executions": EXECUTIONS_SCHEMA,
    "step_outputs": STEP_OUTPUTS_SCHEMA,
    "step_params": STEP_PARAMS_SCHEMA,
    "fetch_errors": FETCH_ERRORS_SCHEMA,
}
KEY_TABLES = ("executions", "step_outputs", "step_params", "fetch_errors")


PARAMS = {
    "system_prompt": "You are a helpful assistant",
    "unicode": "café ☕ 日本語",
    "max_output_tokens": 512,
    "temperature": 0.7,
    "stream": False,
    "seed": None,
    "stop": ["\n\n", "END"],
    "response_format": {"type": "json", "schema": {"n": 1}},
}


def rich_execution() -> dict[str, Any]:
    return execution(
        "exec-rich",
        {
            "step1": model_step("step1", "openai-chatgpt-5", PARAMS),
            "step2": {
                "step_id": "step2",
                "status": "completed",
                "started_at": "2025-12-04T14:48:39.5+03:00",
                "completed_at": "2025-12-04T11:50:53Z",
                "output": ["https://storage.example/image1.png"],
                "primary": "https://storage.example/image1.png",
                "metadata": {"model": "flux-1-1-pro", "version": "1.1", "prediction_id": "p-9"},
            },
            "hook": {
                "step_id": "hook",
                "status": "completed",
                "started_at": "2025-12-04T11:50:53Z",
                "completed_at": "2025-12-04T11:50:55.45Z",
                "output": {"ok": True},
                "metadata": {
                    "type": "http",
                    "method": "POST",
                    "url": "https://hooks.example/x",
                    "elapsed_seconds": 2.45,
                    "params": {"retries": 3},
                },
            },
            "script": {
                "step_id": "script",
                "status": "completed",
                "started_at": "2025-12-04T06:20:55-05:30",
                "completed_at": "2025-12-04T11:50:55.123Z",
                "metadata": {"type": "python", "execution_time": 0.123},
            },
            "bare": {"step_id": "bare", "status": "completed"},
        },
        bulk_id="550e8400-e29b-41d4-a716-446655440000",
        started_at="2025-12-04T14:48:10+03:00",
        cost={"usd": 0.02},
    )


def test_load_writes_exact_rows(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(rich_execution())
    result = workspace.load(simulator, "exec-rich")
    assert result.returncode == 0, result.stderr
    assert "requested 1, loaded 1" in result.stdout

    [row] = workspace.query(
        "select execution_id, workflow_id, bulk_id, status, started_at, completed_at, inputs,"
        " output, error, error_cause, step_count, extra_fields from eachlabs.executions"
    )
    assert row == (
        "exec-rich",
        "wf-1",
        "550e8400-e29b-41d4-a716-446655440000",
        "completed",
        utc(2025, 12, 4, 11, 48, 10),
        utc(2025, 12, 4, 11, 50, 53),
        '{"prompt":"A majestic mountain landscape"}',
        '["https://storage.example/image1.png"]',
        None,
        None,
        5,
        '{"cost":{"usd":0.02}}',
    )
    steps = workspace.query(
        "select step_id, step_position, step_type, model, model_version, started_at,"
        " latency_seconds, primary_output, http_method, elapsed_seconds, execution_time_seconds,"
        " prediction_id from eachlabs.step_outputs order by step_position"
    )
    assert steps == [
        ("step1", 0, "model", "openai-chatgpt-5", "0.0.1", utc(2025, 12, 4, 11, 48, 10), 29.25,
         '"text"', None, None, None, None),
        ("step2", 1, "model", "flux-1-1-pro", "1.1", utc(2025, 12, 4, 11, 48, 39, 500000), 133.5,
         '"https://storage.example/image1.png"', None, None, None, "p-9"),
        ("hook", 2, "http", None, None, utc(2025, 12, 4, 11, 50, 53), 2.45,
         None, "POST", 2.45, None, None),
        ("script", 3, "python", None, None, utc(2025, 12, 4, 11, 50, 55), 0.123,
         None, None, None, 0.123, None),
        ("bare", 4, None, None, None, None, None, None, None, None, None, None),
    ]  # fmt: skip
    params = workspace.query(
        "select step_id, param_name, param_value, param_type from eachlabs.step_params"
        " order by step_id, param_name"
    )
    expected = [("hook", "retries", "3", "integer")] + sorted(
        ("step1", name, json.dumps(value, ensure_ascii=False, separators=(",", ":")), kind)
        for (name, value), kind in zip(
            PARAMS.items(),
            ["string", "string", "integer", "number", "boolean", "null", "array", "object"],
            strict=True,
        )
    )
    assert params == expected
    # JSON values are real JSON: DuckDB can reach inside them.
    assert workspace.query(
        "select param_value->>'$.schema.n' from eachlabs.step_params"
        " where param_name = 'response_format'"
    ) == [("1",)]
    assert workspace.query("select count(*) from eachlabs.fetch_errors") == [(0,)]

    tables = workspace.query(
        "select table_name from information_schema.tables"
        " where table_schema = 'eachlabs' and table_type = 'BASE TABLE' order by 1"
    )
    assert [t for (t,) in tables] == [
        "_dlt_loads", "_dlt_pipeline_state", "_dlt_version",
        "executions", "fetch_errors", "step_outputs", "step_params",
    ]  # fmt: skip
    for table, schema in TABLE_SCHEMAS.items():
        columns = workspace.query(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = 'eachlabs' and table_name = ? order by ordinal_position",
            [table],
        )
        assert [name for name, _ in columns] == schema.names, table
        json_columns = {name for name, kind in columns if kind == "JSON"}
        assert json_columns == set(JSON_COLUMNS.get(table, ())), table


def test_rerun_updates_running_and_replaces_removed_rows(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    running = execution(
        "exec-1",
        {
            "a": model_step("a", "m1", {"keep": 1, "drop": "x"}),
            "b": model_step("b", "m2", {"p": 1}, status="running", completed_at=None),
        },
        status="running",
        completed_at=None,
        output=None,
    )
    done = execution("exec-2", {"a": model_step("a", "m1", {"q": True})})
    simulator.put_execution(running)
    simulator.put_execution(done)
    assert workspace.load(simulator, "exec-1", "exec-2").returncode == 0
    assert workspace.query(
        "select execution_id, count(*) from eachlabs.step_params group by 1 order by 1"
    ) == [("exec-1", 3), ("exec-2", 1)]

    # Upstream: exec-1 finished, step b vanished, param `drop` vanished.
    finished = execution("exec-1", {"a": model_step("a", "m1", {"keep": 2})})
    simulator.put_execution(finished)
    simulator.clear_request_log()
    result = workspace.load(simulator, "exec-1", "exec-2")
    assert result.returncode == 0, result.stderr
    assert "skipped as already final 1" in result.stdout
    requested = [r.path for r in simulator.request_log]
    assert requested == ["/api/v1/executions/exec-1"]

    assert workspace.query(
        "select execution_id, status, completed_at from eachlabs.executions order by 1"
    ) == [
        ("exec-1", "completed", utc(2025, 12, 4, 11, 50, 53)),
        ("exec-2", "completed", utc(2025, 12, 4, 11, 50, 53)),
    ]
    assert workspace.query(
        "select execution_id, step_id, status from eachlabs.step_outputs order by 1, 2"
    ) == [("exec-1", "a", "completed"), ("exec-2", "a", "completed")]
    assert workspace.query(
        "select execution_id, step_id, param_name, param_value from eachlabs.step_params"
        " order by 1, 2, 3"
    ) == [("exec-1", "a", "keep", "2"), ("exec-2", "a", "q", "true")]

    # A third run asks for nothing: both are final now.
    simulator.clear_request_log()
    assert workspace.load(simulator, "exec-1", "exec-2").returncode == 0
    assert simulator.request_log == []


def test_steps_and_params_all_removed_upstream_disappear(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(
        execution("e", {"a": model_step("a", "m", {"x": 1})}, status="running", output=None)
    )
    assert workspace.load(simulator, "e").returncode == 0
    simulator.put_execution(execution("e", {}))
    assert workspace.load(simulator, "e").returncode == 0
    counts = [workspace.query(f"select count(*) from eachlabs.{t}")[0][0] for t in KEY_TABLES]
    assert counts == [1, 0, 0, 0]


def test_refresh_all_fetches_final_executions_again(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    assert workspace.load(simulator, "e").returncode == 0
    simulator.put_execution(execution("e", {"a": model_step("a", "m2")}))
    simulator.clear_request_log()
    assert workspace.load(simulator, "e", extra=["--refresh-all"]).returncode == 0
    assert [r.path for r in simulator.request_log] == ["/api/v1/executions/e"]
    assert workspace.query("select model from eachlabs.step_outputs") == [("m2",)]


def test_every_request_sends_a_short_long_poll_timeout(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=20, seed=7)
    result = workspace.load(simulator, *simulator.execution_ids)
    assert result.returncode == 0, result.stderr
    assert len(simulator.request_log) == 20
    assert {r.query.get("timeout") for r in simulator.request_log} == {"1"}
    assert all(r.has_api_key for r in simulator.request_log)


def test_generated_executions_load_completely(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=150, seed=11)
    result = workspace.load(simulator, *simulator.execution_ids, extra=["--concurrency", "8"])
    assert result.returncode == 0, result.stderr
    expected_steps = expected_params = 0
    statuses: dict[str, int] = {}
    for execution_id in simulator.execution_ids:
        # The body the loader was served (frozen clock), without a second round of HTTP.
        payload = simulator.execution(execution_id)
        statuses[payload["status"]] = statuses.get(payload["status"], 0) + 1
        for step in payload["step_outputs"].values():
            expected_steps += 1
            expected_params += len((step.get("metadata") or {}).get("params") or {})
    stored = workspace.query("select status, count(*) from eachlabs.executions group by 1")
    assert dict(stored) == statuses
    assert workspace.query("select count(*) from eachlabs.step_outputs") == [(expected_steps,)]
    assert workspace.query("select count(*) from eachlabs.step_params") == [(expected_params,)]


def test_wrong_key_exits_1_and_loads_nothing(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=5, seed=1)
    # In its own process: the exit code the shell sees, and no trace of the key in any output.
    result = workspace.load(
        simulator,
        *simulator.execution_ids,
        env={"SOURCES__EACHLABS__API_KEY": "wrong-key"},
        process=True,
    )
    assert result.returncode == 1
    assert "SOURCES__EACHLABS__API_KEY" in result.stderr
    assert "wrong-key" not in result.stdout + result.stderr
    assert not workspace.db_path.exists() or workspace.query(
        "select count(*) from information_schema.tables where table_schema = 'eachlabs'"
        " and table_name = 'executions'"
    ) == [(0,)]


def test_missing_key_says_which_setting_to_fix(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=1)
    result = workspace.run(
        "load", "x", "--db", str(workspace.db_path), "--base-url", simulator.base_url
    )
    assert result.returncode == 1
    assert "SOURCES__EACHLABS__API_KEY" in result.stderr
    assert simulator.request_log == []


def test_not_found_is_recorded_and_exit_0(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    result = workspace.load(simulator, "e", "missing-1")
    assert result.returncode == 0, result.stderr
    assert "not found 1" in result.stdout
    assert workspace.query(
        "select execution_id, http_status, attempts from eachlabs.fetch_errors"
    ) == [("missing-1", 404, 1)]
    assert workspace.query("select execution_id from eachlabs.executions") == [("e",)]


def test_transient_failures_are_retried_then_recorded_exit_2(simulator_factory, workspace) -> None:
    faults = FaultConfig(fail_ids={"flaky": [503, 429], "down": [503] * 5})
    simulator = simulator_factory(executions=0, faults=faults)
    for execution_id in ("ok", "flaky", "down"):
        simulator.put_execution(execution(execution_id, {"a": model_step("a", "m")}))
    result = workspace.load(simulator, "ok", "flaky", "down")
    assert result.returncode == 2, result.stderr
    assert "loaded 2" in result.stdout and "failed 1" in result.stdout
    assert sorted(workspace.query("select execution_id from eachlabs.executions")) == [
        ("flaky",),
        ("ok",),
    ]
    [(execution_id, status, attempts, error)] = workspace.query(
        "select execution_id, http_status, attempts, error from eachlabs.fetch_errors"
    )
    assert (execution_id, status, attempts) == ("down", 503, 5)
    assert "gave up after 5 attempts" in error
    per_id = {}
    for record in simulator.request_log:
        per_id[record.path.rsplit("/", 1)[-1]] = per_id.get(record.path.rsplit("/", 1)[-1], 0) + 1
    assert per_id == {"ok": 1, "flaky": 3, "down": 5}

    # The failed ID is fetched again on the next run (its faults are over now) and
    # fetch_errors empties; the two final ones are not asked for again.
    simulator.clear_request_log()
    second = workspace.load(simulator, "ok", "flaky", "down")
    assert second.returncode == 0, second.stderr
    assert [r.path for r in simulator.request_log] == ["/api/v1/executions/down"]
    assert workspace.query("select count(*) from eachlabs.fetch_errors") == [(0,)]
    assert workspace.query("select count(*) from eachlabs.executions") == [(3,)]


def test_unsafe_ids_are_rejected_and_never_sent(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("good", {"a": model_step("a", "m")}))
    bad = ["../workflows/x", "a/b", "..", "%2e%2e", "x?y=1"]
    result = workspace.load(simulator, "good", *bad)
    assert result.returncode == 2
    assert "rejected 5" in result.stdout
    assert [r.path for r in simulator.request_log] == ["/api/v1/executions/good"]
    assert sorted(
        workspace.query("select execution_id, http_status, attempts from eachlabs.fetch_errors")
    ) == sorted((i, None, 0) for i in bad)


def test_ids_file_and_stdin(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    for execution_id in ("a1", "b2", "c3"):
        simulator.put_execution(execution(execution_id, {"s": model_step("s", "m")}))
    ids_file = workspace.root / "ids.txt"
    ids_file.write_text("# nightly batch\n\n  a1  \nb2\n\na1\n#c3\n", encoding="utf-8")
    result = workspace.load(simulator, extra=["--ids-file", str(ids_file)])
    assert result.returncode == 0, result.stderr
    assert "(1 duplicates ignored)" in result.stdout
    assert sorted(r.path for r in simulator.request_log) == [
        "/api/v1/executions/a1",
        "/api/v1/executions/b2",
    ]
    simulator.clear_request_log()
    result = workspace.load(simulator, extra=["--ids-file", "-"], stdin="c3\nb2\n")
    assert result.returncode == 0, result.stderr
    assert [r.path for r in simulator.request_log] == ["/api/v1/executions/c3"]
    assert workspace.query("select count(*) from eachlabs.executions") == [(3,)]


def test_missing_ids_file_is_a_clear_error(workspace) -> None:
    result = workspace.run("load", "--ids-file", "nope.txt", "--db", str(workspace.db_path))
    assert result.returncode == 1
    assert "cannot read --ids-file nope.txt" in result.stderr


@pytest.mark.parametrize("layer", ["flag", "env", "files"])
def test_settings_precedence(simulator_factory, workspace, layer: str) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    dlt_dir = workspace.root / ".dlt"
    dlt_dir.mkdir()
    (dlt_dir / "config.toml").write_text(
        '[sources.eachlabs]\nbase_url = "http://127.0.0.1:9/file-is-wrong"\n', encoding="utf-8"
    )
    env = {"SOURCES__EACHLABS__API_KEY": simulator.api_key}
    if layer == "files":  # nothing in flags or the environment: both files are read
        env = {}
        (dlt_dir / "config.toml").write_text(
            f'[sources.eachlabs]\nbase_url = "{simulator.base_url}"\n', encoding="utf-8"
        )
        (dlt_dir / "secrets.toml").write_text(
            f'[sources.eachlabs]\napi_key = "{simulator.api_key}"\n', encoding="utf-8"
        )
        args = ["load", "e", "--db", str(workspace.db_path)]
    elif layer == "flag":
        env["SOURCES__EACHLABS__BASE_URL"] = "http://127.0.0.1:9/env-is-wrong"
        args = ["load", "e", "--db", str(workspace.db_path), "--base-url", simulator.base_url]
    else:
        env["SOURCES__EACHLABS__BASE_URL"] = simulator.base_url
        args = ["load", "e", "--db", str(workspace.db_path)]
    result = workspace.run(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert workspace.query("select execution_id from eachlabs.executions") == [("e",)]


def test_api_key_never_leaks(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=30, seed=3, api_key="sk-leak-canary-7f3a9c")
    outputs = []
    for args in (["-v"], []):
        env = {"SOURCES__EACHLABS__API_KEY": simulator.api_key}
        # In its own process: nothing the process writes, logging included, may hold the key.
        result = workspace.run_process(
            *args, "load", *simulator.execution_ids, "missing", "../bad",
            "--db", str(workspace.db_path), "--base-url", simulator.base_url, env=env,
        )  # fmt: skip
        outputs.append(result.stdout + result.stderr)
    assert all("sk-leak-canary" not in text for text in outputs)
    assert workspace.db_path.read_bytes().find(b"sk-leak-canary") == -1
    stored = [p for p in workspace.dlt_dir.rglob("*") if p.is_file()]
    assert stored, "dlt's working directory should hold the pipeline state"
    for path in stored:
        assert b"sk-leak-canary" not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["load", "x", "--concurrency", "abc"], "invalid int value"),
        (["load", "x", "--bogus"], "unrecognized arguments"),
        (["load"], "no executions given"),
        (["load", "--bulk-id", "b1", "e1"], "--bulk-id applies to listed workflows"),
        (["load", "--full-listing", "e1"], "--full-listing applies to listed workflows"),
        (["load", "x", "--dataset", "MyData"], "must be lowercase"),
        (["load", "x", "--db", "eachlabs.duckdb"], "ambiguous"),
        (["load", "x", "--concurrency", "0"], "concurrency must be between 1 and 256"),
        (["load", "x", "--base-url", "localhost:8080"], "is not an http(s) URL"),
    ],
)
def test_bad_usage_exits_1_with_a_clear_message(workspace, args: list[str], message: str) -> None:
    result = workspace.run(*args, env={"SOURCES__EACHLABS__API_KEY": "k"})
    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.parametrize("key", [" sk-leak-canary-1", "sk-leak-canary-2\n"])
def test_key_with_stray_whitespace_is_refused_without_leaking(
    simulator_factory, workspace, key: str
) -> None:
    simulator = simulator_factory(executions=2, seed=2)
    result = workspace.load(
        simulator, *simulator.execution_ids, env={"SOURCES__EACHLABS__API_KEY": key}, process=True
    )
    assert result.returncode == 1
    assert "stray whitespace" in result.stderr
    assert "sk-leak-canary" not in result.stdout + result.stderr
    for path in (p for p in workspace.dlt_dir.rglob("*") if p.is_file()):
        assert b"sk-leak-canary" not in path.read_bytes(), path
    assert simulator.request_log == []


def test_interrupted_load_is_finished_by_the_next_run(
    simulator_factory, workspace, monkeypatch
) -> None:
    """A run that fetched but died before loading leaves a dlt package; the next run loads it."""

    simulator = simulator_factory(executions=0)
    for execution_id in ("first", "early", "late"):
        simulator.put_execution(execution(execution_id, {"a": model_step("a", "m", {"x": 1})}))
    assert workspace.load(simulator, "first").returncode == 0
    monkeypatch.setenv("DLT_DATA_DIR", str(workspace.dlt_dir))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name_for(workspace.db_path, "eachlabs"),
        destination=dlt.destinations.duckdb(str(workspace.db_path)),
        dataset_name="eachlabs",
    )
    source = eachlabs_source(["early"], api_key=simulator.api_key, base_url=simulator.base_url)
    pipeline.extract(source)
    pipeline.normalize()  # ...and the process dies here, before `load`
    assert pipeline.has_pending_data
    simulator.clear_request_log()
    result = workspace.load(simulator, "first", "early", "late")
    assert result.returncode == 0, result.stderr
    assert "finished an interrupted earlier load" in result.stdout
    # "early" came from the pending package, so it is final and not fetched again.
    assert [r.path for r in simulator.request_log] == ["/api/v1/executions/late"]
    assert workspace.query("select execution_id from eachlabs.executions order by 1") == [
        ("early",),
        ("first",),
        ("late",),
    ]
    assert workspace.query(
        "select execution_id, param_name from eachlabs.step_params order by 1"
    ) == [("early", "x"), ("first", "x"), ("late", "x")]


def test_one_unreadable_execution_does_not_block_the_others(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("good", {"a": model_step("a", "m")}))
    poison = execution("poison", {"a": model_step("a", "m")}, status="failed")
    poison["error_cause"] = "emoji cut in half \ud83d"
    simulator.put_execution(poison)
    result = workspace.load(simulator, "good", "poison")
    assert result.returncode == 2, result.stderr
    assert workspace.query("select execution_id from eachlabs.executions") == [("good",)]
    [(execution_id, status, error)] = workspace.query(
        "select execution_id, http_status, error from eachlabs.fetch_errors"
    )
    assert (execution_id, status) == ("poison", 200)
    assert "executions.error_cause holds text that is not valid Unicode" in error


def test_ids_file_that_is_not_utf8_is_a_clear_error(workspace) -> None:
    ids_file = workspace.root / "ids.txt"
    ids_file.write_bytes(b"abc\n\xff\xfe-bad\n")
    result = workspace.run("load", "--ids-file", str(ids_file), "--db", str(workspace.db_path))
    assert result.returncode == 1
    assert "is not UTF-8 text (line 2)" in result.stderr


@pytest.mark.parametrize("problem", ["missing-folder", "locked"])
def test_unusable_database_file_is_a_clear_error(workspace, hold_duckdb_file, problem: str) -> None:
    db_path = workspace.root / "nowhere" / "x.duckdb"
    if problem == "locked":
        db_path = workspace.db_path
        hold_duckdb_file(db_path)
    result = workspace.run(
        "load", "x", "--db", str(db_path), env={"SOURCES__EACHLABS__API_KEY": "k"}
    )
    assert result.returncode == (1 if problem == "missing-folder" else 3)
    expected = "does not exist" if problem == "missing-folder" else "one writer at a time"
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_quickly_with_exit_130(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=300, seed=4, faults=FaultConfig(latency_ms=200))
    process = workspace.spawn(
        "load", *simulator.execution_ids, "--db", str(workspace.db_path),
        "--base-url", simulator.base_url, "--concurrency", "2",
        env={"SOURCES__EACHLABS__API_KEY": simulator.api_key},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(simulator.request_log) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted; run the same command again" in stderr
    assert "Traceback" not in stderr


def test_views_command_reapplies_the_views(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    assert workspace.load(simulator, "e").returncode == 0
    with duckdb.connect(str(workspace.db_path)) as connection:
        connection.execute("drop view eachlabs.model_failure_rates")
    result = workspace.run("views", "--db", str(workspace.db_path))
    assert result.returncode == 0, result.stderr
    views = len(discover_views())
    assert f"applied {views} views in schema eachlabs" in result.stdout
    assert workspace.query("select model, completed_steps from eachlabs.model_failure_rates") == [
        ("m", 1)
    ]


def test_views_command_on_a_missing_file_says_what_to_do(workspace) -> None:
    result = workspace.run("views", "--db", str(workspace.root / "none.duckdb"))
    assert result.returncode == 1
    assert "run `eachlabs-pipeline load` first" in result.stderr


def test_demo_loads_generated_executions_and_prints_the_model_table(workspace) -> None:
    db_path = workspace.root / "demo.duckdb"
    result = workspace.run("demo", "--executions", "60", "--seed", "5", "--db", str(db_path))
    assert result.returncode == 0, result.stderr
    assert "requested 60, loaded 60" in result.stdout
    assert "Model performance" in result.stdout and "What got worse:" in result.stdout
    with duckdb.connect(str(db_path), read_only=True) as connection:
        [(executions,)] = connection.execute("select count(*) from eachlabs.executions").fetchall()
        models = connection.execute(
            "select model from eachlabs.model_failure_rates where model is not null"
        ).fetchall()
    assert executions == 60
    assert all(model in result.stdout for (model,) in models)
