"""A small hostile HTTP(S) server for the fault tests: scripted per execution ID.

It listens on 127.0.0.1 only, on a free port, and stops by itself: when the test leaves the
`with` block, or at the latest after `lifetime_s`, hanging handlers are released and every
connection is closed. Each route is a function of the request handler, so a test can send
anything a real server (or a man in the middle) could: bad headers, redirects, a body that
never ends, a trickle.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from payloads import one_step_execution as payload

API_KEY = "hostile-test-key"

Route = Callable[["_Handler"], None]


@dataclass
class Hit:
    path: str
    has_api_key: bool
    host: str
    at: float


def send(
    handler: _Handler, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def serve_json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    body = json.dumps(value).encode() if not isinstance(value, bytes) else value
    return lambda handler: send(handler, status, body, headers)


def serve_payload(execution_id: str, **fields: Any) -> Route:
    return serve_json(payload(execution_id, **fields))


def throttle(retry_after: str, then: Route | None = None, times: int = 10**9) -> Route:
    """429 with the given Retry-After header `times` times, then `then`."""
    count = {"n": 0}
    lock = threading.Lock()

    def route(handler: _Handler) -> None:
        with lock:
            count["n"] += 1
            n = count["n"]
        if n <= times or then is None:
            send(handler, 429, b'{"error":"rate limit exceeded"}', {"Retry-After": retry_after})
        else:
            then(handler)

    return route


def redirect(location: str, status: int = 302) -> Route:
    return lambda handler: send(handler, status, b"", {"Location": location})


def hang(handler: _Handler) -> None:
    """Accept the request and never answer (until the server stops)."""
    handler.server.stopping.wait()


def trickle(body: bytes, interval_s: float = 0.25) -> Route:
    """Headers at once, then the body one byte every `interval_s` (until the server stops)."""

    def route(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.flush()
        for i in range(len(body)):
            if handler.server.stopping.wait(interval_s):
                return
            handler.wfile.write(body[i : i + 1])
            handler.wfile.flush()

    return route


def drop_mid_body(body: bytes) -> Route:
    """Promise the whole body, send half of it, close the connection."""

    def route(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    return route


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hostile: HostileServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()
        self.connections = 0  # accepted TCP connections (a failed TLS handshake counts)

    def get_request(self) -> tuple[socket.socket, Any]:
        self.connections += 1
        return super().get_request()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        self.server.hostile._handle(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silent."""

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, OSError):
            pass  # a client that gives up mid-answer is expected here


@dataclass
class HostileServer:
    """Routes `GET /api/v1/executions/{id}` to scripted behaviours; 404 for unknown IDs.

    `routes` maps an ID to a Route (a list page's key: `workflows/{id}/executions`);
    `default` answers IDs not in `routes` (404 if None).
    A request without the right key gets 401, unless `require_key` is False.
    """

    routes: dict[str, Route] = field(default_factory=dict)
    default: Route | None = None
    require_key: bool = True
    lifetime_s: float = 120.0
    tls_context: ssl.SSLContext | None = None
    hits: list[Hit] = field(default_factory=list)
    key_revoked: threading.Event = field(default_factory=threading.Event)

    @property
    def api_key(self) -> str:
        return API_KEY

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hostile = self
        if self.tls_context is not None:
            self._server.socket = self.tls_context.wrap_socket(
                self._server.socket, server_side=True
            )
        self.port = self._server.server_address[1]
        scheme = "https" if self.tls_context else "http"
        self.origin = f"{scheme}://127.0.0.1:{self.port}"
        self.base_url = f"{self.origin}/api/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True

    def __enter__(self) -> HostileServer:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._timer.cancel()
        self._server.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def hits_for(self, execution_id: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path.endswith(f"/executions/{execution_id}")]

    def _handle(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0]
        has_key = handler.headers.get("X-API-Key") == API_KEY
        with self._lock:
            self.hits.append(Hit(path, has_key, handler.headers.get("Host", ""), time.monotonic()))
        if self.require_key and (not has_key or self.key_revoked.is_set()):
            send(handler, 401, b'{"error":"invalid api key"}')
            return
        prefix = "/api/v1/executions/"
        if path.startswith("/api/v1/workflows/"):  # a list page: routed by its path
            route = self.routes.get(path[len("/api/v1/") :])
            if route is None:
                send(handler, 404, b'{"error":"workflow not found"}')
            else:
                route(handler)
            return
        execution_id = path[len(prefix) :] if path.startswith(prefix) else None
        route = self.routes.get(execution_id or "", self.default)
        if execution_id is None or route is None:
            send(handler, 404, b'{"error":"execution not found"}')
            return
        route(handler)


def self_signed_tls(tmp_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 with a fresh self-signed certificate.

    Returns the context and the path of the certificate (PEM), which a client can trust
    through REQUESTS_CA_BUNDLE.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_dir / "cert.pem"
    key_path = tmp_dir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
