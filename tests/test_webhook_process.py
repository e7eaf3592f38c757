"""`eachlabs-pipeline webhook` as its own process: start-up refusals, SIGTERM, SIGKILL and a
restart on the same spool, and the token in nothing it prints."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections import Counter

import requests
from webhook_fixtures import (
    TOKEN,
    expected_line,
    kill_and_resend,
    post_bodies,
    spawn_receiver,
    spool_files,
    spool_lines,
    start_receiver,
    wait_until,
    webhook_body,
)


def test_no_token_exits_1_with_one_line_saying_how_to_make_one(workspace) -> None:
    result = workspace.run("webhook", "--spool", "spool")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("eachlabs-pipeline: no webhook token: make one with `python3 -c")
    assert "secrets.token_urlsafe(32)" in line and "SOURCES__EACHLABS__WEBHOOK_TOKEN" in line
    assert not (workspace.root / "spool").exists()


def test_a_short_token_is_refused_without_being_shown(workspace) -> None:
    env = {"SOURCES__EACHLABS__WEBHOOK_TOKEN": "SHORTSECRET-123"}
    result = workspace.run("webhook", "--spool", "spool", env=env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "the webhook token is shorter than 32 characters" in line
    assert "SHORTSECRET" not in result.stderr + result.stdout


def test_a_second_receiver_on_the_same_spool_exits_1_naming_the_first(workspace) -> None:
    spool = workspace.root / "spool"
    first = start_receiver(workspace, spool)
    second = spawn_receiver(workspace, spool)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 1
    assert err == (
        f"eachlabs-pipeline: another webhook receiver (PID {first.process.pid}) holds the spool "
        f"{spool} (lock file {spool}/.receiver.lock); two receivers never share a spool\n"
    )
    assert first.stop()[0] == 0


def test_the_token_appears_in_no_output_health_or_file_name(workspace) -> None:
    spool = workspace.root / "spool"
    receiver = start_receiver(workspace, spool, "-v", "--max-body-bytes", "1000")
    base, hook = receiver.base_url, receiver.webhook_url
    near_miss = hook[:-1] + ("A" if hook[-1] != "A" else "B")
    answers = [
        requests.post(hook, data=webhook_body(1), timeout=120).status_code,
        requests.post(near_miss, data=webhook_body(2), timeout=120).status_code,
        requests.post(hook + "x", data=webhook_body(3), timeout=120).status_code,
        requests.post(hook.replace("-", "%2D"), data=webhook_body(4), timeout=120).status_code,
        requests.get(hook, timeout=120).status_code,
        requests.post(hook, data=b"[1]", timeout=120).status_code,
        requests.post(hook, data=b'{"execution_id": NaN}', timeout=120).status_code,
    ]
    # percent-encoded, the path still names the token: accepted (waitress decodes it)
    assert answers == [200, 404, 404, 200, 404, 400, 400]
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(f"POST /webhooks/{TOKEN} HTTP/1.1\r\nContent-Length: 5000\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 413 ")
    health = requests.get(f"{base}/healthz", timeout=120).text
    code, stdout, stderr = receiver.stop()
    assert code == 0
    assert "POST /webhooks/*** -> 200" in stderr  # -v logs every request, token masked
    names = [str(path.relative_to(spool)) for path in spool.rglob("*")]
    for text in (stdout, stderr, health, "\n".join(names)):
        assert TOKEN not in text and "DISTINCTIVE" not in text


def test_sigterm_stops_accepting_finishes_the_request_in_flight_and_exits_0(workspace) -> None:
    spool = workspace.root / "spool"
    receiver = start_receiver(workspace, spool)
    host, port = receiver.base_url.removeprefix("http://").split(":")
    body = webhook_body(7)
    idle = socket.create_connection((host, int(port)), timeout=120)
    with requests.Session() as session:  # a keep-alive connection, idle at SIGTERM
        assert session.get(f"{receiver.base_url}/healthz", timeout=120).status_code == 200
    in_flight = socket.create_connection((host, int(port)), timeout=120)
    in_flight.sendall(
        f"POST /webhooks/{TOKEN} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    assert in_flight.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # its headers are read
    receiver.process.send_signal(signal.SIGTERM)

    def refuses() -> bool:  # it stops accepting connections: it is draining
        try:
            socket.create_connection((host, int(port)), timeout=120).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_until(refuses)
    assert idle.recv(100) == b""  # the idle connection was closed
    in_flight.sendall(body)  # the request that was in flight is still answered...
    answer = b""
    while chunk := in_flight.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    code, stdout, _ = receiver.wait()  # ...and then the receiver exits
    assert code == 0
    assert "stopped: 1 bodies accepted" in stdout
    assert spool_files(spool, ".part") == []
    assert spool_lines(spool) == [expected_line(body)]


def test_sigterm_or_ctrl_c_after_concurrent_deliveries_closes_every_file(workspace) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        spool = workspace.root / f"spool-{sig.name}"
        bodies = [webhook_body(i) for i in range(300)]
        receiver = start_receiver(workspace, spool, "--rotate-bytes", "50000")
        assert post_bodies(receiver.webhook_url, bodies) == [200] * 300
        code, stdout, stderr = receiver.stop(sig)
        assert (code, stderr) == (0, "")
        assert "stopped: 300 bodies accepted in " in stdout
        assert spool_files(spool, ".part") == []
        assert len(spool_files(spool, ".jsonl")) > 1
        assert Counter(spool_lines(spool)) == Counter(expected_line(body) for body in bodies)


def test_a_killed_receiver_loses_no_acknowledged_body(workspace) -> None:
    """16 senders, SIGKILL in the middle, a new receiver on the same spool, every body that
    got no 200 sent again: each body acknowledged by the killed receiver is in the spool
    exactly once; each resent one once or twice (the killed receiver may have stored it
    without answering); nothing else, and the killed receiver's open file is renamed."""
    spool = workspace.root / "spool"
    bodies = [webhook_body(i) for i in range(1000)]
    run = kill_and_resend(workspace, spool, bodies)
    assert run.first_exit[0] == -signal.SIGKILL
    assert 1000 // 3 <= len(run.acked_by_first) < 1000 and run.resent
    code, stdout, stderr = run.second_exit
    assert (code, stderr) == (0, "")
    assert run.open_at_kill and f"renamed {len(run.open_at_kill)} file(s)" in stdout
    assert spool_files(spool, ".part") == []
    jsonl = spool_files(spool, ".jsonl")
    assert all(name.replace(".part", ".jsonl") in jsonl for name in run.open_at_kill)
    counts = Counter(spool_lines(spool))
    line_of = [expected_line(body) for body in bodies]
    assert set(counts) == set(line_of)  # every body, nothing else
    assert all(counts[line_of[i]] == 1 for i in run.acked_by_first)
    assert all(counts[line_of[i]] in (1, 2) for i in run.resent)


def test_help_and_version_do_not_import_the_server_library() -> None:
    probe = (
        "import sys\n"
        "from pipelines import cli\n"
        "cli.build_parser()\n"
        "print(sorted(m for m in ('waitress', 'pipelines.webhook.server', 'dlt')"
        " if m in sys.modules))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert completed.stdout.strip() == "[]"


def test_webhook_help_names_every_flag(workspace) -> None:
    result = workspace.run("webhook", "--help")
    assert result.returncode == 0
    for flag in ("--spool", "--host", "--port", "--max-body-bytes", "--rotate-bytes",
                 "--rotate-seconds"):  # fmt: skip
        assert flag in result.stdout
