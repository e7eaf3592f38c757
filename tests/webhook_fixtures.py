"""The webhook receiver in tests: as its own process or in this one, bodies to post, the spool.

- `start_receiver(workspace, spool)` runs the installed `eachlabs-pipeline webhook` on a free
  port and returns a `ReceiverProcess` (its URL, `health()`, `stop()` by SIGTERM, `kill()`).
- `running_receiver(spool)` runs a `WebhookReceiver` in a thread of this process (to patch
  `os.fsync`, or use a fake clock).
- `post_bodies(url, bodies)` POSTs each body once from 16 threads with keep-alive sessions
  and returns each one's status (None: no answer).
- `kill_and_resend(workspace, spool, bodies)`: the crash scenario. 16 senders, SIGKILL of
  the receiver in the middle, a new receiver on the same spool, every body that got no 200
  sent again. Returns which bodies were acknowledged by which receiver, for the checks of
  tests/test_webhook_process.py and of the spool loader's tests.
- `spool_lines(spool)`: the complete lines of every spool file, as the loader reads them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from payloads import one_step_execution
from workspace import Workspace, _cli_path, _default_sigint

from pipelines.webhook.server import WebhookReceiver
from pipelines.webhook.spool import spool_line

#: A token no other text in a run contains: grep every output for it.
TOKEN = "tok-DISTINCTIVE-" + "Zq8wKd3RmT7vXy2bNc5hLp9sGf4jWa6e"
SENDERS = 16
_TIMEOUT_S = 120  # a generous bound, never a speed test


def webhook_body(index: int) -> bytes:
    """A small valid execution `wh-<index>`, pretty-printed: odd ones with CRLF line breaks,
    even ones with LF (the spool keeps each as one line, the breaks turned into spaces)."""
    text = json.dumps(one_step_execution(f"wh-{index:05d}"), indent=1)
    return (text.replace("\n", "\r\n") if index % 2 else text).encode()


def expected_line(body: bytes) -> bytes:
    """The spool line of `body` (without its newline)."""
    return spool_line(body)[:-1]


def spool_lines(spool: Path) -> list[bytes]:
    """Every complete line (without its newline) of the `*.jsonl` and `*.part` files directly
    in `spool`, files in name order; an unterminated last line is dropped, as the loader
    drops it."""
    lines: list[bytes] = []
    for path in sorted(spool.glob("spool-*")):
        if path.suffix in (".jsonl", ".part"):
            lines += path.read_bytes().split(b"\n")[:-1]
    return lines


def post_bodies(
    url: str,
    bodies: Sequence[bytes],
    senders: int = SENDERS,
    on_answer: Callable[[int, int | None], None] | None = None,
) -> list[int | None]:
    """POST every body once to `url` from `senders` threads, each with its own keep-alive
    session; returns each body's HTTP status, None where no answer came (refused, dropped).
    `on_answer(index, status)` is called in the sender's thread as each answer arrives."""
    statuses: list[int | None] = [None] * len(bodies)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()

    def send() -> None:
        with requests.Session() as session:
            session.trust_env = False  # never a proxy from the environment
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                try:
                    status: int | None = session.post(
                        url,
                        data=bodies[index],
                        headers={"Content-Type": "application/json"},
                        timeout=_TIMEOUT_S,
                    ).status_code
                except requests.RequestException:
                    status = None
                statuses[index] = status
                if on_answer is not None:
                    on_answer(index, status)

    with ThreadPoolExecutor(senders) as pool:
        for future in [pool.submit(send) for _ in range(senders)]:
            future.result()
    return statuses


class _Lines:
    """The lines a child process writes to one of its pipes, read by a thread (so a chatty
    `-v` run never blocks on a full pipe)."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._is_closed = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._is_closed = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool]) -> str | None:
        """The first line for which `predicate` holds, waiting for it; None at end of file."""
        with self._changed:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                if self._is_closed:
                    return None
                self._changed.wait(_TIMEOUT_S)

    def text(self) -> str:
        self._thread.join(_TIMEOUT_S)
        return "".join(self.lines)


@dataclass
class ReceiverProcess:
    """A running `eachlabs-pipeline webhook` process."""

    process: subprocess.Popen[str]
    spool: Path
    base_url: str
    stdout: _Lines
    stderr: _Lines
    token: str = TOKEN

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/{self.token}"

    def health(self) -> dict[str, Any]:
        answer = requests.get(f"{self.base_url}/healthz", timeout=_TIMEOUT_S)
        assert answer.status_code == 200
        return answer.json()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Send `sig`, wait for the exit; returns (exit code, stdout, stderr)."""
        self.process.send_signal(sig)
        return self.wait()

    def kill(self) -> tuple[int, str, str]:
        return self.stop(signal.SIGKILL)

    def wait(self) -> tuple[int, str, str]:
        code = self.process.wait(_TIMEOUT_S)
        return code, self.stdout.text(), self.stderr.text()


def spawn_receiver(
    workspace: Workspace, spool: Path, *args: str, token: str | None = TOKEN
) -> subprocess.Popen[str]:
    """`eachlabs-pipeline webhook --spool SPOOL --port 0 *args` as its own process, with the
    token in its environment (none when `token` is None)."""
    env = dict(workspace.env)
    if token is not None:
        env["SOURCES__EACHLABS__WEBHOOK_TOKEN"] = token
    return subprocess.Popen(
        [_cli_path(), "webhook", "--spool", str(spool), "--port", "0", *args],
        cwd=workspace.root, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint,
    )  # fmt: skip


def start_receiver(
    workspace: Workspace, spool: Path, *args: str, token: str = TOKEN
) -> ReceiverProcess:
    """A receiver process on a free port, returned once it listens (its start line)."""
    process = spawn_receiver(workspace, spool, *args, token=token)
    stdout, stderr = _Lines(process.stdout), _Lines(process.stderr)
    ready = stdout.wait_for(lambda line: "receiving webhooks at " in line)
    if ready is None:
        process.wait(_TIMEOUT_S)
        pytest.fail(f"the receiver did not start ({process.returncode}): {stderr.text()}")
    url = ready.split("receiving webhooks at ", 1)[1].split("/webhooks/", 1)[0]
    return ReceiverProcess(process, spool, url, stdout, stderr, token)


@contextmanager
def running_receiver(spool: Path, token: str = TOKEN, **options: Any) -> Iterator[WebhookReceiver]:
    """A `WebhookReceiver` on a free port, serving in a thread of this process; stopped (and
    its spool closed) when the block ends. `options`: WebhookReceiver's keyword arguments."""
    receiver = WebhookReceiver(spool, token, port=0, **options).start()
    thread = threading.Thread(target=receiver.serve, name="webhook-receiver")
    thread.start()
    try:
        yield receiver
    finally:
        receiver.stop()
        thread.join(_TIMEOUT_S)
        assert not thread.is_alive()


@dataclass
class KillScenario:
    """What `kill_and_resend` did: body i was acknowledged by the first receiver (killed
    mid-run) when i is in `acked_by_first`, else sent again to the second and acknowledged."""

    spool: Path
    bodies: list[bytes]
    acked_by_first: set[int]
    resent: list[int]
    #: `.part` files in the spool right after the kill (renamed by the second receiver).
    open_at_kill: list[str]
    #: Each receiver's exit code, stdout and stderr (the first SIGKILLed, the second stopped
    #: by SIGTERM).
    first_exit: tuple[int, str, str]
    second_exit: tuple[int, str, str]


def kill_and_resend(
    workspace: Workspace, spool: Path, bodies: list[bytes], kill_after: int | None = None
) -> KillScenario:
    """16 senders POST `bodies`; once `kill_after` (default a third) got a 200 the receiver is
    SIGKILLed; a new receiver starts on the same spool and every body that got no 200 is
    sent again (each must get 200 then); the second receiver is stopped with SIGTERM.

    A sender that hears a 200 once `kill_after` are in waits for the kill before it sends
    again, so the kill always falls in the middle however the machine schedules the
    threads (the bodies already on their way at that moment are the interesting ones)."""
    kill_after = len(bodies) // 3 if kill_after is None else kill_after
    first = start_receiver(workspace, spool)
    acked, lock, enough = set(), threading.Lock(), threading.Event()
    killed = threading.Event()

    def count(index: int, status: int | None) -> None:
        if status == 200:
            with lock:
                acked.add(index)
                if len(acked) >= kill_after:
                    enough.set()
            if enough.is_set():
                killed.wait(_TIMEOUT_S)

    senders = threading.Thread(
        target=post_bodies, args=(first.webhook_url, bodies), kwargs={"on_answer": count}
    )
    senders.start()
    is_enough = enough.wait(_TIMEOUT_S)
    first_exit = first.kill()
    killed.set()
    open_at_kill = sorted(path.name for path in spool.glob("*.part"))
    senders.join(_TIMEOUT_S)
    assert is_enough and not senders.is_alive()
    acked_by_first = set(acked)
    resent = [index for index in range(len(bodies)) if index not in acked_by_first]
    second = start_receiver(workspace, spool)
    statuses = post_bodies(second.webhook_url, [bodies[index] for index in resent])
    assert statuses == [200] * len(resent)
    second_exit = second.stop()
    return KillScenario(
        spool, bodies, acked_by_first, resent, open_at_kill, first_exit, second_exit
    )


def spool_files(spool: Path, suffix: str) -> list[str]:
    """Names of the files directly in `spool` ending with `suffix`, sorted."""
    return sorted(name for name in os.listdir(spool) if name.endswith(suffix))


def wait_until(condition: Callable[[], Any]) -> None:
    """Poll `condition` until it holds: a wait on an event the test cannot be told of
    directly (a file closed, a port closed). No clock is read: if it never comes, pytest's
    per-test timeout (300 s) fails the test with this frame in the traceback."""
    while not condition():
        time.sleep(0.01)
