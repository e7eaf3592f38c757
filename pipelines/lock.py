"""The load lock: one load per DuckDB file at a time, with the holder's PID on record.

DuckDB's own file lock is not enough: two loads into one file also share dlt's working
directory (pending load packages), and dlt does not lock it, so two runs can corrupt each
other's packages before DuckDB is ever opened. The lock is an OS lock (`flock`) on a file
beside the database, `<db>.lock`, taken before anything else and released by the OS when the
process ends, however it ends (a SIGKILL leaves no stale lock). The file itself stays, except
when the run that created it also removes the database it created (a load that loaded
nothing): it is then deleted while still locked, and a process that was waiting on the deleted
file notices (its file is no longer the one at the path) and locks the new one instead, so
the lock is never split.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.eachlabs.errors import ConfigError, LockedError

_POLL_S = 0.1

log = logging.getLogger(__name__)


def lock_path_for(db_path: Path) -> Path:
    """`eachlabs_data.duckdb` -> `eachlabs_data.duckdb.lock`, beside the file it guards."""
    return db_path.with_name(db_path.name + ".lock")


class HeldLock:
    """The lock while it is held; `remove_when_released` deletes its file on release."""

    def __init__(self, path: Path, created: bool) -> None:
        self.path = path
        #: This process created the lock file (no earlier run left one).
        self.created = created
        self._remove = False

    def remove_when_released(self) -> None:
        self._remove = True


@contextmanager
def load_lock(db_path: Path, wait_s: float) -> Iterator[HeldLock]:
    """Hold the load lock of `db_path` for the block, waiting up to `wait_s` for it.

    Raises:
        LockedError: another process still held it after `wait_s` seconds; names its PID.
    """
    path = lock_path_for(db_path)
    if not db_path.parent.is_dir():
        raise ConfigError(f"cannot create {db_path}: the folder {db_path.parent} does not exist")
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        created = not path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create the lock file {path}: {exc.strerror}") from None
        try:
            _lock(fd, deadline, db_path, path, wait_s)
            if _is_at(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder deleted the file we waited on: lock the one now at the path
    held = HeldLock(path, created)
    try:
        record_holder(fd)
        try:
            yield held
        finally:
            os.ftruncate(fd, 0)
            if held._remove:
                path.unlink(missing_ok=True)  # still locked: nobody holds the lock file alone
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock(fd: int, deadline: float, db_path: Path, path: Path, wait_s: float) -> None:
    has_said_so = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not has_said_so and time.monotonic() < deadline:
                log.warning(
                    "another load into %s is running (PID %s); waiting up to %g s for it "
                    "to finish (--lock-wait)", db_path, holder(fd), wait_s,
                )  # fmt: skip
                has_said_so = True
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"another load into {db_path} is running (PID {holder(fd)}, lock "
                    f"file {path}); waited {wait_s:g} s. Nothing was changed: run again "
                    "when it has finished, or raise --lock-wait"
                ) from None
            time.sleep(_POLL_S)


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file at `path` (not deleted or replaced)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def record_holder(fd: int) -> None:
    """Write this process's PID into the lock file `fd` it holds (for `holder`)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def holder(fd: int) -> str:
    """The PID the holder wrote into the lock file `fd` ('unknown' if it has not yet)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
