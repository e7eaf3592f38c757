"""No 200 before the body's fsync, group commit, and concurrent deliveries: every acknowledged
body in the spool exactly once, as one whole line. The receiver runs in this process, so
`os.fsync` can be watched or held."""

from __future__ import annotations

import os
import re
import socket
import stat
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest
import requests
from webhook_fixtures import (
    TOKEN,
    expected_line,
    post_bodies,
    running_receiver,
    spool_files,
    spool_lines,
    wait_until,
    webhook_body,
)


class HeldFsync:
    """`os.fsync` of spool files (not directories) held until `release()`; records the order
    of events and the fsyncs made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._real = os.fsync
        self.entered = threading.Event()
        self._released = threading.Event()
        self.events: list[str] = []
        self.file_fsyncs = 0
        monkeypatch.setattr(os, "fsync", self._fsync)

    def _fsync(self, fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            self.events.append("fsync entered")
            self.entered.set()
            self._released.wait(120)
            self._real(fd)
            self.file_fsyncs += 1
            self.events.append("fsync returned")
        else:
            self._real(fd)

    def release(self) -> None:
        self._released.set()


def test_no_200_until_the_fsync_returns_and_one_fsync_covers_what_waited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    bodies = [webhook_body(i) for i in range(6)]
    held = HeldFsync(monkeypatch)
    with running_receiver(spool) as receiver, ThreadPoolExecutor(6) as pool:
        url = f"{receiver.base_url}/webhooks/{TOKEN}"

        def send(index: int) -> int:
            status = requests.post(url, data=bodies[index], timeout=120).status_code
            held.events.append(f"answered {index}")
            return status

        first = pool.submit(send, 0)
        assert held.entered.wait(120)
        [part] = spool_files(spool, ".part")
        assert (spool / part).read_bytes() == expected_line(bodies[0]) + b"\n"  # written...
        others = [pool.submit(send, index) for index in range(1, 6)]
        while len(spool_lines(spool)) < 6:  # the others are written while the fsync is held
            threading.Event().wait(0.01)
        done, _ = wait([first, *others], timeout=0.5)
        assert not done  # ...but nobody is answered while the fsync has not returned
        assert held.events == ["fsync entered"]
        held.release()
        assert [future.result(120) for future in [first, *others]] == [200] * 6
        # the first fsync covered body 0; bodies 1-5 waited together for one more
        assert held.file_fsyncs == 2
        fsyncs = [event for event in held.events if event.startswith("fsync")]
        assert fsyncs == ["fsync entered", "fsync returned"] * 2
        returned = [i for i, event in enumerate(held.events) if event == "fsync returned"]
        assert held.events.index("answered 0") > returned[0]
        assert all(held.events.index(f"answered {i}") > returned[1] for i in range(1, 6))
        assert receiver.spool.health()["accepted_since_start"] == 6
    assert sorted(spool_lines(spool)) == sorted(expected_line(body) for body in bodies)


def test_an_fsync_failure_refuses_the_body_and_stops_the_receiver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with running_receiver(tmp_path / "spool") as receiver:
        answer = requests.post(
            f"{receiver.base_url}/webhooks/{TOKEN}", data=webhook_body(1), timeout=120
        )
        assert answer.status_code == 503
        failure = receiver.spool.failure
        assert re.fullmatch(r"fsync of spool-\S+\.part failed: Input/output error", failure)
        # It stops by itself: wait until it stops listening.
        wait_until(lambda: not _is_listening(receiver.port))
    assert receiver.exit_code == 1


def _is_listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=60).close()
    except ConnectionRefusedError:
        return False
    return True


class FsyncCoverage:
    """Wraps `os.fsync`: per spool file (inode), how many bytes the fsyncs that have returned
    cover. `snapshot()` taken as an answer arrives shows what was on disk by then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._real = os.fsync
        self._lock = threading.Lock()
        self.covered: dict[int, int] = {}
        monkeypatch.setattr(os, "fsync", self._fsync)

    def _fsync(self, fd: int) -> None:
        info = os.fstat(fd)
        self._real(fd)
        if stat.S_ISREG(info.st_mode):
            with self._lock:
                self.covered[info.st_ino] = max(self.covered.get(info.st_ino, 0), info.st_size)

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self.covered)


def test_concurrent_deliveries_are_each_stored_once_as_a_whole_line_before_their_200(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    bodies = [webhook_body(i) for i in range(1000)]
    coverage = FsyncCoverage(monkeypatch)
    on_disk_at_answer: dict[int, dict[int, int]] = {}

    def record(index: int, status: int | None) -> None:
        on_disk_at_answer[index] = coverage.snapshot()

    with running_receiver(spool, rotate_bytes=100_000) as receiver:
        statuses = post_bodies(f"{receiver.base_url}/webhooks/{TOKEN}", bodies, on_answer=record)
        health = receiver.spool.health()
    assert statuses == [200] * 1000
    assert health["accepted_since_start"] == 1000
    assert health["fsyncs_since_start"] <= 1000 + len(spool_files(spool, ".jsonl"))
    assert spool_files(spool, ".part") == []
    assert len(spool_files(spool, ".jsonl")) > 3  # rotated by size while bodies arrived

    lines = spool_lines(spool)
    assert Counter(lines) == Counter(expected_line(body) for body in bodies)  # each once
    # where each body's line ends, per file (inode)
    ends: dict[bytes, tuple[int, int]] = {}
    for name in spool_files(spool, ".jsonl"):
        data, inode, offset = (spool / name).read_bytes(), (spool / name).stat().st_ino, 0
        assert data.endswith(b"\n")
        for line in data.split(b"\n")[:-1]:
            offset += len(line) + 1
            ends[line] = (inode, offset)
    for index, body in enumerate(bodies):
        inode, end = ends[expected_line(body)]
        assert on_disk_at_answer[index].get(inode, 0) >= end, f"body {index} answered unsynced"
