"""The webhook receiver's HTTP side: a WSGI app on waitress, and a run loop that stops cleanly.

Why waitress (docs/webhook.md): a production WSGI server in pure Python with no
dependencies. Its I/O loop reads every request whole before a worker thread sees it, so a
slow client costs no thread; it refuses a body over `max_request_body_size` from its
Content-Length before reading it, and counts a chunked body as it streams, cutting it off at
the limit (both 413). A pool of worker threads suits the spool's blocking group commit.

What waitress lacks is a graceful stop (its own stop drops queued requests and does not flush
answers), so `WebhookReceiver.serve` drives waitress's I/O loop itself: on `stop()` it closes
the listening socket, closes idle keep-alive connections, keeps serving the connections that
are receiving a request or waiting for their answer until they are done (at most
`DRAIN_TIMEOUT_S`), then stops the threads and closes the spool.

The token is never logged: paths are logged as `/webhooks/***`, and a filter on the
receiver's and waitress's loggers (and the root handlers) masks it in any log record.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

from pipelines.eachlabs.answers import strict_json
from pipelines.eachlabs.errors import ConfigError, InvalidIdError
from pipelines.eachlabs.ids import validate_execution_id
from pipelines.webhook.settings import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_ROTATE_BYTES,
    DEFAULT_ROTATE_SECONDS,
    DRAIN_TIMEOUT_S,
    HEALTH_PATH,
    IDLE_CONNECTION_TIMEOUT_S,
    WEBHOOK_PATH_PREFIX,
    WORKER_THREADS,
)
from pipelines.webhook.spool import Spool, SpoolError

log = logging.getLogger(__name__)

#: How often the run loop looks at its stop flag while no socket is ready.
_POLL_S = 0.1
_STATUS_LINES = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}
_ACCEPTED = b'{"received": true}\n'
_NOT_FOUND = b"Not Found\n"  # the same for every path, token and method: nothing to learn
_WEBHOOK_PATHS = re.compile(re.escape(WEBHOOK_PATH_PREFIX) + r"[^\s\"'<>]*")
_Response = tuple[int, bytes, str]


def redact_path(path: str) -> str:
    """A request path as it may be logged: `/webhooks/***` for any webhook path."""
    if path.startswith(WEBHOOK_PATH_PREFIX):
        return WEBHOOK_PATH_PREFIX + "***"
    return ascii(path[:120])[1:-1]  # escaped: no control character reaches a log line


def body_problem(body: bytes) -> str | None:
    """Why `body` is not accepted (an answer for the sender), or None: it must be UTF-8 JSON
    (no NaN or Infinity) holding an object whose `execution_id` is a safe ID string."""
    try:
        document = strict_json(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "the body is not UTF-8 JSON"
    if not isinstance(document, dict):
        return "the body is not a JSON object"
    try:
        validate_execution_id(document.get("execution_id"))  # type: ignore[arg-type]
    except InvalidIdError:
        return "the body has no execution_id that is a safe ID string"
    return None


class WebhookApp:
    """The WSGI app: `POST /webhooks/<token>` stores a body, `GET /healthz` reports the
    spool; anything else is the same 404."""

    def __init__(self, spool: Spool, token: str) -> None:
        self._spool = spool
        self._token = token.encode("ascii")

    def __repr__(self) -> str:  # never the token
        return f"WebhookApp({self._spool!r})"

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        try:
            status, body, content_type = self._answer(method, path, environ)
        except Exception as exc:  # no traceback: it could quote the path
            log.error("%s %s failed: %s", method, redact_path(path), type(exc).__name__)
            status, body, content_type = 500, b"internal error\n", "text/plain"
        log.debug("%s %s -> %d", method, redact_path(path), status)
        start_response(
            _STATUS_LINES[status],
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _answer(self, method: str, path: str, environ: dict[str, Any]) -> _Response:
        if path == HEALTH_PATH and method == "GET":
            health = json.dumps(self._spool.health()).encode() + b"\n"
            return 200, health, "application/json"
        if method == "POST" and self._is_webhook_path(path):
            return self._receive(environ["wsgi.input"].read())
        return 404, _NOT_FOUND, "text/plain"

    def _is_webhook_path(self, path: str) -> bool:
        if not path.startswith(WEBHOOK_PATH_PREFIX):
            return False
        candidate = path[len(WEBHOOK_PATH_PREFIX) :].encode("latin-1", "replace")
        return hmac.compare_digest(candidate, self._token)  # constant time

    def _receive(self, body: bytes) -> _Response:
        problem = body_problem(body)
        if problem is not None:
            return 400, problem.encode() + b"\n", "text/plain"
        try:
            self._spool.append(body)
        except SpoolError as exc:
            log.warning("a body was refused (503, the sender retries): %s", exc)
            return 503, b"the body could not be stored; send it again\n", "text/plain"
        return 200, _ACCEPTED, "application/json"


class _RedactToken(logging.Filter):
    """Masks the token, and any `/webhooks/...` path, in a log record's text."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def _redact(self, text: str) -> str:
        return _WEBHOOK_PATHS.sub(WEBHOOK_PATH_PREFIX + "***", text.replace(self._token, "***"))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


class WebhookReceiver:
    """The spool and a waitress server; `start()` binds and opens the spool, `serve()` runs
    until `stop()` (safe from a signal handler or another thread), then closes both.

    Args:
        spool_dir: The spool directory (created if missing).
        token: The secret path segment (`webhook_token`).
        host, port: Where to listen; port 0 picks a free one (see `port`).
        max_body_bytes: Largest body accepted; larger ones get 413 unread.
        rotate_bytes, rotate_seconds: When the open spool file is closed (see `Spool`).
        clock: Wall clock of the spool (tests pass a fake one).
    """

    def __init__(
        self,
        spool_dir: Path,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        rotate_bytes: int = DEFAULT_ROTATE_BYTES,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = Spool(
            spool_dir,
            rotate_bytes=rotate_bytes,
            rotate_seconds=rotate_seconds,
            clock=clock,
            on_fatal=self._on_spool_failure,
        )
        self._app = WebhookApp(self.spool, token)
        self._redaction = _RedactToken(token)
        self._host, self._port = host, port
        self._max_body_bytes = max_body_bytes
        self._map: dict[int, Any] = {}
        self._listeners: list[BaseWSGIServer] = []
        self._is_stop_requested = False
        self._stop_count = 0
        #: Files recovered from a killed receiver's `.part` files at start.
        self.recovered: list[Path] = []
        #: 0 after a clean stop, 1 when the spool failed (fsync or rename).
        self.exit_code = 0

    def __repr__(self) -> str:
        return f"WebhookReceiver({self.spool!r}, {self._host}:{self._port})"

    @property
    def port(self) -> int:
        return int(self._listeners[0].effective_port) if self._listeners else self._port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> WebhookReceiver:
        """Open the spool (lock, recovery) and listen.

        Raises:
            SpoolError: the spool is held by another receiver or cannot be used.
            ConfigError: the address cannot be listened on.
        """
        self._install_redaction()
        self.recovered = self.spool.open()
        try:
            server = create_server(
                self._app,
                map=self._map,
                host=self._host,
                port=self._port,
                threads=WORKER_THREADS,
                # waitress refuses a body of this size or more: `max_body_bytes` is accepted
                max_request_body_size=self._max_body_bytes + 1,
                channel_timeout=IDLE_CONNECTION_TIMEOUT_S,
                asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
                ident="eachlabs-pipeline",
                expose_tracebacks=False,
            )
        except (OSError, ValueError) as exc:
            self.spool.close()
            self._remove_redaction()
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"cannot listen on {self._host}:{self._port}: {reason}") from None
        self._listeners = [d for d in self._map.values() if isinstance(d, BaseWSGIServer)]
        self._dispatcher = server.task_dispatcher
        return self

    def stop(self) -> None:
        """Ask `serve()` to stop: a first call drains, a second one stops at once."""
        self._stop_count += 1
        self._is_stop_requested = True

    def serve(self) -> None:
        """Answer requests until `stop()`, then drain, stop the threads and close the spool."""
        try:
            while not self._is_stop_requested:
                wasyncore.loop(timeout=_POLL_S, map=self._map, use_poll=True, count=1)
            self._drain()
        finally:
            self._shut_down()

    def _on_spool_failure(self, message: str) -> None:
        self.exit_code = 1
        self._is_stop_requested = True

    def _channels(self) -> list[HTTPChannel]:
        return [d for d in list(self._map.values()) if isinstance(d, HTTPChannel)]

    def _drain(self) -> None:
        for listener in self._listeners:
            wasyncore.dispatcher.close(listener)  # no new connection; the loop keeps running
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            busy = 0
            for channel in self._channels():
                if channel.requests or channel.request is not None or channel.total_outbufs_len:
                    busy += 1  # receiving a request, answering it, or sending the answer
                else:
                    channel.handle_close()  # idle keep-alive connection
            if not busy or time.monotonic() >= deadline or self._stop_count > 1:
                if busy:
                    log.warning("stopped with %d request(s) unfinished (not acknowledged)", busy)
                return
            wasyncore.loop(timeout=_POLL_S, map=self._map, use_poll=True, count=1)

    def _shut_down(self) -> None:
        try:
            for channel in self._channels():
                channel.handle_close()
            if self._listeners:
                self._dispatcher.shutdown(cancel_pending=True, timeout=DRAIN_TIMEOUT_S)
            wasyncore.close_all(self._map)
        finally:
            try:
                self.spool.close()
            finally:
                self._remove_redaction()
        if self.spool.failure is not None:
            self.exit_code = 1

    def _loggers(self) -> list[logging.Filterer]:
        named = [logging.getLogger(name) for name in ("waitress", "waitress.queue", __name__)]
        return [*named, *logging.getLogger().handlers]

    def _install_redaction(self) -> None:
        for target in self._loggers():
            target.addFilter(self._redaction)

    def _remove_redaction(self) -> None:
        for target in self._loggers():
            target.removeFilter(self._redaction)
