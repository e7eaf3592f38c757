"""HTTP client of the Eachlabs Workflows API: one execution by ID, retried, many concurrently;
and one page of a workflow's executions list, retried the same way (`listing.py` pages it).

Retries are a tenacity policy (the library dlt's own `requests` helper builds on) rather than
that helper, because every failed ID is recorded with how many attempts it took and why, which
the helper does not expose. The policy: a floor of exponential backoff under every wait, a
longer wait when `Retry-After` asks for it, one pause shared by every worker when the API
throttles, and no retry of what cannot get better (4xx, redirects, untrusted certificates).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import requests
import tenacity
from requests.adapters import HTTPAdapter

from pipelines.eachlabs import settings
from pipelines.eachlabs.answers import (
    ByteBudget,
    Retryable,
    announced_size,
    decode_execution,
    decode_list_page,
    error_text,
    read_body,
    retry_after_s,
    short,
)
from pipelines.eachlabs.errors import (
    AuthError,
    ConfigError,
    FetchError,
    NotFoundError,
    PayloadError,
    TransientError,
    UnusableBodyError,
)
from pipelines.eachlabs.ids import validate_execution_id
from pipelines.eachlabs.transport import (
    EXECUTION_NOT_FOUND,
    NETWORK_ERRORS,
    WORKFLOW_NOT_FOUND,
    FetchResult,
    Request,
    innermost,
    is_connect_failure,
    is_unreachable,
)

logger = logging.getLogger(__name__)


#: About how many bytes of answers the fetcher reads at once, however big each one is.
_IN_FLIGHT_MAX_BYTES = 32 * 1024 * 1024


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
        pool_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **options: Any,
    ) -> None:
        """A client for `base_url` with `api_key`.

        Args:
            pool_size: Connections kept open (default: the `concurrency` setting).
            sleep: How to wait between retries (tests record the waits instead).
            options: Other settings of `EachlabsSettings` by name (long_poll_timeout_s,
                request_timeout_s, max_attempts, backoff_base_s, max_retry_delay_s,
                concurrency); the rest keep the defaults written there.

        Raises:
            ConfigError: the key or base_url is unusable.
            TypeError: an option is not a setting's name.
        """
        unknown = set(options) - set(settings.SETTING_NAMES)
        if unknown:
            raise TypeError(f"unknown EachlabsClient options: {sorted(unknown)}")
        config = dataclasses.replace(
            settings.DEFAULTS, api_key=api_key, base_url=base_url, **options
        )
        config.check(("api_key", "base_url"))
        self.settings = config
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.long_poll_timeout_s = config.long_poll_timeout_s
        self.request_timeout_s = config.request_timeout_s
        self.max_attempts = max(1, config.max_attempts)
        self.backoff_base_s = config.backoff_base_s
        self.max_retry_delay_s = config.max_retry_delay_s
        self._sleep = sleep
        self._stop = threading.Event()  # set when fetch_many is abandoned: retries end early
        #: The server has answered this run (an earlier chunk counts: the load sets it), so
        #: connection failures are per ID, never "cannot reach the API".
        self.has_reached_server = False
        # Throttling is shared: a 429 pauses every worker, and a Retry-After beyond
        # max_retry_delay_s ends every request not yet sent (see _attempt).
        self._pause_lock = threading.Lock()
        self._paused_until = 0.0
        # The largest body seen: fetch_many queues fewer IDs once answers are big, and big
        # bodies are read a few at a time (at most about _IN_FLIGHT_MAX_BYTES at once).
        self._largest_body_bytes = 0
        self._read_budget = ByteBudget(_IN_FLIGHT_MAX_BYTES, self._stop)
        self._throttled_out: str | None = None
        self._adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=pool_size or config.concurrency, max_retries=0
        )
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, config: settings.EachlabsSettings, sleep: Callable[[float], None] = time.sleep
    ) -> EachlabsClient:
        """The client of resolved settings (see `settings.resolve_settings`)."""
        options = {
            name: getattr(config, name)
            for name in settings.SETTING_NAMES
            if name not in ("api_key", "base_url")
        }
        return cls(config.base_url, config.api_key, sleep=sleep, **options)

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
            UnusableBodyError: a 200 whose body is not a JSON object for this execution.
            FetchError: any other client error (e.g. 400, 403) or a redirect, never retried.
            ConfigError: the request could not even be built (bad base_url), or the server's
                TLS certificate is not trusted.
        """
        payload, attempts, _ = self._fetch(execution_id)
        return payload, attempts

    def _fetch(self, execution_id: str) -> tuple[dict[str, Any], int, int]:
        """`fetch_execution`, also returning the size of the answer's body."""
        validate_execution_id(execution_id)
        request = Request(
            url=f"{self.base_url}/executions/{execution_id}",
            params={"timeout": self.long_poll_timeout_s},
            subject=f"execution {execution_id}",
            decode=lambda body: decode_execution(body, execution_id),
            not_found=EXECUTION_NOT_FOUND,
        )
        return self._get(request)

    def fetch_list_page(
        self, workflow_id: str, offset: int, limit: int, bulk_id: str | None = None
    ) -> tuple[dict[str, Any], int]:
        """One page of `GET {base_url}/workflows/{id}/executions`, retried like an execution.

        Returns:
            The decoded `ListExecutionsResponse` (an object whose `executions` is a list) and
            the number of attempts it took.

        Raises:
            InvalidIdError: the workflow or bulk ID is not a single safe path segment.
            NotFoundError: the API does not know the workflow (404).
            Everything `fetch_execution` raises, for the same reasons.
        """
        validate_execution_id(workflow_id, "workflow")
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if bulk_id is not None:
            params["bulk_id"] = validate_execution_id(bulk_id, "bulk")
        request = Request(
            url=f"{self.base_url}/workflows/{workflow_id}/executions",
            params=params,
            subject=f"workflow {workflow_id} (offset {offset})",
            decode=decode_list_page,
            not_found=WORKFLOW_NOT_FOUND,
        )
        page, attempts, _ = self._get(request)
        return page, attempts

    def _get(self, request: Request) -> tuple[dict[str, Any], int, int]:
        """One GET with the retry policy (see the module docstring); returns the decoded
        body, the attempts it took and the size of the body."""
        attempts = 0
        has_reached_server = False
        waited_until = 0.0  # the end of the shared pause this request already waited for

        def attempt() -> tuple[dict[str, Any], int]:
            nonlocal attempts, has_reached_server, waited_until
            waited_until = self._wait_out_pause(waited_until)
            if self._throttled_out is not None:
                raise TransientError(f"not sent: {self._throttled_out}", None, attempts)
            if self._stop.is_set():
                raise TransientError("stopped before it finished", None, attempts)
            attempts += 1
            try:
                answer = self._attempt(request, attempts)
            except Retryable as exc:
                has_reached_server = has_reached_server or exc.has_reached_server
                self.has_reached_server = self.has_reached_server or has_reached_server
                raise
            except FetchError:  # an answer the API gave (404, 403, ...)
                self.has_reached_server = True
                raise
            self.has_reached_server = True
            return answer

        def wait_s(state: tenacity.RetryCallState) -> float:
            """Normal backoff, or longer when the API says so: never less (a floor)."""
            nonlocal waited_until
            delay = self._backoff_s(state.attempt_number)
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, Retryable) and exc.retry_after_s is not None:
                # At least what was asked, plus a little jitter so that workers told the
                # same Retry-After do not all come back at once.
                delay = max(delay, exc.retry_after_s * (1 + random.random() * 0.1))
            if isinstance(exc, Retryable) and exc.is_throttled:
                # The API throttles the client, not this request: every worker pauses as long.
                waited_until = self._pause_all(delay)
            return delay

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            logger.debug(
                "%s attempt %d failed (%s); retrying in %.2fs",
                request.subject, state.attempt_number, exc,
                state.next_action.sleep if state.next_action else 0.0,
            )  # fmt: skip

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait_s,
            retry=tenacity.retry_if_exception_type(Retryable),
            sleep=self._wait,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            payload, body_bytes = retrying(attempt)
            return payload, attempts, body_bytes
        except Retryable as exc:
            message = f"gave up after {attempts} attempts: {exc.problem}"
            if exc.is_payload_problem:
                raise UnusableBodyError(message, exc.http_status, attempts) from None
            raise TransientError(
                message, exc.http_status, attempts, has_reached_server=has_reached_server
            ) from None

    def _attempt(self, request: Request, attempt: int) -> tuple[dict[str, Any], int]:
        """One request; returns the decoded body and its size, or raises (`Retryable` when
        worth another try)."""
        deadline = time.monotonic() + self.request_timeout_s
        try:
            # Redirects are never followed: requests would resend X-API-Key to any host
            # (it strips only Authorization), even over plain http.
            response = self._session().get(
                request.url,
                params=request.params,
                timeout=(min(10.0, self.request_timeout_s), self.request_timeout_s),
                allow_redirects=False,
                stream=True,
            )
            expected_bytes = announced_size(response)
            if expected_bytes == 0 or "Content-Encoding" in response.headers:
                # A compressed or unannounced body may be as big as the largest seen so far.
                expected_bytes = max(expected_bytes, self._largest_body_bytes)
            elif response.status_code == 200:  # the queue shrinks before the body is read
                self._largest_body_bytes = max(self._largest_body_bytes, expected_bytes)
            with response, self._read_budget.hold(expected_bytes) as waited_s:
                # Waiting for its turn to read a big body does not count against the deadline.
                body = read_body(response, deadline + waited_s, self.request_timeout_s)
        except requests.exceptions.SSLError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                # Not transient: retrying cannot make an untrusted certificate trusted.
                raise ConfigError(
                    f"the TLS certificate of {self.base_url} could not be verified "
                    f"({short(innermost(exc))}). If the server uses a private CA, point "
                    "REQUESTS_CA_BUNDLE at its certificate; nothing was loaded"
                ) from None
            raise Retryable(f"SSLError: {short(exc)}", None) from None
        except NETWORK_ERRORS as exc:
            raise Retryable(
                f"{type(exc).__name__}: {short(exc)}",
                None,
                has_reached_server=not is_connect_failure(exc),
            ) from None
        except requests.RequestException as exc:
            # Invalid URL and the like: a setting is wrong, no retry will help. The
            # message names the exception type only, as its text may quote headers.
            raise ConfigError(
                f"cannot send a request to {self.base_url!r} ({type(exc).__name__}); check base_url"
            ) from None
        status = response.status_code
        # Payloads only (an error page says nothing of them); at least 1: an answer came. Two
        # workers may race here and one size be lost: the next answer sets it again.
        size = len(body) if status == 200 else 0
        self._largest_body_bytes = max(self._largest_body_bytes, size, 1)
        if status == 200:
            try:
                return request.decode(body), len(body)
            except PayloadError as exc:  # the fetch layer adds what the body knows nothing of
                # attempts=1 as before this refactor (fetch_errors unchanged), though an
                # earlier attempt may have been retried.
                raise UnusableBodyError(str(exc), http_status=status, attempts=1) from None
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
                f"the API answered 401 ({error_text(body)}): the API key was "
                "refused. Set a valid key in SOURCES__EACHLABS__API_KEY or "
                "[sources.eachlabs] api_key in .dlt/secrets.toml"
            )
        if status == 404:
            message = error_text(body)
            pattern, example = request.not_found
            if not pattern.search(message):
                # The API says "execution not found" ("workflow not found"); any other 404
                # means the URL is wrong, and would otherwise pass silently as "not found".
                path = request.url[len(self.base_url) :].rsplit("/", 1)[0]
                raise ConfigError(
                    f"{self.base_url}{path}/... answered 404 ({message[:100]}), "
                    f"not the API's '{example}': check base_url "
                    f"(e.g. {settings.DEFAULT_BASE_URL})"
                )
            raise NotFoundError(f"not found: {message}", http_status=404, attempts=attempt)
        if status in settings.RETRY_STATUSES:
            problem = f"HTTP {status}: {error_text(body)}"
            retry_after = retry_after_s(response.headers.get("Retry-After"))
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
            raise Retryable(
                problem, status, retry_after, is_throttled=status == 429 or retry_after is not None
            )
        raise FetchError(f"HTTP {status}: {error_text(body)}", http_status=status, attempts=attempt)

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
        concurrency: int | None = None,
    ) -> Iterator[FetchResult]:
        """Fetch executions concurrently, yielding results as they finish (not in input order).

        At most `concurrency` requests are in flight and about twice that many IDs are queued,
        so memory stays flat however many IDs there are; fewer once answers are big, and big
        bodies are read a few at a time, so that it stays flat however large they are too
        (see `_queue_depth` and `ByteBudget`).

        An AuthError or ConfigError stops everything at once, and so does a server that cannot
        be reached at all: when the first `concurrency` results are all connection failures,
        ConfigError says so rather than spending every ID's retries on it; and when every
        request of a smaller run failed to connect, it says the same at the end.
        """
        concurrency = max(1, concurrency or self.settings.concurrency)
        id_iter = iter(execution_ids)
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eachlabs-fetch")
        pending: set[Future[FetchResult]] = set()
        unreachable_streak = 0
        last_error: BaseException | None = None
        self._stop.clear()
        self._throttled_out = None
        try:
            while True:
                while len(pending) < self._queue_depth(concurrency):
                    execution_id = next(id_iter, None)
                    if execution_id is None:
                        break
                    pending.add(pool.submit(self._fetch_result, execution_id))
                if not pending:
                    if unreachable_streak and not self.has_reached_server:
                        raise self.unreachable_error(last_error)
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    if not is_unreachable(result):
                        self.has_reached_server = True  # from now on, failures are per ID
                    elif not self.has_reached_server:
                        unreachable_streak += 1
                        last_error = result.error
                        if unreachable_streak >= concurrency:
                            raise self.unreachable_error(last_error)
                    yield result
        finally:
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def unreachable_error(self, error: BaseException | None) -> ConfigError:
        """The error of a run that could not reach the API at all."""
        return ConfigError(
            f"cannot reach {self.base_url}: {error}. Check base_url and the network; "
            "nothing was loaded"
        )

    def _queue_depth(self, concurrency: int) -> int:
        """How many IDs may be in flight or queued: twice `concurrency` while answers are small,
        fewer once they are big, so that the answers held at once add up to about
        _IN_FLIGHT_MAX_BYTES (three at a time for payloads of 10 MB). Before any answer has
        shown how big they are, `concurrency` (big bodies are then read a few at a time)."""
        if self._largest_body_bytes == 0:
            return concurrency
        fitting = _IN_FLIGHT_MAX_BYTES // self._largest_body_bytes
        return max(1, min(concurrency * 2, fitting))

    def _fetch_result(self, execution_id: str) -> FetchResult:
        try:
            payload, attempts, body_bytes = self._fetch(execution_id)
            return FetchResult(execution_id, payload, None, attempts, time.time(), body_bytes)
        except (AuthError, ConfigError):
            raise
        except FetchError as exc:
            return FetchResult(execution_id, None, exc, exc.attempts, time.time())
        except Exception as exc:  # nothing an API sends may stop the whole run
            logger.debug("execution %s: unexpected error", execution_id, exc_info=True)
            error = FetchError(f"unexpected {type(exc).__name__}: {short(exc)}", None, 0)
            return FetchResult(execution_id, None, error, 0, time.time())
