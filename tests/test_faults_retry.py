"""Fault suite, retry policy: the floor under every wait, Retry-After forms, the shared pause.

The client's sleep is replaced by a recorder, so waits are asserted as values, not timed.
"""

from __future__ import annotations

import email.utils
import time

import pytest

from pipelines.eachlabs.answers import retry_after_s as _retry_after_s
from pipelines.eachlabs.client import EachlabsClient
from pipelines.eachlabs.errors import TransientError
from tests.hostile import API_KEY, HostileServer, serve_payload, throttle


def client_for(server: HostileServer, sleeps: list[float], **options) -> EachlabsClient:
    return EachlabsClient(server.base_url, API_KEY, sleep=sleeps.append, **options)


@pytest.mark.parametrize(
    "retry_after",
    ["0", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", "-5", "\u00b2", "1.5", ""],
    ids=["zero", "past-date", "text", "negative", "superscript", "fraction", "empty"],
)
def test_waits_never_fall_below_the_backoff(retry_after: str) -> None:
    with HostileServer({"a": throttle(retry_after, serve_payload("a"), times=3)}) as server:
        sleeps: list[float] = []
        client = client_for(server, sleeps, backoff_base_s=0.4, max_attempts=4)
        payload, attempts = client.fetch_execution("a")
    assert (payload["execution_id"], attempts) == ("a", 4)
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps, start=1):
        ceiling = 0.4 * 2 ** (attempt - 1)
        assert ceiling / 2 <= slept <= ceiling, (attempt, slept)


def test_a_future_http_date_is_waited_for() -> None:
    in_20_s = email.utils.formatdate(time.time() + 20, usegmt=True)
    with HostileServer({"a": throttle(in_20_s, serve_payload("a"), times=1)}) as server:
        sleeps: list[float] = []
        client_for(server, sleeps, max_retry_delay_s=60).fetch_execution("a")
    [slept] = sleeps
    assert 15 <= slept <= 22  # what was asked (less the seconds gone by), plus jitter


@pytest.mark.parametrize("huge", ["3600", "9" * 400])
def test_a_huge_retry_after_ends_at_once(huge: str) -> None:
    with HostileServer({"a": throttle(huge)}) as server:
        sleeps: list[float] = []
        with pytest.raises(TransientError, match="asked to wait") as caught:
            client_for(server, sleeps).fetch_execution("a")
    assert (caught.value.http_status, caught.value.attempts, sleeps) == (429, 1, [])


def test_a_429_pauses_every_worker_not_only_its_own() -> None:
    routes = {"a": throttle("30", serve_payload("a"), times=1), "b": serve_payload("b")}
    with HostileServer(routes) as server:
        sleeps: list[float] = []
        client = client_for(server, sleeps, max_retry_delay_s=60)
        client.fetch_execution("a")
        client.fetch_execution("b")  # another ID, after the API said "wait 30 s"
    own_wait, shared_pause = sleeps
    assert 30 <= own_wait <= 33
    assert 0 < shared_pause <= own_wait  # b waited out the rest of the same pause


def test_retry_after_forms_that_once_crashed() -> None:
    assert _retry_after_s("\u00b2") is None  # str.isdigit() is True, float() fails
    assert _retry_after_s("\u0661") is None  # an Arabic-Indic digit
    assert _retry_after_s("9" * 400) == float("inf")
    assert _retry_after_s("Mon, 99 Foo 99999 99:99:99 GMT") is None
