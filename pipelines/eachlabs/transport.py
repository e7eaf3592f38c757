"""What the client sends and what it makes of the outcome: one GET of the API (`Request`), the
result for one execution (`FetchResult`), and how to tell a server that cannot be reached from
one that answered badly. No requests are sent here (`client.py` sends them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3

from pipelines.eachlabs.errors import FetchError, TransientError

#: The API's own 404 answers: "execution not found", "workflow not found" (any case).
EXECUTION_NOT_FOUND = (re.compile("execution", re.IGNORECASE), "execution not found")
WORKFLOW_NOT_FOUND = (
    re.compile(r"\b(work)?flows?\b.*\bnot found", re.IGNORECASE),
    "workflow not found",
)

NETWORK_ERRORS = (
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
    #: Size of the answer's body (what a chunk's byte limit counts).
    body_bytes: int = 0


@dataclass(frozen=True)
class Request:
    """One GET of the API: where, with which query, and how to read its 200 body."""

    url: str
    params: dict[str, Any]
    subject: str  # for log lines: "execution <id>", "workflow <id> (offset n)"
    decode: Callable[[bytes], dict[str, Any]]
    #: How a 404 from the API itself reads (a pattern, and an example for the message): any
    #: other 404 means base_url is wrong.
    not_found: tuple[re.Pattern[str], str]


def is_unreachable(result: FetchResult) -> bool:
    """Every try failed to even connect (refused, unknown host, connect time-out).

    A server that accepted the connection and then hung or dropped it was reached: that is a
    failure of this ID, not a sign that the whole run cannot work.
    """
    error = result.error
    return isinstance(error, TransientError) and not error.has_reached_server


def is_connect_failure(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def innermost(exc: BaseException) -> BaseException:
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
