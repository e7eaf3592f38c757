"""Reading the API's answers: the whole body within a deadline, the execution object of a 200,
`Retry-After`, and the error text of any other status. No requests are sent here: the client
(`client.py`) sends them and decides what to retry.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from datetime import UTC
from typing import Any

import requests
import urllib3

from pipelines.eachlabs.errors import PayloadError

_DELTA_SECONDS = re.compile(r"[0-9]+")
_READ_SIZE = 1 << 16


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


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not valid JSON")


class _NotJson(ValueError):
    """The body uses something JSON does not allow (NaN, Infinity): permanent."""


def decode_execution(body: bytes, execution_id: str) -> dict[str, Any]:
    """The execution object of a 200 body.

    A cut-short or unreadable body is usually a broken connection and is retried
    (`Retryable`); a body that is well-formed but unusable as JSON (NaN, nesting deeper than
    Python can read) is a `PayloadError` at once, which `_attempt` records as an
    `UnusableBodyError` with its HTTP status.
    """
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except _NotJson as exc:
        raise PayloadError(f"invalid JSON body: {exc}") from None
    except RecursionError:
        raise PayloadError("JSON body nested too deeply to read (over ~1,000 levels)") from None
    except ValueError as exc:
        raise Retryable(
            f"malformed JSON body ({exc.__class__.__name__}: {short(exc)})",
            200,
            is_payload_problem=True,
        ) from None
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
