"""Reading the API's answers: the whole body within a deadline (and the budget of bytes read at
once), the execution object (or list page) of a 200, `Retry-After`, and the error text of any
other status. No requests are sent here: the client (`client.py`) sends them and decides what
to retry.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import requests
import urllib3

from pipelines.eachlabs.errors import PayloadError

_DELTA_SECONDS = re.compile(r"[0-9]+")
_READ_SIZE = 1 << 16
#: Longest wait of a body for its turn to be read (it is read anyway afterwards).
_MAX_BUDGET_WAIT_S = 30.0


class Retryable(Exception):
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


def read_body(response: requests.Response, deadline: float, timeout_s: float) -> bytes:
    """The whole body, or `Retryable` when it is not complete by `deadline`.

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
                raise Retryable(
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
        raise Retryable(problem, response.status_code) from None


class NotJson(ValueError):
    """The text uses something JSON does not allow (NaN, Infinity): no table can hold it."""


def _refuse_constant(name: str) -> Any:
    raise NotJson(f"{name} is not valid JSON")


def strict_json(text: bytes | str) -> Any:
    """`json.loads` refusing NaN and Infinity (`NotJson`), as every body is read: an API
    answer, a line of a file, a webhook. Too deep a document raises RecursionError."""
    return json.loads(text, parse_constant=_refuse_constant)


def _json_body(body: bytes) -> Any:
    """The decoded JSON of a 200 body (see `decode_execution` for what is retried)."""
    try:
        return strict_json(body)
    except NotJson as exc:
        raise PayloadError(f"invalid JSON body: {exc}") from None
    except RecursionError:
        raise PayloadError("JSON body nested too deeply to read (over ~1,000 levels)") from None
    except ValueError as exc:
        raise Retryable(
            f"malformed JSON body ({exc.__class__.__name__}: {short(exc)})",
            200,
            is_payload_problem=True,
        ) from None


def decode_execution(body: bytes, execution_id: str) -> dict[str, Any]:
    """The execution object of a 200 body.

    A cut-short or unreadable body is usually a broken connection and is retried
    (`Retryable`); a body that is well-formed but unusable as JSON (NaN, nesting deeper than
    Python can read) is a `PayloadError` at once, which `_attempt` records as an
    `UnusableBodyError` with its HTTP status.
    """
    payload = _json_body(body)
    if not isinstance(payload, dict):
        raise Retryable(
            f"expected a JSON object, got {_json_kind(payload)}", 200, is_payload_problem=True
        )
    returned_id = payload.get("execution_id")
    if returned_id != execution_id:
        raise Retryable(
            f"asked for execution {execution_id!r} but the body is about "
            f"{short(repr(returned_id))[:100]}",
            200,
            is_payload_problem=True,
        )
    return payload


def decode_list_page(body: bytes) -> dict[str, Any]:
    """The `ListExecutionsResponse` of a 200 body: an object whose `executions` is a list.

    Read like an execution's body (`decode_execution`); what the page's fields mean is the
    listing's business (`listing.py`), which trusts its items no more than a payload.
    """
    page = _json_body(body)
    if not isinstance(page, dict) or not isinstance(page.get("executions"), list):
        kind = _json_kind(page.get("executions") if isinstance(page, dict) else page)
        raise Retryable(
            f"expected a list page (an object with an 'executions' list), got {kind}",
            200,
            is_payload_problem=True,
        )
    return page


def _json_kind(value: Any) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def retry_after_s(header: str | None) -> float | None:
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


def error_text(body: bytes) -> str:
    try:
        decoded = json.loads(body)
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
            return decoded["error"][:300]
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace") or "empty body"


def short(exc: BaseException) -> str:
    return str(exc)[:300]


def announced_size(response: requests.Response) -> int:
    """The body's size from its Content-Length header (0 when absent or not a number)."""
    try:
        return max(0, int(response.headers.get("Content-Length", "0")))
    except ValueError:
        return 0


class ByteBudget:
    """Bytes that may be read at once: a body waits while others hold the budget, unless it
    would be the only one (a body larger than the whole budget is read alone). A wait ends
    when `stop` is set (the fetch is abandoned) or after `_MAX_BUDGET_WAIT_S` (the body is
    then read anyway), so that no request waits unbounded."""

    def __init__(self, limit: int, stop: threading.Event) -> None:
        self._limit = limit
        self._stop = stop
        self._held = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, size: int) -> Iterator[float]:
        """Hold `size` bytes of the budget; yields how many seconds it waited for them."""
        started = time.monotonic()
        with self._changed:
            while (
                self._held
                and self._held + size > self._limit
                and not self._stop.is_set()
                and time.monotonic() - started < _MAX_BUDGET_WAIT_S
            ):
                self._changed.wait(timeout=0.5)
            self._held += size
        try:
            yield time.monotonic() - started
        finally:
            with self._changed:
                self._held -= size
                self._changed.notify_all()
