"""`eachlabs-pipeline webhook`: the receiver's flags, and running it until SIGTERM or Ctrl-C.

Building the parser imports neither waitress nor dlt: `eachlabs-pipeline --help` stays quick;
the command imports them when it runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from pipelines import argtypes
from pipelines.cli_io import stamp
from pipelines.eachlabs.errors import ConfigError
from pipelines.webhook.settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    DEFAULT_ROTATE_BYTES,
    DEFAULT_ROTATE_SECONDS,
    HEALTH_PATH,
    LOCK_FILE_NAME,
    WEBHOOK_PATH_PREFIX,
)


def add_webhook_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `webhook` subcommand to the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "webhook",
        help="receive the Eachlabs engine's webhook POSTs into a spool directory",
        description=(
            "Run an HTTP receiver for the Eachlabs engine's webhooks until SIGTERM or Ctrl-C "
            "(exit 0). It accepts POST /webhooks/<token> only (token: SOURCES__EACHLABS__"
            "WEBHOOK_TOKEN or webhook_token in .dlt/secrets.toml, at least 32 characters), "
            "checks that the body is a JSON object with a safe execution_id, appends it as "
            "one line to a spool file in --spool DIR and answers 200 once it is fsync'ed. "
            "GET /healthz reports the spool. `load --from-spool DIR` loads the closed files. "
            "Exit codes: 0 stopped by a signal, 1 no or bad token, spool held by another "
            "receiver, address in use, or the disk failed (see docs/webhook.md)."
        ),
    )
    parser.add_argument(
        "--spool",
        type=Path,
        required=True,
        metavar="DIR",
        help="spool directory (created if missing; one receiver per directory)",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="interface to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=argtypes.port,
        default=DEFAULT_PORT,
        help="TCP port; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=argtypes.positive_int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help="a larger body gets 413 without being read (default: %(default)s)",
    )
    parser.add_argument(
        "--rotate-bytes",
        type=argtypes.positive_int,
        default=DEFAULT_ROTATE_BYTES,
        metavar="N",
        help="close the open spool file (rename .part to .jsonl) once it holds N bytes "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--rotate-seconds",
        type=argtypes.positive_float,
        default=DEFAULT_ROTATE_SECONDS,
        metavar="SECONDS",
        help="...or once its first body is this old (default: %(default)s)",
    )
    parser.set_defaults(handler=_cmd_webhook)
    return parser


def _webhook_token() -> str:
    from pipelines.eachlabs.settings import WEBHOOK_TOKEN_HINT, resolve_settings

    token = resolve_settings(only=["webhook_token"]).webhook_token
    if not token:
        raise ConfigError(f"no webhook token: {WEBHOOK_TOKEN_HINT}")
    return str(token)


def _cmd_webhook(args: argparse.Namespace) -> int:
    token = _webhook_token()
    from pipelines.webhook.server import WebhookReceiver

    receiver = WebhookReceiver(
        args.spool,
        token,
        host=args.host,
        port=args.port,
        max_body_bytes=args.max_body_bytes,
        rotate_bytes=args.rotate_bytes,
        rotate_seconds=args.rotate_seconds,
    )
    # Before start(): a signal that arrives while starting still stops the receiver cleanly.
    previous = {
        sig: signal.signal(sig, lambda _sig, _frame: receiver.stop())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        receiver.start()
        url = receiver.base_url
        if receiver.recovered:
            print(
                f"{stamp()} renamed {len(receiver.recovered)} file(s) a stopped receiver left "
                f"open to .jsonl: {', '.join(p.name for p in receiver.recovered)}",
                flush=True,
            )
        print(
            f"{stamp()} receiving webhooks at {url}{WEBHOOK_PATH_PREFIX}*** into "
            f"{args.spool} (health: {url}{HEALTH_PATH}; lock {LOCK_FILE_NAME}); "
            "SIGTERM or Ctrl-C stops",
            flush=True,
        )
        receiver.serve()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    spool = receiver.spool
    print(
        f"{stamp()} stopped: {spool.accepted} bodies accepted in {spool.fsyncs} fsyncs, "
        f"{spool.files_closed} file(s) closed into {args.spool}",
        flush=True,
    )
    if spool.failure is not None:
        print(
            f"eachlabs-pipeline: the spool failed ({spool.failure}); nothing unsynced was "
            "acknowledged. Check the disk, then start the receiver again",
            file=sys.stderr,
        )
    return receiver.exit_code
