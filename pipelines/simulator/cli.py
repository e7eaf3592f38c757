"""`eachlabs-pipeline simulator`: run the local Eachlabs API simulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipelines import argtypes
from pipelines.simulator.faults import FaultConfig
from pipelines.simulator.listing import LIST_ORDERS
from pipelines.simulator.plans import DEFAULT_RUNNING_SHARE
from pipelines.simulator.server import Simulator, SimulatorConfig

DEFAULT_PORT = 8080
DEFAULT_EXECUTIONS = 5000
DEFAULT_SEED = 42
DEFAULT_TIME_SCALE = 60.0


def add_simulator_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `simulator` subcommand to the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "simulator",
        help="run a local simulator of the Eachlabs Workflows API",
        description=(
            "Serve a simulated Eachlabs Workflows API on this machine: GET "
            "/api/v1/executions/{id} (with the `timeout` long-poll) and GET "
            "/api/v1/workflows/{id}/executions, with generated executions that progress on a "
            "simulated clock, and optional fault injection. Prints the base URL and the API "
            "key, then runs until Ctrl-C or SIGTERM (exit code 0)."
        ),
    )
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    server.add_argument(
        "--port",
        type=argtypes.port,
        default=DEFAULT_PORT,
        help="TCP port; 0 picks a free one (default: %(default)s)",
    )
    server.add_argument(
        "--api-key",
        metavar="KEY",
        help="the key to accept in the X-API-Key header (default: a random key, printed at start)",
    )
    data = parser.add_argument_group("data and clock")
    data.add_argument(
        "--executions",
        type=argtypes.non_negative_int,
        default=DEFAULT_EXECUTIONS,
        metavar="N",
        help="number of generated executions (default: %(default)s)",
    )
    data.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of the generated data; same seed, same data (default: %(default)s)",
    )
    data.add_argument(
        "--running-share",
        type=argtypes.share,
        default=DEFAULT_RUNNING_SHARE,
        metavar="SHARE",
        help="share of executions still running at start (default: %(default)s)",
    )
    data.add_argument(
        "--time-scale",
        type=argtypes.non_negative_float,
        default=DEFAULT_TIME_SCALE,
        metavar="FACTOR",
        help="simulated seconds per real second; 0 freezes the clock (default: %(default)s)",
    )
    data.add_argument(
        "--no-long-poll",
        dest="long_poll",
        action="store_false",
        help="answer running executions at once instead of waiting up to `timeout` seconds",
    )
    data.add_argument(
        "--ids-out",
        type=Path,
        metavar="PATH",
        help="write the generated execution IDs to PATH, one per line (for `load --ids-file`); "
        "written whole (never half) before the simulator accepts connections, so once "
        "`eachlabs-pipeline wait-ready` returns the file is complete",
    )
    faults = parser.add_argument_group("fault injection (all off by default)")
    faults.add_argument(
        "--latency-ms",
        type=argtypes.non_negative_float,
        default=0.0,
        metavar="MS",
        help="delay added to every request",
    )
    faults.add_argument(
        "--jitter-ms",
        type=argtypes.non_negative_float,
        default=0.0,
        metavar="MS",
        help="extra random delay per request, uniform in [0, MS]",
    )
    faults.add_argument(
        "--rate-limit",
        type=argtypes.positive_float,
        metavar="REQ_PER_S",
        help="token-bucket rate limit; requests over it get 429 with Retry-After",
    )
    faults.add_argument(
        "--rate-limit-burst",
        type=argtypes.positive_int,
        metavar="N",
        help="token-bucket size (default: the rate rounded up)",
    )
    faults.add_argument(
        "--rate-limit-every",
        type=argtypes.positive_int,
        metavar="N",
        help="answer 429 to every N-th request",
    )
    faults.add_argument(
        "--retry-after",
        type=argtypes.non_negative_int,
        default=1,
        metavar="SECONDS",
        help="Retry-After of the --rate-limit-every 429s (default: %(default)s)",
    )
    faults.add_argument(
        "--error-rate",
        type=argtypes.share,
        default=0.0,
        metavar="SHARE",
        help="share of requests answered 500, 502 or 503",
    )
    faults.add_argument(
        "--drop-rate",
        type=argtypes.share,
        default=0.0,
        metavar="SHARE",
        help="share of requests whose connection is closed without an answer",
    )
    faults.add_argument(
        "--malformed-rate",
        type=argtypes.share,
        default=0.0,
        metavar="SHARE",
        help="share of 200 answers whose JSON body is truncated or invalid",
    )
    faults.add_argument(
        "--slow-body-ms",
        type=argtypes.non_negative_float,
        default=0.0,
        metavar="MS",
        help="send the headers, then dribble the body out over MS milliseconds",
    )
    faults.add_argument(
        "--slow-body-rate",
        type=argtypes.share,
        default=1.0,
        metavar="SHARE",
        help="share of answers sent slowly when --slow-body-ms is set (default: %(default)s)",
    )
    faults.add_argument(
        "--list-order",
        choices=LIST_ORDERS,
        default="newest_first",
        help="order of the list endpoint: the API's newest first, or shuffled (a fixed "
        "seed-based order, not by created_at) (default: %(default)s)",
    )
    faults.add_argument(
        "--list-insert-per-page",
        type=argtypes.non_negative_int,
        default=0,
        metavar="N",
        help="create N new executions of a workflow each time one of its list pages is "
        "served, at the top of later pages (a busy API)",
    )
    faults.add_argument(
        "--fault-seed",
        type=int,
        metavar="SEED",
        help="seed of the fault draws (default: --seed)",
    )
    parser.set_defaults(handler=run_simulator)
    return parser


def add_wait_ready_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `wait-ready` subcommand: wait until a server (the simulator) answers HTTP."""
    parser = subparsers.add_parser(
        "wait-ready",
        help="wait until the simulator (or any HTTP server) at URL answers, for scripts",
        description=(
            "Return as soon as an HTTP server answers at URL (any status: the simulator "
            "answers 401 without a key), e.g. after starting `eachlabs-pipeline simulator` in "
            "the background. Exit 0 once it answers, 1 if it does not within --timeout."
        ),
    )
    parser.add_argument("url", metavar="URL", help="e.g. http://127.0.0.1:8080/api/v1")
    parser.add_argument(
        "--timeout",
        type=argtypes.positive_float,
        default=60.0,
        metavar="SECONDS",
        help="give up after this long (default: %(default)s)",
    )
    parser.set_defaults(handler=run_wait_ready)
    return parser


def run_wait_ready(args: argparse.Namespace) -> int:
    """Poll URL until any HTTP answer arrives; 0 when it does, 1 on time-out."""
    if not args.url.startswith(("http://", "https://")):
        print(f"error: {args.url!r} is not an http(s) URL", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while True:
        problem = _http_problem(args.url, timeout_s=max(0.1, min(5.0, deadline - time.monotonic())))
        if problem is None:
            return 0
        if time.monotonic() >= deadline:
            print(
                f"error: nothing answered at {args.url} within {args.timeout:g} s ({problem}); "
                "is the simulator running? Its own output says why it stopped.",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)


def _http_problem(url: str, timeout_s: float) -> str | None:
    """None when a server answers HTTP at `url` (whatever the status), else what went wrong."""
    import urllib.error
    import urllib.request

    # Straight to the URL: through a proxy, the proxy's own answer would look like readiness.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s):
            return None
    except urllib.error.HTTPError:  # an answer, just not a 2xx
        return None
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The `SimulatorConfig` described by the parsed command line."""
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        rate_limit_per_s=args.rate_limit,
        rate_limit_burst=args.rate_limit_burst,
        rate_limit_every=args.rate_limit_every,
        retry_after_s=args.retry_after,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        malformed_rate=args.malformed_rate,
        slow_body_ms=args.slow_body_ms,
        slow_body_rate=args.slow_body_rate,
        seed=args.fault_seed,
        list_order=args.list_order,
        list_insert_per_page=args.list_insert_per_page,
    )
    return SimulatorConfig(
        executions=args.executions,
        seed=args.seed,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        running_share=args.running_share,
        long_poll=args.long_poll,
        faults=faults,
    )


def run_simulator(args: argparse.Namespace) -> int:
    """Start the simulator, print where it is, serve until Ctrl-C/SIGTERM; exit code 0."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    simulator = Simulator(config)
    if args.ids_out is not None:
        # Before listening: whoever sees the simulator answer sees the whole file.
        write_atomically(args.ids_out, "".join(f"{i}\n" for i in simulator.execution_ids))
    try:
        simulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop_requested.set()

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        print(f"Eachlabs API simulator listening on {simulator.base_url}", flush=True)
        if args.api_key is None:
            print(f"API key: {simulator.api_key}", flush=True)
        else:
            print("API key: the one given with --api-key", flush=True)
        print(
            f"{config.executions} executions (seed {config.seed}), "
            f"clock x{config.time_scale:g}, simulated time {simulator.now:%Y-%m-%dT%H:%M:%SZ}",
            flush=True,
        )
        if args.ids_out is not None:
            print(f"Execution IDs written to {args.ids_out}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop_requested.wait(0.5):
            pass
    finally:
        simulator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print("Simulator stopped.", flush=True)
    return 0


def write_atomically(path: Path, text: str) -> None:
    """Write `path` so that no reader ever sees it half-written (a temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
