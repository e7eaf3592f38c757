"""The webhook receiver's answers, its spool files and `GET /healthz`, in this process.

The receiver runs in a thread (`running_receiver`) and is reached over HTTP on 127.0.0.1.
Durability under concurrency is in tests/test_webhook_durability.py; signals, crashes and
what the command prints in tests/test_webhook_process.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from pathlib import Path

import pytest
import requests
from webhook_fixtures import (
    TOKEN,
    expected_line,
    running_receiver,
    spool_files,
    spool_lines,
    wait_until,
)

from pipelines.webhook.spool import Spool, SpoolBusyError

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PID = os.getpid()
BODY = b'{"execution_id": "e-1", "status": "completed"}'


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def post(receiver, body: bytes, path: str | None = None, method: str = "POST") -> requests.Response:
    path = f"/webhooks/{TOKEN}" if path is None else path
    return requests.request(method, receiver.base_url + path, data=body, timeout=60)


def sized_body(index: int, line_bytes: int) -> bytes:
    """A valid body whose spool line (newline included) is exactly `line_bytes` long."""
    head = b'{"execution_id": "s-%04d", "pad": "' % index
    body = head + b"x" * (line_bytes - 1 - len(head) - 2) + b'"}'
    assert len(body) == line_bytes - 1
    return body


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


WRONG_TOKENS = [
    TOKEN[:-1] + "X",  # same length, last character differs
    TOKEN[:-1],  # a prefix
    TOKEN + "a",  # longer
    TOKEN.upper(),
    "",
]
ANSWERS = [
    # (method, path, body, status)
    *[("POST", f"/webhooks/{wrong}", BODY, 404) for wrong in WRONG_TOKENS],
    ("POST", f"/webhooks/{TOKEN}/", BODY, 404),
    ("POST", f"/hooks/{TOKEN}", BODY, 404),
    ("POST", "/", BODY, 404),
    ("POST", "/healthz", BODY, 404),
    ("GET", f"/webhooks/{TOKEN}", b"", 404),
    ("PUT", f"/webhooks/{TOKEN}", BODY, 404),
    ("DELETE", f"/webhooks/{TOKEN}", b"", 404),
    ("POST", f"/webhooks/{TOKEN}", b"", 400),
    ("POST", f"/webhooks/{TOKEN}", b"not json", 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": "e-1"', 400),  # cut short
    ("POST", f"/webhooks/{TOKEN}", b'[{"execution_id": "e-1"}]', 400),
    ("POST", f"/webhooks/{TOKEN}", b'"e-1"', 400),
    ("POST", f"/webhooks/{TOKEN}", b"null", 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"status": "completed"}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": 42}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": null}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": ""}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": "../workflows/x"}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": ".."}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": "a b"}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": "e-1", "cost": NaN}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": "e-1", "cost": Infinity}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": "e-1", "cost": -Infinity}', 400),
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": "e-1", "x": "\xff"}', 400),  # not UTF-8
    ("POST", f"/webhooks/{TOKEN}", b'\xef\xbb\xbf{"execution_id": "e-1"}', 400),  # a BOM
    ("POST", f"/webhooks/{TOKEN}", b'{"execution_id": "e-1", "x": "a\nb"}', 400),  # raw LF
    ("POST", f"/webhooks/{TOKEN}", BODY, 200),
    ("POST", f"/webhooks/{TOKEN}?attempt=2", BODY, 200),
    ("POST", f"/webhooks/{TOKEN}", b'\r\n {"execution_id":"e_2.x~"}\n', 200),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), ANSWERS)
def test_answers_by_method_path_token_and_body(
    tmp_path: Path, method: str, path: str, body: bytes, status: int
) -> None:
    with running_receiver(tmp_path / "spool") as receiver:
        answer = post(receiver, body, path, method)
        assert answer.status_code == status
        if status == 404:  # the same answer whatever was wrong: nothing to learn from it
            assert answer.content == b"Not Found\n"
    assert spool_lines(tmp_path / "spool") == ([expected_line(body)] if status == 200 else [])


def test_a_body_over_the_limit_gets_413_before_it_is_sent(tmp_path: Path) -> None:
    """33 MiB announced by Content-Length against the default 32 MiB: 413 although not one
    byte of the body was sent, so the server decided before reading it."""
    with running_receiver(tmp_path / "spool") as receiver:
        head = (
            f"POST /webhooks/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {33 * 2**20}\r\n\r\n"
        ).encode()
        answer = raw_exchange(receiver.port, head)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert post(receiver, BODY).status_code == 200  # the receiver goes on
    assert spool_lines(tmp_path / "spool") == [expected_line(BODY)]


def test_a_chunked_body_is_cut_off_at_the_limit(tmp_path: Path) -> None:
    """A chunk that announces 33 MiB, sent only up to the limit (chunk framing counts): 413,
    without the rest of the body."""
    limit = 64 * 1024
    with running_receiver(tmp_path / "spool", max_body_bytes=limit) as receiver:
        head = (
            f"POST /webhooks/{TOKEN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunk_line = b"%x\r\n" % (33 * 2**20)
        sent = chunk_line + b" " * (limit + 1 - len(chunk_line))
        answer = raw_exchange(receiver.port, head + sent)
        assert answer.startswith(b"HTTP/1.1 413 ")
    assert spool_lines(tmp_path / "spool") == []


def test_a_body_of_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    limit = 4096
    body = sized_body(1, limit + 1)  # its line is one byte longer: the newline
    assert len(body) == limit
    with running_receiver(tmp_path / "spool", max_body_bytes=limit) as receiver:
        assert post(receiver, body).status_code == 200
        head = (
            f"POST /webhooks/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n\r\n"
        ).encode()
        assert raw_exchange(receiver.port, head).startswith(b"HTTP/1.1 413 ")
    assert spool_lines(tmp_path / "spool") == [body]


def test_line_breaks_become_spaces_and_nothing_else_changes(tmp_path: Path) -> None:
    body = '{\r\n  "execution_id": "e-1",\n\t"text": "caf\\u00e9 \\n ünïcode ✓",\r  "n": 1e400\n}'
    with running_receiver(tmp_path / "spool") as receiver:
        assert post(receiver, body.encode()).status_code == 200
    [line] = spool_lines(tmp_path / "spool")
    assert line == body.replace("\r", " ").replace("\n", " ").encode()
    assert json.loads(line) == json.loads(body)


def test_files_rotate_by_size_and_close_on_stop(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    bodies = [sized_body(i, 100) for i in range(25)]
    with running_receiver(spool, rotate_bytes=1000, clock=FakeClock()) as receiver:
        for body in bodies:
            assert post(receiver, body).status_code == 200
        stamp = "spool-20270115T080000.000000Z"
        assert spool_files(spool, ".jsonl") == [f"{stamp}-{PID}-00000{i}.jsonl" for i in (1, 2)]
        assert spool_files(spool, ".part") == [f"{stamp}-{PID}-000003.part"]
    assert spool_files(spool, ".part") == []
    names = spool_files(spool, ".jsonl")
    assert names == [f"{stamp}-{PID}-00000{i}.jsonl" for i in (1, 2, 3)]
    contents = [(spool / name).read_bytes() for name in names]
    assert contents == [b"\n".join(bodies[i : i + 10]) + b"\n" for i in (0, 10, 20)]


def _wait_for(condition, what: str) -> None:
    """Wait until `what` happened (see `webhook_fixtures.wait_until`)."""
    wait_until(condition)


def test_files_rotate_by_age_and_a_new_file_starts_with_the_next_body(tmp_path: Path) -> None:
    spool, clock = tmp_path / "spool", FakeClock()
    with running_receiver(spool, rotate_seconds=60, clock=clock) as receiver:
        assert post(receiver, BODY).status_code == 200
        first = f"spool-20270115T080000.000000Z-{PID}-000001"
        assert spool_files(spool, ".part") == [f"{first}.part"]
        clock.now = T0 + 59.999
        assert receiver.spool.rotate_if_due() is False
        clock.now = T0 + 60  # the rotation thread closes it on its next tick
        _wait_for(lambda: spool_files(spool, ".jsonl"), "the file to be closed")
        assert spool_files(spool, ".jsonl") == [f"{first}.jsonl"]
        assert spool_files(spool, ".part") == []  # no empty file waits for the next body
        assert (spool / f"{first}.jsonl").read_bytes() == BODY + b"\n"
        clock.now = T0 + 61.5
        assert post(receiver, BODY).status_code == 200
        second = f"spool-20270115T080101.500000Z-{PID}-000002.part"
        assert spool_files(spool, ".part") == [second]
    assert spool_files(spool, ".jsonl") == [f"{first}.jsonl", second.replace(".part", ".jsonl")]


def test_health_reports_the_spool(tmp_path: Path) -> None:
    spool, clock = tmp_path / "spool", FakeClock()
    with running_receiver(spool, rotate_bytes=1000, clock=clock) as receiver:
        empty = requests.get(f"{receiver.base_url}/healthz", timeout=60)
        assert empty.status_code == 200
        assert empty.json() == {
            "status": "ok", "files_waiting": 0, "bytes_waiting": 0, "open_file_bytes": 0,
            "oldest_waiting_age_s": None, "accepted_since_start": 0, "fsyncs_since_start": 0,
            "files_loaded": 0,
        }  # fmt: skip
        for i in range(10):  # 10 lines of 100 bytes: the first file closes at 1000 bytes
            assert post(receiver, sized_body(i, 100)).status_code == 200
        clock.now = T0 + 10
        for i in range(10, 15):
            assert post(receiver, sized_body(i, 100)).status_code == 200
        (spool / "loaded").mkdir()
        for name in ("spool-a.jsonl", "spool-b.jsonl"):
            (spool / "loaded" / name).write_bytes(b"{}\n")
        clock.now = T0 + 25.5
        health = requests.get(f"{receiver.base_url}/healthz", timeout=60)
        assert health.headers["Content-Type"] == "application/json"
        assert health.json() == {
            "status": "ok",
            "files_waiting": 1,
            "bytes_waiting": 1000,
            "open_file_bytes": 500,
            "oldest_waiting_age_s": 25.5,
            "accepted_since_start": 15,
            # one per body (sent one at a time) and one as the first file closed
            "fsyncs_since_start": 16,
            "files_loaded": 2,
        }
        assert TOKEN not in health.text


def test_a_killed_receivers_open_files_are_renamed_on_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    left = spool / "spool-20270115T080000.000000Z-123-000004.part"
    left.write_bytes(b'{"execution_id": "a"}\n{"execution_id": "b"')  # unterminated: kept
    empty = spool / "spool-20270115T080001.000000Z-123-000005.part"
    empty.write_bytes(b"")
    with Spool(spool) as opened:
        assert spool_files(spool, ".part") == []
        assert spool_files(spool, ".jsonl") == [left.name.replace(".part", ".jsonl")]
        assert (spool / left.name.replace(".part", ".jsonl")).read_bytes() == (
            b'{"execution_id": "a"}\n{"execution_id": "b"'
        )
        assert (spool / ".receiver.lock").read_text() == f"{PID}\n"
        with pytest.raises(SpoolBusyError, match=re.escape(f"receiver (PID {PID}) holds")):
            Spool(spool).open()
        assert opened.health()["files_waiting"] == 1
    Spool(spool).open()  # released: another receiver may take it now


def _fail_first_spool_write(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first write to a spool file writes 7 bytes, then fails as on a full disk."""
    real_write, failures = os.write, []

    def full_disk_once(fd: int, data: bytes) -> int:
        if not failures and os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            failures.append(fd)
            real_write(fd, bytes(data)[:7])
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk_once)
    return failures


def test_a_failed_write_is_refused_and_leaves_no_partial_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_receiver(tmp_path / "spool") as receiver:
        failures = _fail_first_spool_write(monkeypatch)
        assert post(receiver, b'{"execution_id": "lost"}').status_code == 503
        assert len(failures) == 1
        assert post(receiver, BODY).status_code == 200
    assert spool_lines(tmp_path / "spool") == [BODY]


def test_a_file_left_empty_is_deleted_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_receiver(tmp_path / "spool") as receiver:
        _fail_first_spool_write(monkeypatch)
        assert post(receiver, b'{"execution_id": "lost"}').status_code == 503
        [part] = spool_files(tmp_path / "spool", ".part")
        assert (tmp_path / "spool" / part).stat().st_size == 0
    assert sorted(os.listdir(tmp_path / "spool")) == [".receiver.lock"]


def test_log_records_never_show_the_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever logs a path or an error holding the token while the receiver runs (waitress
    does, e.g. "Exception while serving <path>"), the record shows `***` instead."""
    caplog.set_level(logging.DEBUG)
    with running_receiver(tmp_path / "spool"):
        logging.getLogger("waitress").error("Exception while serving %s", f"/webhooks/{TOKEN}")
        try:
            raise ValueError(f"bad {TOKEN} here")
        except ValueError:
            logging.getLogger("some.library").exception("failed on /webhooks/%s?x=1", TOKEN)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["Exception while serving /webhooks/***", "failed on /webhooks/***"]
    assert TOKEN not in caplog.text and "*** here" in caplog.text
