"""`load --from-jsonl` and `load --from-spool`: bodies read from files go through the same
normaliser and merge as fetched ones and give the same rows; the latest body of an execution
wins; unreadable lines are recorded; a spool's files move to loaded/ only after the commit.

Every test runs the real CLI into a real DuckDB file; the bodies are the simulator's own
answers (`SimulatorApp.execution_response`), byte for byte what `GET /executions/{id}` sends.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from payloads import one_step_execution
from workspace import Workspace, make_workspace

from pipelines.simulator import Simulator

TABLES = {
    "executions": "execution_id",
    "step_outputs": "execution_id, step_id",
    "step_params": "execution_id, step_id, param_name",
}


def body(simulator: Simulator, execution_id: str) -> bytes:
    return simulator.app.execution_response(execution_id).body


def write_jsonl(path: Path, bodies: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in bodies))
    return path


def table_rows(ws: Workspace, table: str) -> list[tuple[Any, ...]]:
    """Every column but fetched_at (when a row was fetched or read), in key order."""
    columns = [
        row[0]
        for row in ws.query(
            "select column_name from information_schema.columns where table_schema = "
            "'eachlabs' and table_name = ? and column_name not in ('fetched_at', '_dlt_id', "
            "'_dlt_load_id') order by ordinal_position",
            [table],
        )
    ]
    return ws.query(f"select {', '.join(columns)} from eachlabs.{table} order by {TABLES[table]}")


def load_files(ws: Workspace, *args: str, stdin: str | None = None) -> Any:
    """`load` with no API key in the environment: reading files needs none."""
    return ws.run("load", "--db", str(ws.db_path), "--quiet", *args, stdin=stdin)


@pytest.fixture(scope="module")
def bodies_and_ids_load(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Simulator, list[bytes], Workspace]:
    """300 simulated executions (some still running), their bodies, and a load of them by ID."""
    from simulator_fixtures import start_simulator

    simulator = start_simulator(executions=300, running_share=0.1)
    bodies = [body(simulator, execution_id) for execution_id in simulator.execution_ids]
    ws = make_workspace(tmp_path_factory.mktemp("ids"))
    result = ws.load(simulator, *simulator.execution_ids, extra=["--quiet"])
    assert result.returncode == 0, result.stderr
    yield simulator, bodies, ws
    simulator.stop()


@pytest.mark.parametrize("form", ["file", "gzip", "folder", "stdin"])
def test_bodies_from_jsonl_give_the_same_rows_as_the_api_path(
    bodies_and_ids_load: tuple[Simulator, list[bytes], Workspace], tmp_path: Path, form: str
) -> None:
    _, bodies, by_id = bodies_and_ids_load
    ws = make_workspace(tmp_path / "ws")
    if form == "file":
        result = load_files(ws, "--from-jsonl", str(write_jsonl(tmp_path / "b.jsonl", bodies)))
    elif form == "gzip":
        path = tmp_path / "b.jsonl.gz"
        path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in bodies)))
        result = load_files(ws, "--from-jsonl", str(path))
    elif form == "folder":
        folder = tmp_path / "bodies"
        folder.mkdir()
        for n in range(3):
            write_jsonl(folder / f"part-{n}.jsonl", bodies[n::3])
        (folder / "notes.txt").write_text("not bodies")
        result = load_files(ws, "--from-jsonl", str(folder))
    else:
        text = "\n".join(line.decode() for line in bodies)  # no final newline: fine here
        result = load_files(ws, "--from-jsonl", "-", stdin=text)

    assert result.returncode == 0, result.stderr
    assert "read 300 bodies from" in result.stdout and "loaded 300" in result.stdout
    for table in TABLES:
        assert table_rows(ws, table) == table_rows(by_id, table), table


def test_the_latest_body_of_an_execution_wins(workspace: Workspace, tmp_path: Path) -> None:
    def version(execution_id: str, status: str, completed_at: str | None, marker: str) -> bytes:
        payload = one_step_execution(
            execution_id, status=status, completed_at=completed_at, output={"v": marker}
        )
        return json.dumps(payload).encode()

    first = write_jsonl(tmp_path / "a.jsonl", [
        version("e1", "completed", "2025-01-01T00:00:09Z", "e1-final"),
        version("e2", "completed", "2025-01-01T00:00:05Z", "e2-early"),
        version("e3", "completed", "2025-01-01T00:00:05Z", "e3-given-last"),
    ])  # fmt: skip
    second = write_jsonl(tmp_path / "b.jsonl", [
        version("e1", "running", None, "e1-running"),  # later, but not final
        version("e2", "failed", "2025-01-01T00:00:07Z", "e2-later"),
        version("e3", "completed", "2025-01-01T00:00:05Z", "e3-given-first"),  # a tie
    ])  # fmt: skip

    # A tie goes to the later line, files taken in the order given.
    result = load_files(workspace, "--from-jsonl", str(second), "--from-jsonl", str(first))

    assert result.returncode == 0, result.stderr
    assert "(3 duplicates ignored)" in result.stdout
    rows = workspace.query(
        "select execution_id, output->>'$.v' from eachlabs.executions order by 1"
    )
    assert rows == [("e1", "e1-final"), ("e2", "e2-later"), ("e3", "e3-given-last")]


def test_unreadable_lines_are_recorded_and_the_rest_loads(
    workspace: Workspace, tmp_path: Path
) -> None:
    lines = [
        json.dumps(one_step_execution("ok")).encode(),
        b"not json",
        b"[1, 2]",
        b'{"status": "completed"}',
        b'{"execution_id": "../x"}',
        b'{"execution_id": "nan", "output": NaN}',
        b"",
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)

    result = load_files(workspace, "--from-jsonl", str(path))

    assert result.returncode == 2
    assert workspace.query("select execution_id from eachlabs.executions") == [("ok",)]
    errors = workspace.query(
        "select execution_id, http_status, attempts, error from eachlabs.fetch_errors "
        "order by error"
    )
    assert [(e[0], e[1], e[2]) for e in errors] == [(None, None, 0)] * 5
    texts = [e[3] for e in errors]
    assert texts[0].startswith(f"{path} line 2: not JSON")
    assert texts[1] == f"{path} line 3: not a JSON object but list"
    assert texts[2] == f"{path} line 4: no execution_id string"
    assert texts[3].startswith(f"{path} line 5: execution_id '../x' is not")
    assert texts[4].startswith(f"{path} line 6: not JSON")
    assert "rejected 5" in result.stdout


def spool_with(folder: Path, files: dict[str, list[bytes]], tail: dict[str, bytes]) -> Path:
    """A spool folder holding `files` (name -> complete lines), each followed by `tail`'s
    unterminated bytes if any."""
    folder.mkdir()
    for name, lines in files.items():
        write_jsonl(folder / name, lines)
        with (folder / name).open("ab") as handle:
            handle.write(tail.get(name, b""))
    return folder


def test_a_spool_is_loaded_then_moved_and_a_second_run_changes_nothing(
    bodies_and_ids_load: tuple[Simulator, list[bytes], Workspace], tmp_path: Path
) -> None:
    _, bodies, by_id = bodies_and_ids_load
    names = [f"spool-20261202T0700{n:02d}.000000Z-1-{n:06d}.jsonl" for n in range(3)]
    open_name = "spool-20261202T070100.000000Z-1-000003.part"
    spool = spool_with(
        tmp_path / "spool",
        {
            names[0]: bodies[:100],
            names[1]: bodies[100:200] + bodies[:10],
            names[2]: [],
            open_name: bodies[200:],
        },  # fmt: skip
        {open_name: bodies[0][:50]},  # the receiver is writing its next line
    )
    ws = make_workspace(tmp_path / "ws")

    first = load_files(ws, "--from-spool", str(spool))

    assert first.returncode == 0, first.stderr
    assert "read 210 bodies from 3 files" in first.stdout
    assert "moved 3 spool files to loaded/" in first.stdout
    assert sorted(p.name for p in (spool / "loaded").iterdir()) == names
    assert [p.name for p in spool.iterdir() if p.is_file()] == [open_name]
    assert ws.query("select count(*) from eachlabs.executions") == [(200,)]

    # The open file's complete lines, with --include-open; it stays where it is.
    second = load_files(ws, "--from-spool", str(spool), "--include-open")
    assert second.returncode == 0, second.stderr
    assert "read 100 bodies from 1 files" in second.stdout
    assert (spool / open_name).exists()
    for table in TABLES:
        assert table_rows(ws, table) == table_rows(by_id, table), table

    before = {table: table_rows(ws, table) for table in TABLES}
    again = load_files(ws, "--from-spool", str(spool), "--include-open")
    assert again.returncode == 0, again.stderr
    running = sum(json.loads(line)["status"] == "running" for line in bodies[200:])
    assert running  # the running ones are read again, the final ones skipped
    assert f"loaded {running}, skipped as already final {100 - running}," in again.stdout
    assert {table: table_rows(ws, table) for table in TABLES} == before


def test_a_line_cut_short_by_a_kill_is_dropped_with_a_warning(
    workspace: Workspace, tmp_path: Path
) -> None:
    whole = json.dumps(one_step_execution("whole")).encode()
    cut = json.dumps(one_step_execution("cut")).encode()
    name = "spool-20261202T070000.000000Z-1-000000.jsonl"
    spool = spool_with(tmp_path / "spool", {name: [whole]}, {name: cut[:-1]})

    result = workspace.run("load", "--db", str(workspace.db_path), "--from-spool", str(spool))

    assert result.returncode == 0, result.stderr
    assert workspace.query("select execution_id from eachlabs.executions") == [("whole",)]
    warnings = [line for line in result.stderr.splitlines() if "cut short" in line]
    assert len(warnings) == 1 and f"{spool / name}: line 2" in warnings[0]
    assert workspace.query("select count(*) from eachlabs.fetch_errors") == [(0,)]


def test_an_interrupted_spool_load_leaves_the_files_and_the_next_run_finishes(
    bodies_and_ids_load: tuple[Simulator, list[bytes], Workspace],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pipelines.target

    _, bodies, by_id = bodies_and_ids_load
    name = "spool-20261202T070000.000000Z-1-000000.jsonl"
    spool = spool_with(tmp_path / "spool", {name: bodies}, {})
    ws = make_workspace(tmp_path / "ws")
    calls = {"n": 0}
    real_after_chunk = pipelines.target.Checkpoints.after_chunk

    def interrupted_after_two(self: Any, largest_body_bytes: int) -> None:
        real_after_chunk(self, largest_body_bytes)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(pipelines.target.Checkpoints, "after_chunk", interrupted_after_two)
    env = {"SOURCES__EACHLABS__CHUNK_EXECUTIONS": "50"}
    stopped = ws.run("load", "--db", str(ws.db_path), "--from-spool", str(spool), env=env)
    assert stopped.returncode == 130
    assert (spool / name).exists() and not (spool / "loaded").exists()
    assert ws.query("select count(*) from eachlabs.executions") == [(100,)]

    monkeypatch.setattr(pipelines.target.Checkpoints, "after_chunk", real_after_chunk)
    finished = load_files(ws, "--from-spool", str(spool))
    assert finished.returncode == 0, finished.stderr
    assert (spool / "loaded" / name).exists()
    for table in TABLES:
        assert table_rows(ws, table) == table_rows(by_id, table), table


def test_verify_loads_the_apis_answer_and_not_an_id_it_does_not_know(
    simulator_factory: Callable[..., Simulator], workspace: Workspace, tmp_path: Path
) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(one_step_execution("real", output={"v": "from the API"}))
    forged = [
        json.dumps(one_step_execution("real", output={"v": "forged"})).encode(),
        json.dumps(one_step_execution("invented")).encode(),
    ]
    path = write_jsonl(tmp_path / "posted.jsonl", forged)

    result = workspace.load(simulator, extra=["--from-jsonl", str(path), "--verify", "--quiet"])

    assert result.returncode == 0, result.stderr  # a 404 counts as done
    rows = workspace.query("select execution_id, output->>'$.v' from eachlabs.executions")
    assert rows == [("real", "from the API")]
    errors = workspace.query("select execution_id, http_status from eachlabs.fetch_errors")
    assert errors == [("invented", 404)]
    paths = sorted(r.path for r in simulator.request_log)
    assert paths == ["/api/v1/executions/invented", "/api/v1/executions/real"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--include-open", "--from-jsonl", "x.jsonl"], "--include-open applies to --from-spool"),
        (["--verify", "e1"], "--verify applies to --from-jsonl PATH or --from-spool DIR"),
        (["--from-jsonl", "missing.jsonl"], "--from-jsonl missing.jsonl: no such file"),
        (["--from-spool", "missing"], "--from-spool missing: no such folder"),
        (["--from-jsonl", "-", "--ids-file", "-"], "cannot both read stdin"),
    ],
)
def test_bad_file_options_exit_1_with_one_line(
    workspace: Workspace, args: list[str], message: str
) -> None:
    result = workspace.run("load", "--db", str(workspace.db_path), *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert not workspace.db_path.exists()


def test_a_body_only_a_faster_parser_reads_is_recorded_not_a_crash(
    workspace: Workspace, tmp_path: Path
) -> None:
    """The first pass reads lines with orjson (deeper nesting than Python's json takes);
    the body loaded is read as the API path reads it, and one it cannot read is recorded."""
    deep = b'{"execution_id": "deep", "output": ' + b"[" * 1010 + b"]" * 1010 + b"}"
    path = write_jsonl(
        tmp_path / "deep.jsonl", [deep, json.dumps(one_step_execution("ok")).encode()]
    )

    result = load_files(workspace, "--from-jsonl", str(path))

    assert result.returncode == 2, result.stderr
    assert workspace.query("select execution_id from eachlabs.executions") == [("ok",)]
    [(execution_id, error)] = workspace.query(
        "select execution_id, error from eachlabs.fetch_errors"
    )
    assert execution_id == "deep" and "nested too deeply" in error


def test_an_unreadable_line_in_a_file_whose_name_is_not_utf8_is_recorded(
    workspace: Workspace, tmp_path: Path
) -> None:
    """The file's name goes into the fetch_errors row escaped, as a rejected ID does: before,
    its undecodable byte failed the whole load in dlt's extract step."""
    folder = tmp_path / "bodies"
    folder.mkdir()
    odd = os.fsdecode(b"\xff.jsonl")
    write_jsonl(folder / odd, [b"not json", json.dumps(one_step_execution("ok")).encode()])

    result = load_files(workspace, "--from-jsonl", str(folder))

    assert result.returncode == 2, result.stderr
    assert workspace.query("select execution_id from eachlabs.executions") == [("ok",)]
    [(error,)] = workspace.query("select error from eachlabs.fetch_errors")
    problem = "not JSON (JSONDecodeError: Expecting value: line 1 column 1 (char 0))"
    assert error == f"{folder}/\\udcff.jsonl line 1: {problem}"


def test_values_a_fast_json_reader_would_change_load_as_the_api_path_reads_them(
    simulator_factory: Callable[..., Simulator], tmp_path: Path
) -> None:
    """Lines are read with orjson where it gives the same value as json: an integer beyond 64
    bits is read the standard way and loads exactly, as on the API path; a lone surrogate in
    a JSON value is recorded on both paths (DuckDB's JSON type refuses it) and the rest
    loads."""
    simulator = simulator_factory(executions=0)
    big = one_step_execution("big", output={"big": 123456789012345678901234567890, "f": 0.1})
    cut = one_step_execution("cut", output={"s": "smile \ud83d"})
    ok = one_step_execution("ok")
    for payload in (big, cut, ok):
        simulator.put_execution(payload)
    path = write_jsonl(tmp_path / "odd.jsonl", [json.dumps(p).encode() for p in (big, cut, ok)])
    by_id, files = make_workspace(tmp_path / "ids"), make_workspace(tmp_path / "files")

    results = [
        by_id.load(simulator, "big", "cut", "ok", extra=["--quiet"]),
        load_files(files, "--from-jsonl", str(path)),
    ]

    for ws, result in zip((by_id, files), results, strict=True):
        assert result.returncode == 2, result.stderr
        outputs = ws.query(
            "select execution_id, output::varchar from eachlabs.executions order by 1"
        )
        assert outputs == [
            ("big", '{"big":123456789012345678901234567890,"f":0.1}'),
            ("ok", '{"url":"u"}'),
        ]
        [(execution_id, error)] = ws.query("select execution_id, error from eachlabs.fetch_errors")
        assert execution_id == "cut" and "lone surrogate" in error


def spool_name(n: int, suffix: str = ".jsonl") -> str:
    return f"spool-20261202T0700{n:02d}.000000Z-1-{n:06d}{suffix}"


def test_nothing_left_to_read_needs_no_api_key_either(workspace: Workspace, tmp_path: Path) -> None:
    """Every body already stored final (a retried delivery in a new spool file), or an empty
    stdin: the run loads nothing and still needs no key."""
    body = json.dumps(one_step_execution("e1")).encode()
    spool = spool_with(tmp_path / "spool", {spool_name(0): [body]}, {})
    assert load_files(workspace, "--from-spool", str(spool)).returncode == 0
    write_jsonl(spool / spool_name(1), [body])  # delivered again

    again = load_files(workspace, "--from-spool", str(spool))
    empty = load_files(workspace, "--from-jsonl", "-", stdin="")

    assert again.returncode == 0, again.stderr
    assert "loaded 0, skipped as already final 1" in again.stdout
    assert "moved 1 spool files" in again.stdout
    assert empty.returncode == 0, empty.stderr


def test_only_the_spools_own_closed_files_are_moved(workspace: Workspace, tmp_path: Path) -> None:
    export = write_jsonl(tmp_path / "export.jsonl", [json.dumps(one_step_execution("x")).encode()])
    spool = spool_with(
        tmp_path / "spool", {spool_name(0): [json.dumps(one_step_execution("s")).encode()]}, {}
    )

    result = load_files(
        workspace, "--from-spool", str(spool), "--from-jsonl", str(export),
        "--from-jsonl", str(spool / spool_name(0)),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert export.exists()  # the user's file stays where it is
    assert [p.name for p in (spool / "loaded").iterdir()] == [spool_name(0)]
    assert workspace.query("select execution_id from eachlabs.executions order by 1") == [
        ("s",),
        ("x",),
    ]


def test_an_open_file_closed_between_the_two_passes_is_still_read(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.bodies

    body = json.dumps(one_step_execution("p1")).encode()
    spool = spool_with(tmp_path / "spool", {spool_name(0, ".part"): [body]}, {})
    real_scan = pipelines.bodies.scan

    def scan_then_rotate(files: Any) -> Any:
        found = real_scan(files)
        part = spool / spool_name(0, ".part")
        part.rename(part.with_suffix(".jsonl"))  # the receiver rotates it now
        return found

    monkeypatch.setattr(pipelines.bodies, "scan", scan_then_rotate)
    result = workspace.run(
        "load", "--db", str(workspace.db_path), "--from-spool", str(spool), "--include-open"
    )
    assert result.returncode == 0, result.stderr
    assert workspace.query("select execution_id from eachlabs.executions") == [("p1",)]


def test_a_spool_file_stays_when_a_fetch_of_the_run_failed(
    simulator_factory: Callable[..., Simulator], workspace: Workspace, tmp_path: Path
) -> None:
    """An execution both in the spool and given by ID is fetched; if that fetch fails, its
    body was not loaded either: the file must stay for the next run."""
    simulator = simulator_factory(executions=0, faults={"fail_ids": {"both": [503] * 20}})
    simulator.put_execution(one_step_execution("both"))
    spool = spool_with(
        tmp_path / "spool", {spool_name(0): [json.dumps(one_step_execution("both")).encode()]}, {}
    )
    result = workspace.load(
        simulator, "both", extra=["--from-spool", str(spool), "--quiet"],
        env={"SOURCES__EACHLABS__MAX_ATTEMPTS": "2"},
    )  # fmt: skip
    assert result.returncode == 2
    assert (spool / spool_name(0)).exists() and not (spool / "loaded").exists()


def test_refresh_all_never_lets_an_older_running_body_replace_a_final_row(
    workspace: Workspace, tmp_path: Path
) -> None:
    final = json.dumps(one_step_execution("e1", output={"v": "final"})).encode()
    late = json.dumps(
        one_step_execution("e1", status="running", completed_at=None, output={"v": "late"})
    ).encode()
    assert (
        load_files(
            workspace, "--from-jsonl", str(write_jsonl(tmp_path / "a.jsonl", [final]))
        ).returncode
        == 0
    )

    result = load_files(
        workspace, "--from-jsonl", str(write_jsonl(tmp_path / "b.jsonl", [late])), "--refresh-all"
    )

    assert result.returncode == 0, result.stderr
    rows = workspace.query("select status, output->>'$.v' from eachlabs.executions")
    assert rows == [("completed", "final")]


def test_a_bad_webhook_token_does_not_stop_a_load(workspace: Workspace, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [json.dumps(one_step_execution("e1")).encode()])
    result = workspace.run(
        "load", "--db", str(workspace.db_path), "--quiet", "--from-jsonl", str(path),
        env={"SOURCES__EACHLABS__WEBHOOK_TOKEN": "short"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
