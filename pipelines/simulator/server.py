"""The simulator's HTTP transport: `SimulatorApp` served on loopback, with faults and a log.

`Simulator` builds the generated `Dataset` and a `SimulatorApp` (what is answered, see
`app.py`), and serves it with the standard library's `ThreadingHTTPServer` (one thread per
connection, so long-polls do not block each other). This module adds what only a socket has:
injected faults (latency, drops, error statuses, corrupt or slow bodies), the request log, and
closing keep-alive connections on `stop`.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from pipelines.simulator.app import (
    API_PREFIX,
    Response,
    SimulatorApp,
    api_key_of,
    error_response,
    execution_id_of,
    split_target,
)
from pipelines.simulator.faults import FaultConfig, FaultDecision, FaultInjector, corrupt_body
from pipelines.simulator.plans import DEFAULT_RUNNING_SHARE, DEFAULT_START_TIME, Dataset

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
    receiving the request to having the answer ready (long-poll wait included, sending not);
    `long_poll` is how a `GET /executions/{id}` ended (`app.LONG_POLL_OUTCOMES`), else None.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    has_api_key: bool
    fault: str | None = None
    duration_s: float = 0.0
    long_poll: str | None = None


class Simulator:
    """A local stand-in for the Eachlabs Workflows API. See "The API simulator" in README.md.

    Usage:
        with Simulator(SimulatorConfig(executions=100)) as sim:
            requests.get(f"{sim.base_url}/executions/{sim.execution_ids[0]}",
                         headers={"X-API-Key": sim.api_key})
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        dataset = Dataset(
            self.config.seed,
            self.config.executions,
            start_time=self.config.start_time,
            running_share=self.config.running_share,
        )
        #: What the simulator answers, callable without a socket (see `app.py`).
        self.app = SimulatorApp(
            dataset,
            self.config.api_key or secrets.token_urlsafe(24),
            time_scale=self.config.time_scale,
            long_poll=self.config.long_poll,
            list_order=self.config.faults.list_order,
            list_insert_per_page=self.config.faults.list_insert_per_page,
        )
        self._faults = FaultInjector(self.config.faults, self.config.seed)
        self._lock = threading.Lock()
        self._log: deque[RequestRecord] = deque(maxlen=self.config.request_log_size)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Simulator:
        """Start serving on a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((self.config.host, self.config.port or 0), _Handler)
        server.simulator = self
        self._server = server
        self.app.start_clock()
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
        self.app.stop_waiting()
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
        return f"Simulator({where}, executions={len(self.app.dataset)})"

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
        return self.app.api_key

    @property
    def execution_ids(self) -> list[str]:
        """Generated execution IDs, in generation order."""
        return list(self.app.dataset.execution_ids)

    @property
    def workflow_ids(self) -> list[str]:
        return [workflow.workflow_id for workflow in self.app.dataset.workflows]

    @property
    def bulk_ids(self) -> list[str]:
        return list(self.app.dataset.bulk_ids)

    @property
    def inserted_execution_ids(self) -> list[str]:
        """IDs of the executions the `list_insert_per_page` fault created, oldest first."""
        return self.app.inserted_execution_ids

    @property
    def now(self) -> datetime:
        """The simulated time."""
        return self.app.now

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward and wake long-polls to re-check."""
        self.app.advance(seconds)

    def execution(self, execution_id: str) -> dict[str, Any]:
        """The body `GET /executions/{id}` would answer now, decoded. KeyError if unknown."""
        response = self.app.execution_response(execution_id)
        if response.status != 200:
            raise KeyError(execution_id)
        return json.loads(response.body)

    def put_execution(
        self, payload: Mapping[str, Any], summary: Mapping[str, Any] | None = None
    ) -> None:
        """Serve `payload` verbatim for its `execution_id` (adds, or replaces any earlier one).

        Its status never progresses. It also appears first in the list endpoint of its
        `workflow_id` (newest put first), with a summary derived from the payload; `summary`
        overrides or extends its fields (a field mapped to None is left out). See
        `SimulatorApp.put_execution`.
        """
        self.app.put_execution(payload, summary)

    def remove_execution(self, execution_id: str) -> None:
        """Answer 404 for this ID from now on (hand-made or generated).

        Raises:
            KeyError: nothing is served under this ID.
        """
        self.app.remove_execution(execution_id)

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
        """One request: faults first, then the app's answer, logged and sent."""
        started = time.monotonic()
        path, query = split_target(handler.path)
        _drain_request_body(handler)
        has_key = bool(api_key_of(handler.headers))
        # Faults (latency included) only hit authorised requests, so scripted fates are not
        # used up by a 401 and a missing key is always reported as such.
        decision = (
            self._faults.decide(path, execution_id_of(path))
            if self.app.is_authorised(handler.headers)
            else _NO_FAULT
        )
        if decision.latency_s > 0:
            time.sleep(decision.latency_s)
        fault: str | None = None
        if decision.action == "drop":
            handler.close_connection = True
            self._record(handler.command, path, query, 0, has_key, "drop", started, None)
            return
        if decision.action in ("status", "rate_limit"):
            fault = decision.action
            response = _fault_response(decision)
        else:
            try:
                response = self.app.handle(handler.command, path, query, handler.headers)
            except Exception:  # a bug here must show, not look like a flaky network
                traceback.print_exc(file=sys.stderr)
                response = error_response(500, "simulator bug: see the simulator's stderr")
                fault = "bug"
            if decision.action == "malformed" and response.status == 200:
                fault = "malformed"
                response.body = corrupt_body(response.body, decision.draw)
            elif decision.action == "slow":
                fault = "slow"
        # Recorded before sending, so a client that has its answer always finds it in the log.
        self._record(
            handler.command, path, query, response.status, has_key, fault, started,
            response.long_poll,
        )  # fmt: skip
        slow_body_s = self.config.faults.slow_body_ms / 1000.0 if fault == "slow" else 0.0
        try:
            _send(handler, response, slow_body_s)
        except OSError:  # the client went away; nothing to answer
            handler.close_connection = True

    def _record(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        status: int,
        has_key: bool,
        fault: str | None,
        started: float,
        long_poll: str | None,
    ) -> None:
        duration_s = round(time.monotonic() - started, 6)
        record = RequestRecord(method, path, query, status, has_key, fault, duration_s, long_poll)
        with self._lock:
            self._log.append(record)


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


def _send(handler: BaseHTTPRequestHandler, response: Response, slow_body_s: float) -> None:
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


def _fault_response(decision: FaultDecision) -> Response:
    status = decision.status or 500
    if status == 429:
        response = error_response(429, "rate limit exceeded")
        # `--retry-after 0` means 0: only a decision without any value falls back to 1.
        retry_after = 1 if decision.retry_after_s is None else decision.retry_after_s
        response.headers["Retry-After"] = str(retry_after)
        return response
    messages = {500: "internal server error", 502: "bad gateway", 503: "service unavailable"}
    return error_response(status, messages.get(status, "simulated failure"))
