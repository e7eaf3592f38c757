"""The spool: the directory the webhook receiver appends bodies to and the loader reads.

The format is a contract with `eachlabs-pipeline load --from-spool DIR` (docs/webhook.md):

- Spool files live directly in DIR. The open one is
  `spool-<UTC %Y%m%dT%H%M%S.%fZ>-<pid>-<seq, 6 digits>.part`; names sort by time. It is
  created with its first body, so its age is the age of its oldest body.
- One body per line, each line ending with b"\\n": the body's bytes as received with every
  b"\\r" and b"\\n" replaced by b" " (in UTF-8 JSON those bytes can only be insignificant
  whitespace, so the line is the same JSON), never re-serialised. A line is written whole:
  one `write` of line and newline under the writer's lock.
- When the open file reaches `rotate_bytes` or its first body is `rotate_seconds` old, or on
  shutdown, it is fsync'ed, closed and renamed to the same name ending `.jsonl` (then the
  directory is fsync'ed). A `.part` that holds nothing is deleted instead.
- The receiver holds `DIR/.receiver.lock` (`flock`, holding its PID) so two receivers never
  share a spool; on start it renames every `*.part` a killed receiver left to `*.jsonl`
  (the loader drops an unterminated last line). `DIR/loaded/` is the loader's: only counted.

Durability: `append` returns only once an fsync of the file covers the body's line (and, for
a file's first body, an fsync of the directory covers the file's name). Group commit: while
one thread fsyncs, others append; the next fsync covers all of them at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.eachlabs.errors import EachlabsError
from pipelines.lock import holder, record_holder
from pipelines.webhook.settings import (
    CLOSED_SUFFIX,
    DEFAULT_ROTATE_BYTES,
    DEFAULT_ROTATE_SECONDS,
    LOADED_DIR_NAME,
    LOCK_FILE_NAME,
    NAME_TIME_FORMAT,
    OPEN_SUFFIX,
    SPOOL_PREFIX,
)

log = logging.getLogger(__name__)

_CR_LF_TO_SPACE = bytes.maketrans(b"\r\n", b"  ")


class SpoolError(EachlabsError):
    """The spool cannot be opened, or a body could not be stored durably (not acknowledged)."""


class SpoolBusyError(SpoolError):
    """Another receiver holds the spool directory."""


def spool_line(body: bytes) -> bytes:
    """The line a body is stored as: CR and LF bytes turned into spaces, then one LF."""
    return body.translate(_CR_LF_TO_SPACE) + b"\n"


def name_time(name: str) -> float | None:
    """The UTC time (epoch seconds) in a spool file's name, or None if it has none."""
    if not name.startswith(SPOOL_PREFIX):
        return None
    stamp = name[len(SPOOL_PREFIX) :].split("-", 1)[0]
    try:
        return datetime.strptime(stamp, NAME_TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@dataclass
class _OpenFile:
    path: Path
    fd: int
    created_at: float
    size: int = 0


class Spool:
    """One writer of a spool directory (see the module docstring for the format).

    Args:
        directory: The spool directory (created if missing).
        rotate_bytes: Close the open file once it holds this many bytes.
        rotate_seconds: Close the open file once its first body is this old.
        clock: Wall-clock seconds, for file names, ages and rotation (tests pass a fake one).
        on_fatal: Called (with the writer's lock held) once fsync or a rename has failed: the
            spool then refuses every body, since nothing more can be promised to be on disk.
    """

    def __init__(
        self,
        directory: Path,
        *,
        rotate_bytes: int = DEFAULT_ROTATE_BYTES,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        clock: Callable[[], float] = time.time,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._clock = clock
        self._on_fatal = on_fatal
        self._cond = threading.Condition()
        self._file: _OpenFile | None = None
        self._written = 0  # tickets: lines written since start
        self._synced = 0  # every ticket up to this one is on disk
        self._is_syncing = False  # a thread is in fsync outside the lock
        self._failure: str | None = None
        self._is_closed = True
        self._seq = 0
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None
        self._stop_rotating = threading.Event()
        self._rotator: threading.Thread | None = None
        #: Bodies acknowledged (durable) since start, fsyncs of spool files, files closed.
        self.accepted = 0
        self.fsyncs = 0
        self.files_closed = 0

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    # --- opening and closing ----------------------------------------------------------

    def open(self) -> list[Path]:
        """Take the spool's lock, rename what a killed receiver left open, start rotating by
        age. Returns the `.jsonl` files recovered from `.part` files.

        Raises:
            SpoolBusyError: another receiver holds the spool (names its PID).
            SpoolError: the directory cannot be created or read.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise SpoolError(f"cannot use the spool {self.directory}: {exc.strerror}") from None
        try:
            self._lock()
            recovered = self._recover_open_files()
        except BaseException:
            self._release()
            raise
        self._is_closed = False
        self._rotator = threading.Thread(
            target=self._rotate_by_age, name="spool-rotator", daemon=True
        )
        self._rotator.start()
        return recovered

    def close(self) -> None:
        """Close the open file (renamed to .jsonl, or deleted when empty), release the lock.
        Bodies waiting for their fsync are covered by the close's fsync."""
        self._stop_rotating.set()
        if self._rotator is not None:
            self._rotator.join()
        with self._cond:
            if not self._is_closed:
                self._is_closed = True  # no new body from here on
                if self._file is not None:
                    self._close_file()
        self._release()

    def __enter__(self) -> Spool:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lock(self) -> None:
        path = self.directory / LOCK_FILE_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SpoolError(f"cannot create the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = holder(fd)
            os.close(fd)
            raise SpoolBusyError(
                f"another webhook receiver (PID {pid}) holds the spool {self.directory} "
                f"(lock file {path}); two receivers never share a spool"
            ) from None
        record_holder(fd)
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _recover_open_files(self) -> list[Path]:
        recovered = []
        for entry in sorted(os.scandir(self.directory), key=lambda e: e.name):
            if not (entry.name.endswith(OPEN_SUFFIX) and entry.is_file(follow_symlinks=False)):
                continue
            path = Path(entry.path)
            target = path.with_name(path.name[: -len(OPEN_SUFFIX)] + CLOSED_SUFFIX)
            try:
                if entry.stat().st_size == 0:
                    path.unlink()
                    continue
                if target.exists():
                    log.warning("left %s as it is: %s already exists", path.name, target.name)
                    continue
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)  # what the killed receiver wrote, on disk before it is named
                finally:
                    os.close(fd)
                os.rename(path, target)
            except OSError as exc:
                raise SpoolError(f"cannot recover {path}: {exc.strerror}") from None
            recovered.append(target)
        self._sync_directory()
        return recovered

    # --- appending ----------------------------------------------------------------------

    def append(self, body: bytes) -> None:
        """Store `body` as one line; return once it is on disk.

        Raises:
            SpoolError: it could not be written or synced, or the spool is closed: the body
                must not be acknowledged.
        """
        line = spool_line(body)
        with self._cond:
            self._check_usable()
            if self._file is None:
                self._file = self._create_file()
            file = self._file
            self._write_line(file, line)
            file.size += len(line)
            self._written += 1
            self._wait_durable(self._written)
            self.accepted += 1
            if self._file is file and file.size >= self.rotate_bytes:
                self._close_file()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise SpoolError(self._failure)
        if self._is_closed:
            raise SpoolError("the spool is closed: the receiver is stopping")

    def _create_file(self) -> _OpenFile:
        created_at = self._clock()
        stamp = datetime.fromtimestamp(created_at, UTC).strftime(NAME_TIME_FORMAT)
        while True:
            self._seq += 1
            path = self.directory / f"{SPOOL_PREFIX}{stamp}-{os.getpid()}-{self._seq:06d}"
            path = path.with_name(path.name + OPEN_SUFFIX)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
            try:
                fd = os.open(path, flags, 0o640)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise SpoolError(f"cannot create {path}: {exc.strerror}") from None
        try:
            self._sync_directory()  # the file's name survives a crash before its first ack
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise SpoolError(f"cannot sync the spool directory: {exc.strerror}") from None
        return _OpenFile(path, fd, created_at)

    def _write_line(self, file: _OpenFile, line: bytes) -> None:
        view, written = memoryview(line), 0
        try:
            while written < len(line):  # one write; the loop only covers a short write
                written += os.write(file.fd, view[written:])
        except OSError as exc:
            try:
                os.ftruncate(file.fd, file.size)  # no partial line before the next one
            except OSError:
                self._fail(f"cannot write to {file.path.name} nor undo a partial line")
            raise SpoolError(f"cannot write to {file.path.name}: {exc.strerror}") from None

    def _wait_durable(self, ticket: int) -> None:
        """Group commit: return once an fsync covers `ticket`; the first thread to find no
        fsync running does one for everything written so far, the others wait for it."""
        while self._synced < ticket:
            if self._failure is not None:
                raise SpoolError(self._failure)
            if self._is_syncing:
                self._cond.wait()
                continue
            assert self._file is not None  # unsynced lines are always in the open file
            target, file = self._written, self._file
            self._is_syncing = True
            self._cond.release()
            error: OSError | None = None
            try:
                os.fsync(file.fd)
            except OSError as exc:
                error = exc
            finally:
                self._cond.acquire()
                self._is_syncing = False
                self._cond.notify_all()
            if error is not None:
                self._fail(f"fsync of {file.path.name} failed: {error.strerror}")
                raise SpoolError(self._failure or "fsync failed")
            self.fsyncs += 1
            self._synced = max(self._synced, target)

    # --- rotating -------------------------------------------------------------------------

    def rotate_if_due(self) -> bool:
        """Close the open file if its first body is `rotate_seconds` old; True if it did."""
        with self._cond:
            file = self._file
            if file is None or self._clock() - file.created_at < self.rotate_seconds:
                return False
            self._close_file()
            return True

    def _rotate_by_age(self) -> None:
        tick_s = min(1.0, max(0.01, self.rotate_seconds / 10))
        while not self._stop_rotating.wait(tick_s):
            try:
                self.rotate_if_due()
            except Exception:  # the next tick tries again; appends are unaffected
                log.exception("rotating the spool file failed")

    def _close_file(self) -> None:
        """fsync, close and rename the open file to .jsonl (delete it if empty). Lock held."""
        while self._is_syncing:
            self._cond.wait()
        file = self._file
        if file is None:
            return
        self._file = None
        if file.size == 0:
            os.close(file.fd)
            file.path.unlink(missing_ok=True)
            return
        target = file.path.with_name(file.path.name[: -len(OPEN_SUFFIX)] + CLOSED_SUFFIX)
        try:
            os.fsync(file.fd)
            self.fsyncs += 1
            if self._failure is None:
                self._synced = self._written  # every line written so far is in a synced file
        except OSError as exc:
            self._fail(f"fsync of {file.path.name} failed: {exc.strerror}")
        finally:
            os.close(file.fd)
        try:
            os.rename(file.path, target)
            self._sync_directory()
        except OSError as exc:
            self._fail(f"cannot rename {file.path.name} to {target.name}: {exc.strerror}")
            return
        self.files_closed += 1
        self._cond.notify_all()

    def _sync_directory(self) -> None:
        assert self._dir_fd is not None
        os.fsync(self._dir_fd)

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
            log.error("spool %s: %s; no further body is accepted", self.directory, message)
            if self._on_fatal is not None:
                self._on_fatal(message)
        self._cond.notify_all()

    @property
    def failure(self) -> str | None:
        """Why the spool refuses bodies (fsync or rename failed), or None."""
        return self._failure

    # --- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The spool's state for `GET /healthz`: what waits to be loaded, what was accepted."""
        with self._cond:  # the writer's state; the folders are listed without holding it
            now = self._clock()
            failing = self._failure is not None
            open_since = self._file.created_at if self._file is not None else None
            open_bytes = self._file.size if self._file is not None else 0
            accepted, fsyncs = self.accepted, self.fsyncs
        waiting_files, waiting_bytes, times = 0, 0, []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(CLOSED_SUFFIX) and entry.is_file(follow_symlinks=False):
                stat = entry.stat()
                waiting_files += 1
                waiting_bytes += stat.st_size
                times.append(name_time(entry.name) or stat.st_mtime)
        if open_since is not None:
            times.append(open_since)
        loaded_files = 0
        loaded = self.directory / LOADED_DIR_NAME
        if loaded.is_dir():
            loaded_files = sum(1 for entry in os.scandir(loaded) if entry.is_file())
        return {
            "status": "failing" if failing else "ok",
            "files_waiting": waiting_files,
            "bytes_waiting": waiting_bytes,
            "open_file_bytes": open_bytes,
            "oldest_waiting_age_s": round(max(0.0, now - min(times)), 3) if times else None,
            "accepted_since_start": accepted,
            "fsyncs_since_start": fsyncs,
            "files_loaded": loaded_files,
        }
