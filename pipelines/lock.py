"""The load lock: one load per DuckDB file at a time, with the holder's PID on record.

DuckDB's own file lock is not enough: two loads into one file also share dlt's working
directory (pending load packages), and dlt does not lock it, so two runs can corrupt each
other's packages before DuckDB is ever opened. The lock is an OS lock (`flock`) on a file
beside the database, `<db>.lock`, taken before anything else and released by the OS when the
process ends, however it ends (a SIGKILL leaves no stale lock). The file itself stays; it is
never deleted, as deleting a lock file another process is waiting on would split the lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.eachlabs.errors import ConfigError, LockedError

_POLL_S = 0.1


def lock_path_for(db_path: Path) -> Path:
    """`eachlabs_data.duckdb` -> `eachlabs_data.duckdb.lock`, beside the file it guards."""
    return db_path.with_name(db_path.name + ".lock")


@contextmanager
def load_lock(db_path: Path, wait_s: float) -> Iterator[None]:
    """Hold the load lock of `db_path` for the block, waiting up to `wait_s` for it.

    Raises:
        LockedError: another process still held it after `wait_s` seconds; names its PID.
    """
    path = lock_path_for(db_path)
    if not db_path.parent.is_dir():
        raise ConfigError(f"cannot create {db_path}: the folder {db_path.parent} does not exist")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot create the lock file {path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"another load into {db_path} is running (PID {_holder(fd)}, lock "
                        f"file {path}); waited {wait_s:g} s. Nothing was changed: run again "
                        "when it has finished, or raise --lock-wait"
                    ) from None
                time.sleep(_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """The PID the holder wrote into the lock file ('unknown' if it has not yet)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
