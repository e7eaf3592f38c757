"""The simulator's application layer: the two read endpoints as plain calls, no sockets.

`SimulatorApp.handle(method, path, query, headers)` answers a `Response` (status, headers,
body) from the generated `Dataset`, the hand-made payloads and the simulated clock (the list
endpoint's summaries, orders and new arrivals come from `listing.py`). A long-poll
on a running execution blocks the calling thread until the execution changes (the clock
passes its end, `advance`, `put_execution`, `remove_execution`, `stop_waiting`) or its
`timeout` runs out, so tests can drive it from a thread without any HTTP. `server.py` puts it
behind a `ThreadingHTTPServer` and adds faults and the request log.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pipelines.simulator.listing import (
    HAND_MADE_FLOW_NAME,
    ListOrder,
    inserted_execution,
    summary_of_payload,
)
from pipelines.simulator.plans import US, Dataset
from pipelines.simulator.render import render_execution, render_summary
from pipelines.simulator.summaries import summary_facts

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


@dataclass
class Response:
    """One answer of the API, before any transport.

    `is_running` and `finish_us` describe an execution still running: whether a long-poll
    should wait, and the simulated instant at which it finishes by itself (None: never alone).
    `long_poll` says how a `GET /executions/{id}` ended (see `LONG_POLL_OUTCOMES`), so tests
    can check the long-poll by what happened rather than by how long it took.
    """

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    is_running: bool = False
    finish_us: int | None = None
    long_poll: str | None = None


#: How a `GET /executions/{id}` ended: answered at once (finished, unknown, or long-poll off),
#: after a change during the wait (it finished, the clock was advanced, it was replaced or
#: removed), at the end of `timeout` while still running, or released by the server stopping.
LONG_POLL_OUTCOMES = ("at_once", "changed", "timeout", "stopping")


class SimClock:
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


class SimulatorApp:
    """What the simulator answers, and the state behind it (see the module docstring).

    Args:
        dataset: The generated executions.
        api_key: The key accepted in `X-API-Key`.
        time_scale: Simulated seconds per real second once `start_clock` is called; 0 freezes
            the clock, which then only moves with `advance`.
        long_poll: When False, running executions are answered at once whatever `timeout`.
        list_order: "newest_first", or "shuffled": the list endpoint orders each workflow's
            executions by `listing.shuffle_key`, the same order on every request (`ListOrder`).
        list_insert_per_page: After serving each list page of a workflow, create this many new
            executions of it (hand-made, completed, started now), newest of all.
    """

    def __init__(
        self,
        dataset: Dataset,
        api_key: str,
        *,
        time_scale: float = 0.0,
        long_poll: bool = True,
        list_order: str = "newest_first",
        list_insert_per_page: int = 0,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if list_insert_per_page < 0:
            raise ValueError("list_insert_per_page must be >= 0")
        self.dataset = dataset
        self._api_key = api_key
        self._long_poll_enabled = long_poll
        self._order = ListOrder(dataset, list_order)
        self._list_insert_per_page = list_insert_per_page
        self._plan = lru_cache(maxsize=PLAN_CACHE_SIZE)(dataset.plan)
        self._facts = lru_cache(maxsize=PLAN_CACHE_SIZE)(
            lambda index: summary_facts(dataset, index, self._plan(index))
        )
        self.clock = SimClock(dataset.start_us, time_scale)
        self._lock = threading.Lock()
        # Bumped (and waiters woken) whenever what a long-poll sees may have changed.
        # One lock for both: a long-poll counts itself in `_waiting` under the lock it waits
        # with, and only `_waiting_changed` hears about it (not the other long-polls).
        changes_lock = threading.RLock()
        self._changed = threading.Condition(changes_lock)
        self._waiting_changed = threading.Condition(changes_lock)
        self._version = 0
        self._waiting = 0  # long-polls waiting right now
        # Per ID: the body served, it decoded, and the caller's summary overrides.
        self._hand_made: dict[str, tuple[bytes, dict[str, Any], dict[str, Any] | None]] = {}
        self._removed: set[str] = set()
        self._inserted_ids: list[str] = []
        self._insert_count = 0
        self._is_stopping = False

    # --- state -----------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def now(self) -> datetime:
        """The simulated time."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.clock.now_us())

    @property
    def inserted_execution_ids(self) -> list[str]:
        """IDs of the executions `list_insert_per_page` created so far, oldest first."""
        with self._lock:
            return list(self._inserted_ids)

    def start_clock(self) -> None:
        """Let a scaled clock run from now on (and let long-polls wait again after a stop)."""
        self._is_stopping = False
        self.clock.start()

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward and wake long-polls to re-check."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.clock.advance(seconds)
        self._notify_changed()

    def stop_waiting(self) -> None:
        """Release every waiting long-poll at once, and answer later ones without waiting."""
        self._is_stopping = True
        self._notify_changed()

    def put_execution(
        self, payload: Mapping[str, Any], summary: Mapping[str, Any] | None = None
    ) -> None:
        """Serve `payload` verbatim for its `execution_id` (adds, or replaces any earlier one).

        Its status never progresses. It also appears in the list endpoint of its `workflow_id`,
        first (the newest put first), with a summary derived from the payload
        (`listing.summary_of_payload`).

        Args:
            payload: The `GET /executions/{id}` body; needs a string `execution_id`.
            summary: Summary fields that override or extend the derived ones (for example
                `{"dry_run": True, "cost": 0.12, "deleted_at": "...", "api_key": "k"}`); a
                field mapped to None is left out of the summary.
        """
        execution_id = payload.get("execution_id") if isinstance(payload, Mapping) else None
        if not isinstance(execution_id, str) or not execution_id:
            raise ValueError("payload needs a non-empty string 'execution_id'")
        if summary is not None and (
            not isinstance(summary, Mapping) or not all(isinstance(k, str) for k in summary)
        ):
            raise ValueError("summary must be a mapping of field names to values")
        overrides = json.loads(json.dumps(dict(summary))) if summary is not None else None
        try:
            body = json.dumps(dict(payload), ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate: JSON can still carry it as an escape
            body = json.dumps(dict(payload)).encode()
        with self._lock:
            self._hand_made.pop(execution_id, None)  # re-putting moves it to the newest slot
            self._hand_made[execution_id] = (body, json.loads(body), overrides)
            self._removed.discard(execution_id)
        self._notify_changed()

    def remove_execution(self, execution_id: str) -> None:
        """Answer 404 for this ID from now on (hand-made or generated).

        Raises:
            KeyError: nothing is served under this ID.
        """
        with self._lock:
            was_hand_made = self._hand_made.pop(execution_id, None) is not None
            is_generated = execution_id in self.dataset.index
            if not was_hand_made and (not is_generated or execution_id in self._removed):
                raise KeyError(execution_id)
            if is_generated:
                self._removed.add(execution_id)
        self._notify_changed()

    # --- requests --------------------------------------------------------------------------

    def is_authorised(self, headers: Mapping[str, str]) -> bool:
        """Whether `headers` carry the right `X-API-Key` (compared in constant time)."""
        given_key = api_key_of(headers)
        return bool(given_key) and hmac.compare_digest(
            given_key.encode("utf-8", "surrogateescape"), self._api_key.encode()
        )

    def handle(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> Response:
        """The answer to one request; a long-poll blocks here (see the module docstring).

        Args:
            method: HTTP method, e.g. "GET".
            path: The URL path, still percent-encoded (`split_target` gives it).
            query: Query parameters, first value of each.
            headers: Request headers; the key's name is matched case-insensitively.
        """
        if not self.is_authorised(headers):
            return error_response(401, "Invalid or missing API key")
        execution_match = _EXECUTION_PATH.match(path)
        list_match = _LIST_PATH.match(path)
        if execution_match is None and list_match is None:
            return error_response(404, "not found")
        if method != "GET":
            response = error_response(405, "method not allowed")
            response.headers["Allow"] = "GET"
            return response
        if execution_match is not None:
            timeout_s = _parse_int(query, "timeout", DEFAULT_TIMEOUT_S, 1, MAX_TIMEOUT_S)
            if timeout_s is None:
                return error_response(
                    400, f"timeout must be an integer between 1 and {MAX_TIMEOUT_S}"
                )
            return self._long_poll(unquote(execution_match.group(1)), timeout_s)
        offset = _parse_int(query, "offset", 0, 0, None)
        if offset is None:
            return error_response(400, "offset must be an integer >= 0")
        limit = _parse_int(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        if limit is None:
            return error_response(400, f"limit must be an integer between 1 and {MAX_LIMIT}")
        bulk_id = query.get("bulk_id") or None
        return self._list_executions(unquote(list_match.group(1)), offset, limit, bulk_id)

    def execution_response(self, execution_id: str) -> Response:
        """What `GET /executions/{id}` answers now, without waiting."""
        with self._lock:
            hand_made = self._hand_made.get(execution_id)
            is_removed = execution_id in self._removed
        if hand_made is not None:
            body, payload, _overrides = hand_made
            return Response(200, body, is_running=payload.get("status") == "running")
        index = self.dataset.index.get(execution_id)
        if index is None or is_removed:
            return error_response(404, "execution not found")
        plan = self._plan(index)
        now_us = self.clock.now_us()
        is_running = plan.status_at(now_us) == "running"
        return Response(
            200,
            _json(render_execution(plan, now_us)),
            is_running=is_running,
            finish_us=plan.terminal_us if is_running else None,
        )

    def _long_poll(self, execution_id: str, timeout_s: int) -> Response:
        """Answer at once unless running; then wait up to `timeout_s` real seconds for a change.

        A generated execution finishes on the simulated clock; any execution may also change
        through `advance`, `put_execution` or `remove_execution`, which wake the wait.
        """
        deadline = time.monotonic() + timeout_s
        has_waited = False
        while True:
            with self._changed:
                version = self._version
            response = self.execution_response(execution_id)
            remaining = deadline - time.monotonic()
            if not response.is_running or not self._long_poll_enabled:
                response.long_poll = "changed" if has_waited else "at_once"
            elif self._is_stopping:
                response.long_poll = "stopping"
            elif remaining <= 0:
                response.long_poll = "timeout"
            if response.long_poll is not None:
                return response
            wait_s = remaining
            if response.finish_us is not None:
                until_finish_s = self.clock.real_seconds_until(response.finish_us)
                if until_finish_s is not None:
                    wait_s = min(wait_s, until_finish_s + 0.001)
            with self._changed:
                if self._version == version:
                    self._waiting += 1
                    self._waiting_changed.notify_all()
                    try:
                        self._changed.wait(wait_s)
                    finally:
                        self._waiting -= 1
            has_waited = True

    def wait_for_waiting(self, count: int, timeout_s: float = 60.0) -> bool:
        """Block until at least `count` long-polls are waiting at once; False on time-out.

        Lets a test act once requests are known to wait, instead of sleeping and hoping."""
        with self._waiting_changed:
            return self._waiting_changed.wait_for(lambda: self._waiting >= count, timeout_s)

    def _list_executions(
        self, workflow_id: str, offset: int, limit: int, bulk_id: str | None
    ) -> Response:
        dataset = self.dataset
        with self._lock:
            hand_made = [
                (execution_id, payload, overrides)
                for execution_id, (_body, payload, overrides) in reversed(self._hand_made.items())
                if payload.get("workflow_id") == workflow_id
            ]
            removed = set(self._removed)
            overridden = set(self._hand_made)
        workflow_index = dataset.workflow_index.get(workflow_id)
        if workflow_index is None and not hand_made:
            return error_response(404, "workflow not found")

        generated: list[int] = []
        if workflow_index is not None:
            if bulk_id is None:
                generated = self._order.listing(workflow_index)
            else:
                members = dataset.bulk_members(bulk_id)
                generated = sorted(
                    (i for i in members if dataset.workflow_of[i] == workflow_index),
                    key=self._order.key,
                )
            if removed or overridden:
                ids = dataset.execution_ids
                generated = [
                    i for i in generated if ids[i] not in removed and ids[i] not in overridden
                ]
        if bulk_id is not None:
            hand_made = [entry for entry in hand_made if entry[1].get("bulk_id") == bulk_id]

        total = len(hand_made) + len(generated)
        page_end = min(total, offset + limit)
        now_us = self.clock.now_us()
        flow_name = (
            dataset.workflows[workflow_index].name
            if workflow_index is not None
            else HAND_MADE_FLOW_NAME
        )
        items = []
        for entry in self._order.page(hand_made, generated, offset, page_end):
            if isinstance(entry, int):
                items.append(render_summary(self._plan(entry), now_us, self._facts(entry)))
            else:
                _execution_id, payload, overrides = entry
                items.append(summary_of_payload(payload, flow_name, now_us, overrides))
        body = {
            "executions": items,
            "offset": page_end if page_end < total else None,
            "total_count": total,
        }
        response = Response(200, _json(body))
        if self._list_insert_per_page:
            self._insert_executions(workflow_id, flow_name)
        return response

    def _insert_executions(self, workflow_id: str, flow_name: str) -> None:
        """Create `list_insert_per_page` new executions of the workflow, each the newest.

        The n-th one created starts n microseconds after the simulated time, so each is
        strictly newer than every execution before it.
        """
        count = self._list_insert_per_page
        with self._lock:
            first = self._insert_count + 1
            self._insert_count += count
        now_us = self.clock.now_us()
        for number in range(first, first + count):
            payload, summary = inserted_execution(
                self.dataset, workflow_id, number, now_us + number, flow_name
            )
            self.put_execution(payload, summary)
            with self._lock:
                self._inserted_ids.append(payload["execution_id"])

    def _notify_changed(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """A request target (`/path?query`) as its path and query (first value of each name)."""
    split = urlsplit(target)
    query = {
        name: values[0] for name, values in parse_qs(split.query, keep_blank_values=True).items()
    }
    return split.path, query


def execution_id_of(path: str) -> str | None:
    """The execution ID a `GET /executions/{id}` path names, None for any other path."""
    match = _EXECUTION_PATH.match(path)
    return unquote(match.group(1)) if match else None


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The first `X-API-Key` header, whatever its case (as `http.client.HTTPMessage.get`)."""
    wanted = API_KEY_HEADER.lower()
    return next((value for name, value in headers.items() if name.lower() == wanted), None)


def error_response(status: int, message: str) -> Response:
    """An error answer: `{"error": message}`."""
    return Response(status, _json({"error": message}))


def _parse_int(
    query: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None
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


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
