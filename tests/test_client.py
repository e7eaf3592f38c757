"""The HTTP client against the real simulator: retries, backoff, Retry-After, error kinds."""

from __future__ import annotations

import email.utils
import threading
import time

import pytest
from payloads import status_only_execution as execution

from pipelines.eachlabs.answers import retry_after_s as _retry_after_s
from pipelines.eachlabs.client import EachlabsClient
from pipelines.eachlabs.errors import (
    AuthError,
    ConfigError,
    FetchError,
    NotFoundError,
    PayloadError,
    TransientError,
)
from pipelines.simulator import FaultConfig


@pytest.fixture
def serve(simulator_factory):
    """A simulator serving executions `a`, `b`, `c` with the given scripted faults."""

    def start(**faults):
        simulator = simulator_factory(executions=0, faults=FaultConfig(**faults))
        for execution_id in ("a", "b", "c"):
            simulator.put_execution(execution(execution_id))
        return simulator

    return start


def client_for(simulator, sleeps: list[float] | None = None, **options) -> EachlabsClient:
    recorder = sleeps.append if sleeps is not None else (lambda _s: None)
    return EachlabsClient(simulator.base_url, simulator.api_key, sleep=recorder, **options)


def test_transient_statuses_are_retried_with_backoff_and_retry_after(serve) -> None:
    simulator = serve(fail_ids={"a": [503, 429, 502]}, retry_after_s=2)
    sleeps: list[float] = []
    payload, attempts = client_for(simulator, sleeps, backoff_base_s=0.4).fetch_execution("a")
    assert (payload["execution_id"], attempts) == ("a", 4)
    first, second, third = sleeps
    assert 0.2 <= first <= 0.4  # attempt 1: base, with jitter between half and all of it
    assert 2.0 <= second <= 2.2  # the 429's Retry-After wins, plus up to 10% jitter
    assert 0.8 <= third <= 1.6  # attempt 3: base * 2^2
    assert [r.status for r in simulator.request_log] == [503, 429, 502, 200]


def test_backoff_never_exceeds_max_retry_delay(serve) -> None:
    simulator = serve(fail_ids={"a": [500] * 6})
    sleeps: list[float] = []
    client = client_for(simulator, sleeps, max_attempts=7, backoff_base_s=1, max_retry_delay_s=3)
    client.fetch_execution("a")
    assert len(sleeps) == 6
    assert all(1.5 <= delay <= 3 for delay in sleeps[2:])


def test_gives_up_after_max_attempts(serve) -> None:
    simulator = serve(fail_ids={"a": [503] * 10})
    with pytest.raises(TransientError, match="gave up after 3 attempts: HTTP 503") as caught:
        client_for(simulator, max_attempts=3).fetch_execution("a")
    assert (caught.value.http_status, caught.value.attempts) == (503, 3)
    assert len(simulator.request_log) == 3


def test_retry_after_longer_than_allowed_gives_up_at_once(serve) -> None:
    simulator = serve(fail_ids={"a": [429]}, retry_after_s=120)
    sleeps: list[float] = []
    with pytest.raises(TransientError, match="asked to wait 120 s") as caught:
        client_for(simulator, sleeps, max_retry_delay_s=30).fetch_execution("a")
    assert (caught.value.http_status, caught.value.attempts, sleeps) == (429, 1, [])


@pytest.mark.parametrize("fault", ["drop", "malformed", "slow"])
def test_broken_answers_are_retried(serve, fault: str) -> None:
    simulator = serve(fail_ids={"a": [fault]}, slow_body_ms=300)
    payload, attempts = client_for(simulator, request_timeout_s=5).fetch_execution("a")
    expected_attempts = 1 if fault == "slow" else 2  # a slow body still arrives whole
    assert (payload["execution_id"], attempts) == ("a", expected_attempts)


def test_malformed_bodies_to_the_end_are_a_payload_error(serve) -> None:
    simulator = serve(fail_ids={"a": ["malformed"] * 3})
    with pytest.raises(PayloadError, match="malformed JSON") as caught:
        client_for(simulator, max_attempts=3).fetch_execution("a")
    assert (caught.value.http_status, caught.value.attempts) == (200, 3)


def test_not_found_is_not_retried(serve) -> None:
    simulator = serve()
    with pytest.raises(NotFoundError, match="execution not found") as caught:
        client_for(simulator).fetch_execution("zzz")
    assert (caught.value.http_status, caught.value.attempts) == (404, 1)


def test_forbidden_is_a_per_id_error_not_a_bad_key(serve) -> None:
    simulator = serve(fail_ids={"a": [403]})
    with pytest.raises(FetchError, match="HTTP 403") as caught:
        client_for(simulator).fetch_execution("a")
    assert not isinstance(caught.value, AuthError)
    assert caught.value.attempts == 1


def test_wrong_key_is_an_auth_error_naming_the_setting(serve) -> None:
    simulator = serve()
    client = EachlabsClient(simulator.base_url, "not-the-key", sleep=lambda _s: None)
    with pytest.raises(AuthError, match="SOURCES__EACHLABS__API_KEY") as caught:
        client.fetch_execution("a")
    assert "not-the-key" not in str(caught.value)


def test_fetch_many_stops_at_once_on_a_bad_key(simulator_factory) -> None:
    simulator = simulator_factory(executions=50, seed=5)
    client = EachlabsClient(simulator.base_url, "wrong", sleep=lambda _s: None)
    with pytest.raises(AuthError):
        list(client.fetch_many(simulator.execution_ids, concurrency=4))
    assert len(simulator.request_log) <= 12  # only what was in flight or queued


def test_fetch_many_returns_every_id_once(serve) -> None:
    simulator = serve(fail_ids={"b": [503]})
    results = {r.execution_id: r for r in client_for(simulator).fetch_many(["a", "b", "c", "x"])}
    assert sorted(results) == ["a", "b", "c", "x"]
    assert results["a"].payload == execution("a") and results["a"].error is None
    assert (results["b"].payload, results["b"].attempts) == (execution("b"), 2)
    assert isinstance(results["x"].error, NotFoundError)


def test_a_404_that_is_not_the_apis_means_a_wrong_base_url(serve) -> None:
    simulator = serve()
    wrong = EachlabsClient(simulator.base_url.removesuffix("/v1"), simulator.api_key)
    with pytest.raises(ConfigError, match="check base_url"):
        wrong.fetch_execution("a")


def test_unreachable_server_stops_the_run_early() -> None:
    client = EachlabsClient(
        "http://127.0.0.1:9/api/v1", "key", max_attempts=2, sleep=lambda _s: None
    )
    seen = []
    with pytest.raises(ConfigError, match="cannot reach http://127.0.0.1:9/api/v1"):
        for result in client.fetch_many([f"id-{n}" for n in range(500)], concurrency=4):
            seen.append(result)
    assert len(seen) == 3  # the 4th failure in a row, with no answer ever, ends the run


def test_after_the_server_answered_connection_failures_are_per_id() -> None:
    """A later chunk of a run whose earlier chunks got answers: a network blip fails its IDs
    (exit 2, fetch_errors), it does not end the run as an unreachable API."""
    client = EachlabsClient(
        "http://127.0.0.1:9/api/v1", "key", max_attempts=1, sleep=lambda _s: None
    )
    client.has_reached_server = True  # what the load sets from the chunks before
    results = list(client.fetch_many(["a", "b"], concurrency=4))
    assert sorted(r.execution_id for r in results) == ["a", "b"]
    assert all(r.error is not None for r in results)


def test_abandoning_fetch_many_ends_sleeping_retries_at_once(serve) -> None:
    """The workers sleeping on an hour-long Retry-After end when the fetch is abandoned: only
    a wake-up from the abandon can end them before the test's own time limit."""
    simulator = serve(fail_ids={"a": [429], "b": [429]}, retry_after_s=3600)
    client = EachlabsClient(simulator.base_url, simulator.api_key, max_retry_delay_s=7200)
    results = client.fetch_many(["c", "a", "b"], concurrency=3)
    next(results)  # "c" answers; "a" and "b" now sleep an hour on their Retry-After
    workers = [t for t in threading.enumerate() if t.name.startswith("eachlabs-fetch")]
    assert workers
    results.close()
    client.close()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers), "a retry kept sleeping"


@pytest.mark.parametrize(
    "key",
    ["", " sk-abc", "sk-abc\n", "sk abc", "sk-\u00e9"],
    ids=["empty", "lead", "nl", "sp", "u"],
)
def test_unusable_keys_are_refused_without_echoing_them(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        EachlabsClient("http://127.0.0.1:9/api/v1", key)
    assert key.strip() == "" or key.strip() not in str(caught.value)


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://x/api", "http://", "https://a b/"])
def test_bad_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        EachlabsClient(url, "key")


def test_retry_after_header_forms() -> None:
    assert _retry_after_s("7") == 7.0
    assert _retry_after_s(None) is None
    assert _retry_after_s("soon") is None
    in_ten_s = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= _retry_after_s(in_ten_s) <= 10
    assert _retry_after_s(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_client_repr_hides_the_key() -> None:
    assert "secret-key" not in repr(EachlabsClient("http://127.0.0.1:9/api/v1", "secret-key"))
