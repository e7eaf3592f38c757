"""HTTP client of the Eachlabs Workflows API: one execution by ID, retried, many concurrently.

Retries are a tenacity policy (the library dlt's own `requests` helper builds on) rather than
that helper, because every failed ID is recorded with how many attempts it took and why, which
the helper does not expose. The policy: a floor of exponential backoff under every wait, a
longer wait when `Retry-After` asks for it, one pause shared by every worker when the API
throttles, and no retry of what cannot get better (4xx, redirects, untrusted certificates).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import requests
import tenacity
import urllib3
from requests.adapters import HTTPAdapter

from pipelines.eachlabs import settings
from pipelines.eachlabs.errors import (
    AuthError,
    ConfigError,
    FetchError,
    NotFoundError,
    PayloadError,
    TransientError,
)
from pipelines.eachlabs.ids import validate_execution_id

logger = logging.getLogger(__name__)

_DELTA_SECONDS = re.compile(r"[0-9]+")
_READ_SIZE = 1 << 16
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII, as an HTTP header value needs
_BASE_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")

_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class FetchResult:
    """The outcome for one execution ID: a payload, or the error that stopped it."""

    execution_id: str
    payload: dict[str, Any] | None
    error: FetchError | None
    attempts: int
    finished_at: float


class EachlabsClient:
    """Fetches executions from `GET {base_url}/executions/{id}`.

    Sessions are per thread and share one connection pool, so concurrent fetches reuse
    connections. The API key lives only in the session headers; it is never logged.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        long_poll_timeout_s: int = settings.DEFAULT_LONG_POLL_TIMEOUT_S,
        request_timeout_s: float = settings.DEFAULT_REQUEST_TIMEOUT_S,
        max_attempts: int = settings.DEFAULT_MAX_ATTEMPTS,
        backoff_base_s: float = settings.DEFAULT_BACKOFF_BASE_S,
        max_retry_delay_s: float = settings.DEFAULT_MAX_RETRY_DELAY_S,
        pool_size: int = settings.DEFAULT_CONCURRENCY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ConfigError(
                "the API key is empty: set SOURCES__EACHLABS__API_KEY or api_key under "
                "[sources.eachlabs] in .dlt/secrets.toml"
            )
        if not _HEADER_SAFE.fullmatch(api_key):
            # Never echo the key: say what is wrong with it, not what it is.
            raise ConfigError(
                "the API key contains spaces, line breaks or other characters an HTTP header "
                "cannot carry; check SOURCES__EACHLABS__API_KEY / .dlt/secrets.toml for stray "
                "whitespace or quotes"
            )
        if not _BASE_URL.fullmatch(base_url):
            raise ConfigError(
                f"base_url {base_url[:100]!r} is not an http(s) URL such as "
                f"{settings.DEFAULT_BASE_URL}; fix --base-url or SOURCES__EACHLABS__BASE_URL"
            )
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.long_poll_timeout_s = long_poll_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.max_retry_delay_s = max_retry_delay_s
        self._sleep = sleep
        self._stop = threading.Event()  # set when fetch_many is abandoned: retries end early
        # Throttling is shared: a 429 pauses every worker, and a Retry-After beyond
        # max_retry_delay_s ends every request not yet sent (see _attempt).
        self._pause_lock = threading.Lock()
        self._paused_until = 0.0
        self._throttled_out: str | None = None
        self._adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"EachlabsClient(base_url={self.base_url!r})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers[settings.API_KEY_HEADER] = self._api_key
            session.headers["Accept"] = "application/json"
            session.mount("http://", self._adapter)
            session.mount("https://", self._adapter)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._adapter.close()

    def fetch_execution(self, execution_id: str) -> tuple[dict[str, Any], int]:
        """Fetch one execution, retrying transient failures.

        Returns:
            The decoded `ExecutionDetails` object and the number of attempts it took.

        Raises:
            AuthError: 401, the key is wrong (never retried).
            NotFoundError: 404.
            TransientError: 429/5xx/network errors that outlived `max_attempts`, or the API
                asked the whole client to wait longer than `max_retry_delay_s`.
            PayloadError: a 200 whose body is not a JSON object for this execution.
            FetchError: any other client error (e.g. 400, 403) or a redirect, never retried.
            ConfigError: the request could not even be built (bad base_url), or the server's
                TLS certificate is not trusted.
        """
        validate_execution_id(execution_id)
        url = f"{self.base_url}/executions/{execution_id}"
        attempts = 0
        has_reached_server = False
        waited_until = 0.0  # the end of the shared pause this ID already waited for

        def attempt() -> dict[str, Any]:
            nonlocal attempts, has_reached_server, waited_until
            waited_until = self._wait_out_pause(waited_until)
            if self._throttled_out is not None:
                raise TransientError(f"not sent: {self._throttled_out}", None, attempts)
            if self._stop.is_set():
                raise TransientError("stopped before it finished", None, attempts)
            attempts += 1
            try:
                return self._attempt(url, execution_id, attempts)
            except _Retryable as exc:
                has_reached_server = has_reached_server or exc.has_reached_server
                raise

        def wait_s(state: tenacity.RetryCallState) -> float:
            """Normal backoff, or longer when the API says so: never less (a floor)."""
            nonlocal waited_until
            delay = self._backoff_s(state.attempt_number)
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after_s is not None:
                # At least what was asked, plus a little jitter so that workers told the
                # same Retry-After do not all come back at once.
                delay = max(delay, exc.retry_after_s * (1 + random.random() * 0.1))
            if isinstance(exc, _Retryable) and exc.is_throttled:
                # The API throttles the client, not this ID: every worker pauses as long.
                waited_until = self._pause_all(delay)
            return delay

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            logger.debug(
                "execution %s attempt %d failed (%s); retrying in %.2fs",
                execution_id, state.attempt_number, exc,
                state.next_action.sleep if state.next_action else 0.0,
            )  # fmt: skip

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait_s,
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=self._wait,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt), attempts
        except _Retryable as exc:
            message = f"gave up after {attempts} attempts: {exc.problem}"
            if exc.is_payload_problem:
                raise PayloadError(message, exc.http_status, attempts) from None
            raise TransientError(
                message, exc.http_status, attempts, has_reached_server=has_reached_server
            ) from None

    def _attempt(self, url: str, execution_id: str, attempt: int) -> dict[str, Any]:
        """One request; returns the payload or raises (`_Retryable` when worth another try)."""
        deadline = time.monotonic() + self.request_timeout_s
        try:
            # Redirects are never followed: requests would resend X-API-Key to any host
            # (it strips only Authorization), even over plain http.
            response = self._session().get(
                url,
                params={"timeout": self.long_poll_timeout_s},
                timeout=(min(10.0, self.request_timeout_s), self.request_timeout_s),
                allow_redirects=False,
                stream=True,
            )
            with response:
                body = _read_body(response, deadline, self.request_timeout_s)
        except requests.exceptions.SSLError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                # Not transient: retrying cannot make an untrusted certificate trusted.
                raise ConfigError(
                    f"the TLS certificate of {self.base_url} could not be verified "
                    f"({_short(_innermost(exc))}). If the server uses a private CA, point "
                    "REQUESTS_CA_BUNDLE at its certificate; nothing was loaded"
                ) from None
            raise _Retryable(f"SSLError: {_short(exc)}", None) from None
        except _NETWORK_ERRORS as exc:
            raise _Retryable(
                f"{type(exc).__name__}: {_short(exc)}",
                None,
                has_reached_server=not _is_connect_failure(exc),
            ) from None
        except requests.RequestException as exc:
            # Invalid URL and the like: a setting is wrong, no retry will help. The
            # message names the exception type only, as its text may quote headers.
            raise ConfigError(
                f"cannot send a request to {self.base_url!r} ({type(exc).__name__}); check base_url"
            ) from None
        status = response.status_code
        if status == 200:
            return _decode_execution(body, execution_id)
        if 300 <= status < 400:
            location = response.headers.get("Location", "")[:200]
            raise FetchError(
                f"HTTP {status}: redirect to {location!r} not followed, so the API key never "
                "leaves base_url; if the API moved, set base_url to its new address",
                http_status=status,
                attempts=attempt,
            )
        if status == 401:
            raise AuthError(
                f"the API answered 401 ({_error_text(body)}): the API key was "
                "refused. Set a valid key in SOURCES__EACHLABS__API_KEY or "
                "[sources.eachlabs] api_key in .dlt/secrets.toml"
            )
        if status == 404:
            message = _error_text(body)
            if "execution" not in message.lower():
                # The API says "execution not found"; any other 404 means the URL
                # is wrong, and would otherwise pass silently as "not found".
                raise ConfigError(
                    f"{self.base_url}/executions/... answered 404 ({message[:100]}), "
                    "not the API's 'execution not found': check base_url "
                    f"(e.g. {settings.DEFAULT_BASE_URL})"
                )
            raise NotFoundError(f"not found: {message}", http_status=404, attempts=attempt)
        if status in settings.RETRY_STATUSES:
            problem = f"HTTP {status}: {_error_text(body)}"
            retry_after = _retry_after_s(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.max_retry_delay_s:
                # The API asks the client to stop for longer than we may wait: this ID and
                # every one not yet sent end now (the next run tries again), no stampede.
                self._throttled_out = (
                    f"the API asked to wait {retry_after:.0f} s, more than "
                    f"max_retry_delay_s={self.max_retry_delay_s:g}"
                )
                raise TransientError(
                    f"{problem}; {self._throttled_out}", http_status=status, attempts=attempt
                )
            raise _Retryable(
                problem, status, retry_after, is_throttled=status == 429 or retry_after is not None
            )
        raise FetchError(
            f"HTTP {status}: {_error_text(body)}", http_status=status, attempts=attempt
        )

    def _pause_all(self, seconds: float) -> float:
        """Hold every worker's next request for `seconds`; returns the pause's end."""
        with self._pause_lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            return self._paused_until

    def _wait_out_pause(self, waited_until: float) -> float:
        """Wait for a shared pause this worker has not waited for yet; returns its end."""
        paused_until = self._paused_until
        if paused_until > waited_until:
            remaining = paused_until - time.monotonic()
            if remaining > 0:
                self._wait(remaining)
        return max(waited_until, paused_until)

    def _wait(self, seconds: float) -> None:
        if self._sleep is time.sleep:
            self._stop.wait(seconds)  # wakes at once when the run is abandoned
        else:
            self._sleep(seconds)

    def _backoff_s(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^(attempt-1), between half and all of it."""
        ceiling = min(self.max_retry_delay_s, self.backoff_base_s * 2 ** (attempt - 1))
        return ceiling / 2 + random.random() * ceiling / 2

    def fetch_many(
        self,
        execution_ids: Iterable[str],
        concurrency: int = settings.DEFAULT_CONCURRENCY,
    ) -> Iterator[FetchResult]:
        """Fetch executions concurrently, yielding results as they finish (not in input order).

        At most `concurrency` requests are in flight and about twice that many IDs are queued,
        so memory stays flat however many IDs there are. An AuthError or ConfigError stops
        everything at once, and so does a server that cannot be reached at all: when the first
        `concurrency` results are all connection failures, ConfigError says so rather than
        spending every ID's retries on it.
        """
        concurrency = max(1, concurrency)
        id_iter = iter(execution_ids)
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eachlabs-fetch")
        pending: set[Future[FetchResult]] = set()
        unreachable_streak = 0
        has_reached_server = False
        self._stop.clear()
        self._throttled_out = None
        try:
            while True:
                while len(pending) < concurrency * 2:
                    execution_id = next(id_iter, None)
                    if execution_id is None:
                        break
                    pending.add(pool.submit(self._fetch_result, execution_id))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    if not _is_unreachable(result):
                        has_reached_server = True  # from now on, failures are per ID
                    elif not has_reached_server:
                        unreachable_streak += 1
                        if unreachable_streak >= concurrency:
                            raise ConfigError(
                                f"cannot reach {self.base_url}: {result.error}. Check base_url "
                                "and the network; nothing was loaded"
                            )
                    yield result
        finally:
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _fetch_result(self, execution_id: str) -> FetchResult:
        try:
            payload, attempts = self.fetch_execution(execution_id)
            return FetchResult(execution_id, payload, None, attempts, time.time())
        except (AuthError, ConfigError):
            raise
        except FetchError as exc:
            return FetchResult(execution_id, None, exc, exc.attempts, time.time())
        except Exception as exc:  # nothing an API sends may stop the whole run
            logger.debug("execution %s: unexpected error", execution_id, exc_info=True)
            error = FetchError(f"unexpected {type(exc).__name__}: {_short(exc)}", None, 0)
            return FetchResult(execution_id, None, error, 0, time.time())


def _is_unreachable(result: FetchResult) -> bool:
    """Every try failed to even connect (refused, unknown host, connect time-out).

    A server that accepted the connection and then hung or dropped it was reached: that is a
    failure of this ID, not a sign that the whole run cannot work.
    """
    error = result.error
    return isinstance(error, TransientError) and not error.has_reached_server


def _is_connect_failure(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def _innermost(exc: BaseException) -> BaseException:
    """The deepest `reason` of a requests/urllib3 error (e.g. the ssl error itself)."""
    current = exc
    for _ in range(10):
        nested = getattr(current.args[0], "reason", None) if current.args else None
        if not isinstance(nested, BaseException):
            nested = current.args[0] if current.args else None
        if not isinstance(nested, BaseException):
            return current
        current = nested
    return current


class _Retryable(Exception):
    """One attempt failed in a way another attempt may fix (internal to the client)."""

    def __init__(
        self,
        problem: str,
        http_status: int | None,
        retry_after_s: float | None = None,
        *,
        is_throttled: bool = False,
        is_payload_problem: bool = False,
        has_reached_server: bool = True,
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.is_throttled = is_throttled
        self.is_payload_problem = is_payload_problem
        self.has_reached_server = has_reached_server


def _read_body(response: requests.Response, deadline: float, timeout_s: float) -> bytes:
    """The whole body, or `_Retryable` when it is not complete by `deadline`.

    A per-read timeout alone lets a server that sends one byte now and then hold a request
    forever; this bounds the whole answer. Each read waits at most until the deadline.
    """
    raw = response.raw
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    chunks: list[bytes] = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Retryable(
                    f"no complete answer within request_timeout_s={timeout_s:g} "
                    f"({sum(map(len, chunks))} bytes of the body arrived)",
                    response.status_code,
                )
            if sock is not None:
                sock.settimeout(remaining)
            chunk = raw.read1(_READ_SIZE, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError):
            problem = f"no complete answer within request_timeout_s={timeout_s:g}"
        else:
            problem = f"connection broke while reading the body ({type(exc).__name__})"
        raise _Retryable(problem, response.status_code) from None


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not valid JSON")


class _NotJson(ValueError):
    """The body uses something JSON does not allow (NaN, Infinity): permanent."""


def _decode_execution(body: bytes, execution_id: str) -> dict[str, Any]:
    """The execution object of a 200 body.

    A cut-short or unreadable body is usually a broken connection and is retried
    (`_Retryable`); a body that is well-formed but unusable as JSON (NaN, nesting deeper than
    Python can read) is a `PayloadError` at once.
    """
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except _NotJson as exc:
        raise PayloadError(f"invalid JSON body: {exc}", http_status=200, attempts=1) from None
    except RecursionError:
        raise PayloadError(
            "JSON body nested too deeply to read (over ~1,000 levels)", 200, 1
        ) from None
    except ValueError as exc:
        raise _Retryable(
            f"malformed JSON body ({exc.__class__.__name__}: {_short(exc)})",
            200,
            is_payload_problem=True,
        ) from None
    if not isinstance(payload, dict):
        raise _Retryable(
            f"expected a JSON object, got {_json_kind(payload)}", 200, is_payload_problem=True
        )
    returned_id = payload.get("execution_id")
    if returned_id != execution_id:
        raise _Retryable(
            f"asked for execution {execution_id!r} but the body is about "
            f"{_short(repr(returned_id))[:100]}",
            200,
            is_payload_problem=True,
        )
    return payload


def _json_kind(value: Any) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _retry_after_s(header: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date).

    None when the header is missing or unreadable: the normal backoff applies then. Only
    ASCII digits count (`str.isdigit()` also accepts e.g. "²", which `float()` refuses).
    """
    if not header:
        return None
    header = header.strip()
    if _DELTA_SECONDS.fullmatch(header):
        return float(header)  # a huge number becomes inf: more than any max_retry_delay_s
    try:
        when = email.utils.parsedate_to_datetime(header)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def _error_text(body: bytes) -> str:
    try:
        decoded = json.loads(body)
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
            return decoded["error"][:300]
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace") or "empty body"


def _short(exc: BaseException) -> str:
    return str(exc)[:300]
