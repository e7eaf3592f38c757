"""Fault injection: what can go wrong between a client and the API, on demand and repeatable.

Random faults are drawn from a hash of `(fault seed, request path, how many times that path was
asked)`, so an execution's n-th request meets the same fault on every run whatever order
concurrent requests arrive in. The rate limit is the exception: it depends on real time.

Two faults change what the list endpoint answers rather than how: `list_order` and
`list_insert_per_page` are handed to `SimulatorApp`, which applies them (see `listing.py`).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pipelines.simulator.listing import LIST_ORDERS

#: Actions a `fail_ids` script may name besides an HTTP status code.
SCRIPT_ACTIONS = frozenset({"drop", "malformed", "slow", "ok"})
TRANSIENT_STATUSES = (500, 502, 503)


@dataclass
class FaultConfig:
    """Which faults a simulator injects. The defaults inject none.

    Attributes:
        latency_ms: Delay added before every request is handled.
        jitter_ms: Extra random delay, uniform in [0, jitter_ms].
        rate_limit_per_s: Token bucket refill rate; a request finding the bucket empty gets 429
            with `Retry-After`. None disables it.
        rate_limit_burst: Bucket size (default: `rate_limit_per_s` rounded up, at least 1).
        rate_limit_every: Answer 429 to every N-th request (deterministic alternative).
        retry_after_s: `Retry-After` value sent with scripted 429s and `rate_limit_every`.
        error_rate: Share of requests answered with a status from `error_statuses`.
        error_statuses: Statuses used by `error_rate`.
        drop_rate: Share of requests whose connection is closed without any response.
        malformed_rate: Share of 200 answers whose body is truncated or is not valid JSON.
        slow_body_ms: Time over which a slow body is dribbled out after the headers.
        slow_body_rate: Share of answers sent slowly when `slow_body_ms` > 0.
        fail_ids: Per execution ID, the fate of its first requests, in order: an HTTP status
            (e.g. 503, 429) or one of "drop", "malformed", "slow", "ok". Later requests are
            answered normally. Example: `{"<id>": [503, 503]}`.
        seed: Seed of the random draws (default: the simulator's seed).
        list_order: Order of the list endpoint: "newest_first" (the API's), or "shuffled": the
            same executions in a fixed seed-based permutation, not by `created_at`, the same
            on every request (so paging still gives each execution once).
        list_insert_per_page: After each list page of a workflow is served, this many new
            executions of it are created, newest of all, so later pages shift down (a busy
            API seen by a paging client). `Simulator.inserted_execution_ids` lists them.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_limit_per_s: float | None = None
    rate_limit_burst: int | None = None
    rate_limit_every: int | None = None
    retry_after_s: int = 1
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = TRANSIENT_STATUSES
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    slow_body_ms: float = 0.0
    slow_body_rate: float = 1.0
    fail_ids: Mapping[str, Sequence[int | str]] = field(default_factory=dict)
    seed: int | None = None
    list_order: str = "newest_first"
    list_insert_per_page: int = 0

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate", "malformed_rate", "slow_body_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("latency_ms", "jitter_ms", "slow_body_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.rate_limit_per_s is not None and self.rate_limit_per_s <= 0:
            raise ValueError("rate_limit_per_s must be > 0")
        if self.rate_limit_every is not None and self.rate_limit_every < 1:
            raise ValueError("rate_limit_every must be >= 1")
        if self.retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")
        if self.list_order not in LIST_ORDERS:
            raise ValueError(
                f"list_order must be one of {', '.join(LIST_ORDERS)}, got {self.list_order!r}"
            )
        count = self.list_insert_per_page
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"list_insert_per_page must be an integer >= 0, got {count!r}")
        for execution_id, script in self.fail_ids.items():
            for action in script:
                if isinstance(action, int) and 100 <= action <= 599:
                    continue
                if action in SCRIPT_ACTIONS:
                    continue
                raise ValueError(
                    f"fail_ids[{execution_id!r}]: {action!r} is neither an HTTP status nor one "
                    f"of {sorted(SCRIPT_ACTIONS)}"
                )


@dataclass(frozen=True)
class FaultDecision:
    """The fate of one request. `action` None means: answer normally."""

    latency_s: float = 0.0
    action: str | None = None  # status | drop | malformed | slow | rate_limit
    status: int | None = None
    retry_after_s: int | None = None
    draw: float = 0.0  # a uniform [0, 1) number for shaping the fault (e.g. where to cut)


class FaultInjector:
    """Decides each request's fate from a `FaultConfig`. Thread-safe."""

    def __init__(
        self,
        config: FaultConfig,
        seed: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._seed = config.seed if config.seed is not None else seed
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._path_counts: dict[str, int] = {}
        self._script_positions: dict[str, int] = {}
        self._request_count = 0
        rate = config.rate_limit_per_s
        self._bucket_size = float(config.rate_limit_burst or max(1, math.ceil(rate or 1)))
        self._tokens = self._bucket_size
        self._refilled_at = monotonic()

    def decide(self, path: str, execution_id: str | None) -> FaultDecision:
        """Draw the fate of a request for `path` (and `execution_id` if it names one)."""
        config = self.config
        with self._lock:
            self._request_count += 1
            request_number = self._request_count
            path_number = self._path_counts.get(path, 0) + 1
            self._path_counts[path] = path_number
            scripted = None
            if execution_id is not None and execution_id in config.fail_ids:
                position = self._script_positions.get(execution_id, 0)
                script = config.fail_ids[execution_id]
                if position < len(script):
                    scripted = script[position]
                    self._script_positions[execution_id] = position + 1
            rate_limited_for = self._take_token() if config.rate_limit_per_s else None

        rng = random.Random(_draw_seed(self._seed, path, path_number))
        latency_s = config.latency_ms / 1000.0 + rng.random() * config.jitter_ms / 1000.0
        draw = rng.random()
        if scripted is not None:
            return _scripted(scripted, latency_s, draw, config.retry_after_s)
        if config.rate_limit_every and request_number % config.rate_limit_every == 0:
            return FaultDecision(latency_s, "rate_limit", 429, config.retry_after_s, draw)
        if rate_limited_for is not None:
            return FaultDecision(latency_s, "rate_limit", 429, rate_limited_for, draw)
        if rng.random() < config.error_rate:
            status = config.error_statuses[int(draw * len(config.error_statuses))]
            return FaultDecision(latency_s, "status", status, None, draw)
        if rng.random() < config.drop_rate:
            return FaultDecision(latency_s, "drop", None, None, draw)
        if rng.random() < config.malformed_rate:
            return FaultDecision(latency_s, "malformed", None, None, draw)
        if config.slow_body_ms > 0 and rng.random() < config.slow_body_rate:
            return FaultDecision(latency_s, "slow", None, None, draw)
        return FaultDecision(latency_s, None, None, None, draw)

    def _take_token(self) -> int | None:
        """Token bucket; returns None when a token was taken, else the seconds to wait."""
        rate = float(self.config.rate_limit_per_s or 0)
        now = self._monotonic()
        self._tokens = min(self._bucket_size, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self._tokens) / rate))


def corrupt_body(body: bytes, draw: float) -> bytes:
    """A body that is not valid JSON: cut short, or followed by stray bytes."""
    if draw < 0.5 and len(body) > 2:
        return body[: 1 + int(draw * 2 * (len(body) - 2))]
    return body + b"\n<html><body>upstream reset</body></html>"


def _scripted(
    action: int | str, latency_s: float, draw: float, retry_after_s: int
) -> FaultDecision:
    if action == "ok":
        return FaultDecision(latency_s, None, None, None, draw)
    if isinstance(action, str):
        return FaultDecision(latency_s, action, None, None, draw)
    if action == 429:
        return FaultDecision(latency_s, "rate_limit", 429, retry_after_s, draw)
    return FaultDecision(latency_s, "status", action, None, draw)


def _draw_seed(seed: int, path: str, number: int) -> int:
    digest = hashlib.blake2b(f"{seed}|{path}|{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
