"""Fault suite: the simulator's own small defects and the CLI's dlt-failure message."""

from __future__ import annotations

import socket
import struct
import time

import requests

from pipelines import cli


def test_retry_after_zero_is_sent_as_zero(simulator_factory) -> None:
    simulator = simulator_factory(faults={"rate_limit_every": 1, "retry_after_s": 0})
    response = requests.get(
        f"{simulator.base_url}/executions/{simulator.execution_ids[0]}",
        headers={"X-API-Key": simulator.api_key},
        timeout=10,
    )
    assert (response.status_code, response.headers["Retry-After"]) == (429, "0")


def test_a_client_killed_mid_connection_prints_no_traceback(simulator_factory, capfd) -> None:
    simulator = simulator_factory()
    host, port = simulator.base_url.split("//")[1].split("/")[0].split(":")
    for _ in range(5):
        client = socket.create_connection((host, int(port)))
        client.sendall(b"GET /api/v1/executions/x HTTP/1.1\r\nHost: x\r\n")  # unfinished
        # SO_LINGER 0: close with a reset, as the kernel does for a SIGKILLed client.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    # The server must still answer, and must have said nothing about the resets.
    response = requests.get(f"{simulator.base_url}/executions/x", timeout=10)
    assert response.status_code == 401
    time.sleep(0.2)  # not an assertion: lets the handler threads finish writing, if they would
    assert "Traceback" not in capfd.readouterr().err


class _FakeStepFailed(Exception):
    step = "normalize"


def test_dlt_failure_mentions_the_next_run_only_when_a_load_is_pending() -> None:
    failure = _FakeStepFailed()
    failure.__cause__ = ValueError("boom")
    failure.has_pending_load = False
    assert "next run" not in cli.dlt_failure_message(failure)
    failure.has_pending_load = True
    message = cli.dlt_failure_message(failure)
    assert message.startswith("dlt failed in its normalize step: ValueError: boom.")
    assert "kept and loaded by the next run" in message
