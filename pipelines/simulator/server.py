"""The simulator's HTTP server: the two read endpoints of the Eachlabs Workflows API on loopback.

`Simulator` owns a simulated clock, the generated `Dataset`, hand-made payloads, a
`FaultInjector` and a request log, and serves them with the standard library's
`ThreadingHTTPServer` (one thread per connection, so long-polls do not block each other).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pipelines.simulator.faults import FaultConfig, FaultDecision, FaultInjector, corrupt_body
from pipelines.simulator.plans import (
    DEFAULT_RUNNING_SHARE,
    DEFAULT_START_TIME,
    US,
    Dataset,
    ExecutionPlan,
)
from pipelines.simulator.render import render_execution, render_summary

API_PREFIX = "/api/v1"
API_KEY_HEADER = "X-API-Key"
DEFAULT_TIMEOUT_S = 10
MAX_TIMEOUT_S = 30
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
#: Plans kept in memory; older ones are rebuilt on demand (cheap, deterministic).
PLAN_CACHE_SIZE = 16_384

_EXECUTION_PATH = re.compile(rf"^{API_PREFIX}/executions/([^/]+)$")
_LIST_PATH = re.compile(rf"^{API_PREFIX}/workflows/([^/]+)/executions$")
_UNSIGNED_INT = re.compile(r"^[0-9]{1,9}$")
_HAND_MADE_FLOW_NAME = "Hand-made workflow"
_NO_FAULT = FaultDecision()


@dataclass
class SimulatorConfig:
    """Settings of one simulator instance.

    Attributes:
        executions: Number of generated executions (0 for an empty instance).
        seed: Seed of the generated data and of the fault draws.
        api_key: The key accepted in `X-API-Key`; a random one is generated when None.
        host: Interface to bind (loopback by default).
        port: TCP port; None or 0 picks a free one.
        time_scale: Simulated seconds per real second; 0 freezes the clock, which then only
            moves with `Simulator.advance`.
        start_time: Simulated instant at which the clock starts.
        running_share: Share of generated executions still running at `start_time`.
        long_poll: When False, running executions are answered at once whatever `timeout`.
        faults: Fault injection settings.
        request_log_size: Most recent requests kept in `Simulator.request_log`.
    """

    executions: int = 1000
    seed: int = 42
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    time_scale: float = 0.0
    start_time: datetime = DEFAULT_START_TIME
    running_share: float = DEFAULT_RUNNING_SHARE
    long_poll: bool = True
    faults: FaultConfig = field(default_factory=FaultConfig)
    request_log_size: int = 100_000

    def __post_init__(self) -> None:
        if self.time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it. The API key itself is never kept.

    `status` is 0 when the connection was dropped without an answer; `fault` names the
    injected fault, if any (status, rate_limit, drop, malformed, slow); `duration_s` runs from
    receiving the request to having the answer ready (long-poll wait included, sending not).
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    has_api_key: bool
    fault: str | None = None
    duration_s: float = 0.0


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # For an execution still running: whether a long-poll should wait, and until when at most.
    is_running: bool = False
    finish_us: int | None = None


class _SimClock:
    """Simulated time in microseconds: frozen, or running `time_scale` times real time."""

    def __init__(self, start_us: int, time_scale: float) -> None:
        self._base_us = start_us
        self._scale = time_scale
        self._anchor: float | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._anchor is None:
                self._anchor = time.monotonic()

    def now_us(self) -> int:
        with self._lock:
            return self._now_locked()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._base_us += int(seconds * US)

    def real_seconds_until(self, instant_us: int) -> float | None:
        """Real seconds until the clock shows `instant_us`; None if that never happens alone."""
        with self._lock:
            if self._scale == 0 or self._anchor is None:
                return None
            return max(0.0, (instant_us - self._now_locked()) / US / self._scale)

    def _now_locked(self) -> int:
        if self._scale == 0 or self._anchor is None:
            return self._base_us
        return self._base_us + int((time.monotonic() - self._anchor) * self._scale * US)


class Simulator:
    """A local stand-in for the Eachlabs Workflows API. See "The API simulator" in README.md.

    Usage:
        with Simulator(SimulatorConfig(executions=100)) as sim:
            requests.get(f"{sim.base_url}/executions/{sim.execution_ids[0]}",
                         headers={"X-API-Key": sim.api_key})
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._api_key = self.config.api_key or secrets.token_urlsafe(24)
        self._dataset = Dataset(
            self.config.seed,
            self.config.executions,
            start_time=self.config.start_time,
            running_share=self.config.running_share,
        )
        self._plan = lru_cache(maxsize=PLAN_CACHE_SIZE)(self._dataset.plan)
        self._clock = _SimClock(self._dataset.start_us, self.config.time_scale)
        self._faults = FaultInjector(self.config.faults, self.config.seed)
        self._lock = threading.Lock()
        # Bumped (and waiters woken) whenever what a long-poll sees may have changed.
        self._changed = threading.Condition()
        self._version = 0
        self._hand_made: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self._removed: set[str] = set()
        self._log: deque[RequestRecord] = deque(maxlen=self.config.request_log_size)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._is_stopping = False

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Simulator:
        """Start serving on a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((self.config.host, self.config.port or 0), _Handler)
        server.simulator = self
        self._server = server
        self._is_stopping = False
        self._clock.start()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"eachlabs-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; waiting long-polls are released at once."""
        server = self._server
        if server is None:
            return
        self._is_stopping = True
        self._notify_changed()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Simulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:  # never show the key
        where = self.base_url if self._server is not None else "not started"
        return f"Simulator({where}, executions={len(self._dataset)})"

    # --- what tests read -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT/api/v1`, the base URL to give a client."""
        return f"http://{self.config.host}:{self.port}{API_PREFIX}"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def execution_ids(self) -> list[str]:
        """Generated execution IDs, in generation order."""
        return list(self._dataset.execution_ids)

    @property
    def workflow_ids(self) -> list[str]:
        return [workflow.workflow_id for workflow in self._dataset.workflows]

    @property
    def bulk_ids(self) -> list[str]:
        return list(self._dataset.bulk_ids)

    @property
    def now(self) -> datetime:
        """The simulated time."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self._clock.now_us())

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward and wake long-polls to re-check."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._clock.advance(seconds)
        self._notify_changed()

    def execution(self, execution_id: str) -> dict[str, Any]:
        """The body `GET /executions/{id}` would answer now, decoded. KeyError if unknown."""
        response = self._execution_response(execution_id)
        if response.status != 200:
            raise KeyError(execution_id)
        return json.loads(response.body)

    def put_execution(self, payload: Mapping[str, Any]) -> None:
        """Serve `payload` verbatim for its `execution_id` (adds, or replaces any earlier one).

        Its status never progresses. It also appears in the list endpoint of its `workflow_id`.
        """
        execution_id = payload.get("execution_id") if isinstance(payload, Mapping) else None
        if not isinstance(execution_id, str) or not execution_id:
            raise ValueError("payload needs a non-empty string 'execution_id'")
        try:
            body = json.dumps(dict(payload), ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate: JSON can still carry it as an escape
            body = json.dumps(dict(payload)).encode()
        with self._lock:
            self._hand_made.pop(execution_id, None)  # re-putting moves it to the newest slot
            self._hand_made[execution_id] = (body, json.loads(body))
            self._removed.discard(execution_id)
        self._notify_changed()

    def remove_execution(self, execution_id: str) -> None:
        """Answer 404 for this ID from now on (hand-made or generated).

        Raises:
            KeyError: nothing is served under this ID.
        """
        with self._lock:
            was_hand_made = self._hand_made.pop(execution_id, None) is not None
            is_generated = execution_id in self._dataset.index
            if not was_hand_made and (not is_generated or execution_id in self._removed):
                raise KeyError(execution_id)
            if is_generated:
                self._removed.add(execution_id)
        self._notify_changed()

    @property
    def request_log(self) -> list[RequestRecord]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        with self._lock:
            self._log.clear()

    # --- request handling ----------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        started = time.monotonic()
        split = urlsplit(handler.path)
        path = split.path
        query = {
            name: values[0]
            for name, values in parse_qs(split.query, keep_blank_values=True).items()
        }
        _drain_request_body(handler)
        given_key = handler.headers.get(API_KEY_HEADER)
        has_key = bool(given_key)
        match = _EXECUTION_PATH.match(path)
        execution_id = unquote(match.group(1)) if match else None

        is_authorised = has_key and hmac.compare_digest(
            given_key.encode("utf-8", "surrogateescape"), self._api_key.encode()
        )
        # Faults (latency included) only hit authorised requests, so scripted fates are not
        # used up by a 401 and a missing key is always reported as such.
        decision = self._faults.decide(path, execution_id) if is_authorised else _NO_FAULT
        if decision.latency_s > 0:
            time.sleep(decision.latency_s)
        fault: str | None = None
        if not is_authorised:
            response = _error(401, "Invalid or missing API key")
        elif decision.action == "drop":
            handler.close_connection = True
            self._record(handler.command, path, query, 0, has_key, "drop", started)
            return
        elif decision.action in ("status", "rate_limit"):
            fault = decision.action
            response = _fault_response(decision)
        else:
            try:
                response = self._route(handler.command, path, query)
            except Exception:  # a bug here must show, not look like a flaky network
                traceback.print_exc(file=sys.stderr)
                response = _error(500, "simulator bug: see the simulator's stderr")
                fault = "bug"
            if decision.action == "malformed" and response.status == 200:
                fault = "malformed"
                response.body = corrupt_body(response.body, decision.draw)
            elif decision.action == "slow":
                fault = "slow"
        # Recorded before sending, so a client that has its answer always finds it in the log.
        self._record(handler.command, path, query, response.status, has_key, fault, started)
        slow_body_s = self.config.faults.slow_body_ms / 1000.0 if fault == "slow" else 0.0
        try:
            _send(handler, response, slow_body_s)
        except OSError:  # the client went away; nothing to answer
            handler.close_connection = True

    def _route(self, method: str, path: str, query: dict[str, str]) -> _Response:
        execution_match = _EXECUTION_PATH.match(path)
        list_match = _LIST_PATH.match(path)
        if execution_match is None and list_match is None:
            return _error(404, "not found")
        if method != "GET":
            response = _error(405, "method not allowed")
            response.headers["Allow"] = "GET"
            return response
        if execution_match is not None:
            timeout_s = _parse_int(query, "timeout", DEFAULT_TIMEOUT_S, 1, MAX_TIMEOUT_S)
            if timeout_s is None:
                return _error(400, f"timeout must be an integer between 1 and {MAX_TIMEOUT_S}")
            return self._long_poll(unquote(execution_match.group(1)), timeout_s)
        offset = _parse_int(query, "offset", 0, 0, None)
        if offset is None:
            return _error(400, "offset must be an integer >= 0")
        limit = _parse_int(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        if limit is None:
            return _error(400, f"limit must be an integer between 1 and {MAX_LIMIT}")
        bulk_id = query.get("bulk_id") or None
        return self._list_executions(unquote(list_match.group(1)), offset, limit, bulk_id)

    def _long_poll(self, execution_id: str, timeout_s: int) -> _Response:
        """Answer at once unless running; then wait up to `timeout_s` real seconds for a change.

        A generated execution finishes on the simulated clock; any execution may also change
        through `advance`, `put_execution` or `remove_execution`, which wake the wait.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self._changed:
                version = self._version
            response = self._execution_response(execution_id)
            remaining = deadline - time.monotonic()
            if (
                not response.is_running
                or not self.config.long_poll
                or self._is_stopping
                or remaining <= 0
            ):
                return response
            wait_s = remaining
            if response.finish_us is not None:
                until_finish_s = self._clock.real_seconds_until(response.finish_us)
                if until_finish_s is not None:
                    wait_s = min(wait_s, until_finish_s + 0.001)
            with self._changed:
                if self._version == version:
                    self._changed.wait(wait_s)

    def _execution_response(self, execution_id: str) -> _Response:
        with self._lock:
            hand_made = self._hand_made.get(execution_id)
            is_removed = execution_id in self._removed
        if hand_made is not None:
            body, payload = hand_made
            return _Response(200, body, is_running=payload.get("status") == "running")
        index = self._dataset.index.get(execution_id)
        if index is None or is_removed:
            return _error(404, "execution not found")
        plan = self._plan(index)
        now_us = self._clock.now_us()
        is_running = plan.status_at(now_us) == "running"
        return _Response(
            200,
            _json(render_execution(plan, now_us)),
            is_running=is_running,
            finish_us=plan.terminal_us if is_running else None,
        )

    def _list_executions(
        self, workflow_id: str, offset: int, limit: int, bulk_id: str | None
    ) -> _Response:
        dataset = self._dataset
        with self._lock:
            hand_made = [
                (execution_id, payload)
                for execution_id, (_body, payload) in reversed(self._hand_made.items())
                if payload.get("workflow_id") == workflow_id
            ]
            removed = set(self._removed)
            overridden = {
                execution_id: payload for execution_id, (_body, payload) in self._hand_made.items()
            }
        workflow_index = dataset.workflow_index.get(workflow_id)
        if workflow_index is None and not hand_made:
            return _error(404, "workflow not found")

        generated: list[int] = []
        if workflow_index is not None:
            if bulk_id is None:
                generated = dataset.listing(workflow_index)
            else:
                members = dataset.bulk_members(bulk_id)
                generated = sorted(
                    (i for i in members if dataset.workflow_of[i] == workflow_index),
                    key=lambda i: (-dataset.started_us[i], i),
                )
            if removed or overridden:
                ids = dataset.execution_ids
                generated = [
                    i for i in generated if ids[i] not in removed and ids[i] not in overridden
                ]
        if bulk_id is not None:
            hand_made = [(i, p) for i, p in hand_made if p.get("bulk_id") == bulk_id]

        total = len(hand_made) + len(generated)
        page_end = min(total, offset + limit)
        now_us = self._clock.now_us()
        flow_name = (
            dataset.workflows[workflow_index].name
            if workflow_index is not None
            else _HAND_MADE_FLOW_NAME
        )
        items = []
        for position in range(offset, page_end):
            if position < len(hand_made):
                items.append(_summary_of_payload(hand_made[position][1], flow_name, now_us))
            else:
                plan: ExecutionPlan = self._plan(generated[position - len(hand_made)])
                items.append(render_summary(plan, now_us))
        body = {
            "executions": items,
            "offset": page_end if page_end < total else None,
            "total_count": total,
        }
        return _Response(200, _json(body))

    def _record(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        status: int,
        has_key: bool,
        fault: str | None,
        started: float,
    ) -> None:
        record = RequestRecord(
            method, path, query, status, has_key, fault, round(time.monotonic() - started, 6)
        )
        with self._lock:
            self._log.append(record)

    def _notify_changed(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()


class _Server(ThreadingHTTPServer):
    """Tracks open connections so `stop` also ends keep-alive ones, not just the listener."""

    daemon_threads = True
    request_queue_size = 128
    simulator: Simulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (reset, broken pipe) is normal, not a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; Nagle would delay the second one.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return "eachlabs-simulator"

    def do_GET(self) -> None:  # noqa: N802 (name fixed by BaseHTTPRequestHandler)
        self.server.simulator._handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silent: the test output stays clean and nothing request-related reaches a log."""


def _send(handler: BaseHTTPRequestHandler, response: _Response, slow_body_s: float) -> None:
    handler.send_response(response.status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(response.body)))
    for name, value in response.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if slow_body_s <= 0 or len(response.body) < 2:
        handler.wfile.write(response.body)
        return
    chunks = 10
    size = max(1, -(-len(response.body) // chunks))
    for start in range(0, len(response.body), size):
        time.sleep(slow_body_s / chunks)
        handler.wfile.write(response.body[start : start + size])


def _drain_request_body(handler: BaseHTTPRequestHandler) -> None:
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    if length > 0:
        handler.rfile.read(min(length, 1_000_000))


def _parse_int(
    query: dict[str, str], name: str, default: int, minimum: int, maximum: int | None
) -> int | None:
    """The integer query parameter, its default when absent, None when invalid."""
    raw = query.get(name)
    if raw is None:
        return default
    if not _UNSIGNED_INT.match(raw):
        return None
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        return None
    return value


def _summary_of_payload(payload: dict[str, Any], flow_name: str, now_us: int) -> dict[str, Any]:
    """An `ExecutionSummary` for a hand-made payload, from the fields it has."""
    now = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_us)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    started_at = payload.get("started_at") or now
    summary: dict[str, Any] = {
        "execution_id": payload["execution_id"],
        "flow_id": payload.get("workflow_id"),
        "flow_name": flow_name,
        "version_id": "v1",
        "status": payload.get("status"),
        "started_at": started_at,
    }
    if payload.get("completed_at"):
        summary["ended_at"] = payload["completed_at"]
    summary["created_at"] = started_at
    summary["updated_at"] = payload.get("completed_at") or started_at
    if isinstance(payload.get("inputs"), dict):
        summary["inputs"] = payload["inputs"]
    return summary


def _fault_response(decision: FaultDecision) -> _Response:
    status = decision.status or 500
    if status == 429:
        response = _error(429, "rate limit exceeded")
        # `--retry-after 0` means 0: only a decision without any value falls back to 1.
        retry_after = 1 if decision.retry_after_s is None else decision.retry_after_s
        response.headers["Retry-After"] = str(retry_after)
        return response
    messages = {500: "internal server error", 502: "bad gateway", 503: "service unavailable"}
    return _error(status, messages.get(status, "simulated failure"))


def _error(status: int, message: str) -> _Response:
    return _Response(status, _json({"error": message}))


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
