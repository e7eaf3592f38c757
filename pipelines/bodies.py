"""Execution bodies from files: JSON Lines (gzip too), folders of them, stdin, and the webhook
receiver's spool.

Each line holds one body, the same JSON object as `GET /executions/{id}` answers. The bodies
go through the same normaliser and merge as fetched ones (`pipelines.load`), so the same body
gives the same rows whichever way it came.

Reading takes two passes over the files. The first finds, for each execution, the one body
that wins: a final status beats `running`, then the later `completed_at`, then the later
line (files in the order given, a folder's and the spool's in name order). The second
streams the winners' lines again, so memory holds one small entry per execution, never the
bodies. A line that is not a JSON object with a safe
`execution_id` is recorded (file and line number) and not loaded. A last line without its
newline in a spool file is a write cut short by a kill: it is dropped with a warning, never
loaded (the receiver answered nobody for it).
"""

from __future__ import annotations

import atexit
import gzip
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from pipelines.eachlabs import settings
from pipelines.eachlabs.answers import strict_json
from pipelines.eachlabs.client import FetchResult
from pipelines.eachlabs.errors import ConfigError, FetchError, InvalidIdError, PayloadError
from pipelines.eachlabs.helpers import error_row
from pipelines.eachlabs.ids import validate_execution_id
from pipelines.eachlabs.normalise import parse_timestamp_us

# The spool's names, shared with the receiver that writes it: closed files (`*.jsonl`), the
# one being written (`*.part`), and where `load --from-spool` moves what it has loaded.
from pipelines.webhook.settings import CLOSED_SUFFIX, OPEN_SUFFIX
from pipelines.webhook.settings import LOADED_DIR_NAME as LOADED_FOLDER

log = logging.getLogger(__name__)

#: File names a folder given to `--from-jsonl` is read for.
JSONL_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.ndjson", "*.ndjson.gz")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class BodyFile:
    """One file of bodies.

    Attributes:
        path: The file (stdin is first copied to a temporary file).
        name: How messages name it (`-` for stdin).
        fetched_at: What `fetched_at` its rows get: the file's last change, so loading the
            same file again writes the same rows.
        is_spool: A spool file: an unterminated last line is a cut-short write, dropped.
    """

    path: Path
    name: str
    fetched_at: float
    is_spool: bool = False


@dataclass
class _Winner:
    rank: tuple[int, int, int, int]  # (is final, completed_at, file, line)


@dataclass
class BodyScan:
    """The first pass: which line of which file wins for each execution, and what was wrong."""

    files: list[BodyFile]
    winners: dict[str, _Winner] = field(default_factory=dict)
    #: fetch_errors rows of lines that cannot be loaded (no execution_id: null).
    errors: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    duplicates: int = 0
    #: Unterminated last lines of spool files, dropped.
    cut_short: int = 0

    def is_final(self, execution_id: str) -> bool:
        """Whether the winning body of the execution has a final status."""
        return self.winners[execution_id].rank[0] == 1

    @property
    def ids(self) -> list[str]:
        """The executions found, in the order their winning lines come."""
        return sorted(self.winners, key=lambda execution_id: self.winners[execution_id].rank[2:])


def jsonl_files(paths: list[str], stdin: IO[bytes] | None = None) -> list[BodyFile]:
    """The files of `--from-jsonl`: each path a file, or a folder (its `JSONL_PATTERNS` files,
    in name order), or `-` for stdin (copied to a temporary file, removed at exit).

    Raises:
        ConfigError: a path does not exist, or a folder holds no such file.
    """
    files: list[BodyFile] = []
    for given in paths:
        if given == "-":
            files.append(_stdin_file(stdin or sys.stdin.buffer))
            continue
        path = Path(given)
        if path.is_dir():
            found = sorted({f for pattern in JSONL_PATTERNS for f in path.glob(pattern)})
            if not found:
                raise ConfigError(
                    f"--from-jsonl {path} is a folder without {', '.join(JSONL_PATTERNS)} files"
                )
            files.extend(_body_file(f) for f in found if f.is_file())
        elif path.is_file():
            files.append(_body_file(path))
        else:
            raise ConfigError(f"--from-jsonl {path}: no such file or folder")
    return files


def spool_files(spool: Path, *, include_open: bool = False) -> list[BodyFile]:
    """The closed files of a webhook spool (and its open ones with `include_open`), oldest
    first (their names start with the time they were opened).

    """
    suffixes = (CLOSED_SUFFIX, OPEN_SUFFIX) if include_open else (CLOSED_SUFFIX,)
    files = []
    for path in sorted(f for f in spool.iterdir() if f.suffix in suffixes):
        try:
            files.append(_body_file(path, is_spool=True))
        except FileNotFoundError:  # a .part closed by the receiver this instant: next run
            continue
    return files


def scan(files: list[BodyFile]) -> BodyScan:
    """The first pass over `files` (see the module docstring)."""
    result = BodyScan(files)
    for file_number, body_file in enumerate(files):
        for line_number, line, is_complete in _lines(body_file):
            result.lines += 1
            if not is_complete and body_file.is_spool:
                result.cut_short += 1
                if body_file.path.suffix == OPEN_SUFFIX:  # the receiver is writing it now
                    log.info("%s: line %d is not whole yet; left for the next run",
                             body_file.name, line_number)  # fmt: skip
                else:
                    log.warning(
                        "%s: line %d is cut short (a write interrupted by a kill); dropped, "
                        "not loaded", body_file.name, line_number,
                    )  # fmt: skip
                continue
            try:
                execution_id, rank = _rank(line, file_number, line_number)
            except PayloadError as exc:
                result.errors.append(_error(body_file, line_number, str(exc)))
                continue
            known = result.winners.get(execution_id)
            if known is not None:
                result.duplicates += 1
                if known.rank > rank:
                    continue
            result.winners[execution_id] = _Winner(rank)
    return result


def results(found: BodyScan, skip: set[str]) -> Iterator[FetchResult]:
    """The second pass: each winning body not in `skip`, as a fetched result would be."""
    wanted = {
        (winner.rank[2], winner.rank[3]): execution_id
        for execution_id, winner in found.winners.items()
        if execution_id not in skip
    }
    wanted_files = {file_number for file_number, _ in wanted}
    for file_number, body_file in enumerate(found.files):
        if file_number not in wanted_files:
            continue
        for line_number, line, _ in _lines(body_file):
            execution_id = wanted.get((file_number, line_number))
            if execution_id is None:
                continue
            try:  # as the API path reads a body
                payload = _standard_json(line)
            except PayloadError as exc:
                error = FetchError(f"{body_file.name} line {line_number}: {exc}", None, 0)
                yield FetchResult(execution_id, None, error, 0, body_file.fetched_at)
                continue
            yield FetchResult(execution_id, payload, None, 0, body_file.fetched_at, len(line))


def move_loaded(files: list[BodyFile], spool: Path) -> int:
    """Move the closed files of `spool` among `files` into `spool/loaded/` (after the run's
    last commit); returns how many were moved. Open files stay (the receiver still writes
    them), and so does every file that is not the spool's own (`--from-jsonl`, stdin)."""
    target = spool / LOADED_FOLDER
    moved = 0
    own = sorted(  # is_spool: listed by spool_files(spool)
        f.path for f in files if f.is_spool and f.path.suffix == CLOSED_SUFFIX
    )
    if own:
        target.mkdir(exist_ok=True)
    for path in own:
        os.replace(path, target / path.name)
        moved += 1
    if moved:
        _fsync_folder(target)
        _fsync_folder(spool)
    return moved


def _rank(line: bytes, file_number: int, line_number: int) -> tuple[str, tuple[int, int, int, int]]:
    """The execution of a line and the rank of its body among that execution's bodies.

    Read with orjson, several times faster than `json`, for the three fields the rank needs
    (it reads them as `json` does); a line orjson refuses (a lone surrogate, nesting past its
    limit) is read with `json`. The body loaded is read again with `json`, as the API path
    reads a body (orjson turns integers beyond 64 bits into floats).
    """
    try:
        body = orjson.loads(line)
    except orjson.JSONDecodeError:
        body = _standard_json(line)
    return _ranked(body, file_number, line_number)


def _standard_json(line: bytes) -> Any:
    try:
        return strict_json(line)
    except RecursionError:
        raise PayloadError("nested too deeply to read (over ~1,000 levels)") from None
    except ValueError as exc:
        raise PayloadError(f"not JSON ({type(exc).__name__}: {str(exc)[:120]})") from None


def _ranked(body: Any, file_number: int, line_number: int) -> tuple[str, tuple[int, int, int, int]]:
    if not isinstance(body, dict):
        raise PayloadError(f"not a JSON object but {type(body).__name__}")
    execution_id = body.get("execution_id")
    if not isinstance(execution_id, str):
        raise PayloadError("no execution_id string")
    try:
        validate_execution_id(execution_id)
    except InvalidIdError:
        raise PayloadError(
            f"execution_id {execution_id[:80]!r} is not 1-200 letters, digits, '-', '_', '.', "
            "'~' (and not only dots); not loaded"
        ) from None
    is_final = body.get("status") in settings.TERMINAL_STATUSES
    try:
        completed_us = parse_timestamp_us(body.get("completed_at"), "completed_at")
    except PayloadError:
        completed_us = None
    rank = (int(is_final), -1 if completed_us is None else completed_us, file_number, line_number)
    return execution_id, rank


def _error(body_file: BodyFile, line_number: int, problem: str) -> dict[str, Any]:
    # A file name may hold bytes that are not UTF-8: error_row keeps them visible, escaped.
    return error_row(
        None, None, f"{body_file.name} line {line_number}: {problem}"[:500], 0, time.time()
    )


def _lines(body_file: BodyFile) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line without its newline, whether it had one) of each non-blank line."""
    with _open(body_file) as stream:
        for number, raw in enumerate(stream, start=1):
            is_complete = raw.endswith(b"\n")
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield number, line, is_complete


@contextmanager
def _open(body_file: BodyFile) -> Iterator[IO[bytes]]:
    path = body_file.path
    if body_file.is_spool and path.suffix == OPEN_SUFFIX and not path.exists():
        path = path.with_suffix(CLOSED_SUFFIX)  # closed by the receiver since the first pass
    try:
        with path.open("rb") as raw:
            is_gzip = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if not is_gzip:
                yield raw
                return
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
    except (OSError, EOFError) as exc:
        raise ConfigError(f"cannot read {body_file.name}: {exc}") from None


def _body_file(path: Path, *, is_spool: bool = False) -> BodyFile:
    return BodyFile(path, str(path), path.stat().st_mtime, is_spool)


def _stdin_file(stdin: IO[bytes]) -> BodyFile:
    """Stdin, copied to a temporary file so that it can be read twice."""
    handle = tempfile.NamedTemporaryFile(prefix="eachlabs-stdin-", suffix=".jsonl", delete=False)
    with handle:
        shutil.copyfileobj(stdin, handle)
    path = Path(handle.name)
    atexit.register(path.unlink, missing_ok=True)
    return BodyFile(path, "-", time.time())


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
