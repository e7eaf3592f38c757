"""HTTP client of the Eachlabs Workflows API: one execution by ID, retried, many concurrently.

We keep our own small retry loop rather than dlt's `requests` helper because every failed ID is
recorded with how many attempts it took and why, which the helper does not expose.
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
from typing import Any

import requests
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
            TransientError: 429/5xx/network errors that outlived `max_attempts`.
            PayloadError: a 200 whose body is not a JSON object for this execution.
            FetchError: any other client error (e.g. 400, 403), never retried.
            ConfigError: the request could not even be built (bad base_url).
        """
        validate_execution_id(execution_id)
        url = f"{self.base_url}/executions/{execution_id}"
        params = {"timeout": self.long_poll_timeout_s}
        last_problem = ""
        last_status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            if self._stop.is_set():
                raise TransientError("stopped before it finished", last_status, attempt - 1)
            delay = self._backoff_s(attempt)
            try:
                response = self._session().get(url, params=params, timeout=self.request_timeout_s)
                body = response.content
            except _NETWORK_ERRORS as exc:
                last_status, last_problem = None, f"{type(exc).__name__}: {_short(exc)}"
            except requests.RequestException as exc:
                # Invalid URL and the like: a setting is wrong, no retry will help. The
                # message names the exception type only, as its text may quote headers.
                raise ConfigError(
                    f"cannot send a request to {self.base_url!r} ({type(exc).__name__}); "
                    "check base_url"
                ) from None
            else:
                status = response.status_code
                last_status = status
                if status == 200:
                    try:
                        return _decode_execution(body, execution_id), attempt
                    except PayloadError as exc:
                        # A truncated body is usually a broken connection: worth another try.
                        last_problem = str(exc)
                elif status == 401:
                    raise AuthError(
                        f"the API answered 401 ({_error_text(body)}): the API key was "
                        "refused. Set a valid key in SOURCES__EACHLABS__API_KEY or "
                        "[sources.eachlabs] api_key in .dlt/secrets.toml"
                    )
                elif status == 404:
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
                elif status in settings.RETRY_STATUSES:
                    last_problem = f"HTTP {status}: {_error_text(body)}"
                    retry_after = _retry_after_s(response.headers.get("Retry-After"))
                    if retry_after is not None and retry_after > self.max_retry_delay_s:
                        raise TransientError(
                            f"{last_problem}; the API asked to wait {retry_after:.0f} s, more "
                            f"than max_retry_delay_s={self.max_retry_delay_s:g}",
                            http_status=status,
                            attempts=attempt,
                        )
                    if retry_after is not None:
                        # At least what was asked, plus a little jitter so that workers
                        # told the same Retry-After do not all come back at once.
                        delay = retry_after * (1 + random.random() * 0.1)
                else:
                    raise FetchError(
                        f"HTTP {status}: {_error_text(body)}", http_status=status, attempts=attempt
                    )
            if attempt < self.max_attempts:
                logger.debug(
                    "execution %s attempt %d failed (%s); retrying in %.2fs",
                    execution_id,
                    attempt,
                    last_problem,
                    delay,
                )
                self._wait(delay)
        error_type = PayloadError if last_status == 200 else TransientError
        raise error_type(
            f"gave up after {self.max_attempts} attempts: {last_problem}",
            http_status=last_status,
            attempts=self.max_attempts,
        )

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
        except AuthError:
            raise
        except FetchError as exc:
            return FetchResult(execution_id, None, exc, exc.attempts, time.time())


def _is_unreachable(result: FetchResult) -> bool:
    """Every try ended without an HTTP answer (refused, unknown host, dropped, timed out)."""
    return isinstance(result.error, TransientError) and result.error.http_status is None


def _decode_execution(body: bytes, execution_id: str) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise PayloadError(
            f"malformed JSON body ({exc.__class__.__name__}: {_short(exc)})",
            http_status=200,
            attempts=1,
        ) from None
    if not isinstance(payload, dict):
        raise PayloadError(
            f"expected a JSON object, got {type(payload).__name__}", http_status=200, attempts=1
        )
    returned_id = payload.get("execution_id")
    if returned_id != execution_id:
        raise PayloadError(
            f"asked for execution {execution_id!r} but the body is about {returned_id!r}",
            http_status=200,
            attempts=1,
        )
    return payload


def _retry_after_s(header: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
