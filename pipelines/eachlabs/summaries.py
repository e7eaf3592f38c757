"""The list endpoint's `ExecutionSummary` as the summary columns of `executions`.

The summary knows what the detail endpoint does not: the workflow's name and version, when the
execution was created, last updated and soft-deleted, whether it was a dry run (no model was
called), its cost and who triggered it. A summary is trusted no further than a payload: a
field of the wrong kind becomes null, never an error, so one odd summary cannot stop a
workflow's listing.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Mapping
from typing import Any

from pipelines.eachlabs.errors import PayloadError
from pipelines.eachlabs.normalise import number_or_none, parse_timestamp_us, to_json
from pipelines.eachlabs.tables import SUMMARY_TYPES

#: Keys of a cost object holding its total, in the order they are looked for.
COST_TOTAL_KEYS = ("total", "amount", "total_cost", "usd")
#: Characters of the SHA-256 of `api_key` kept as `triggered_by`.
TRIGGERED_BY_CHARS = 16
#: Summary columns whose values repeat across a workflow's executions.
_SHARED_TEXT = ("flow_name", "version_id", "triggered_by")


def summary_columns(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary columns of one `ExecutionSummary` (timestamps in epoch microseconds).

    `cost` is kept as JSON text of the value sent; `cost_total` is read from it (see
    `cost_total`). `api_key` may be a key: only the first 16 hex characters of its SHA-256
    are kept, as `triggered_by`, which groups executions by who ran them without storing the
    identifier itself. A missing `dry_run` is false, the spec's default.
    """
    dry_run = summary.get("dry_run", False)
    cost = summary.get("cost")
    return {
        "flow_name": _text(summary.get("flow_name")),
        "version_id": _text(summary.get("version_id")),
        "created_at": _timestamp(summary.get("created_at")),
        "updated_at": _timestamp(summary.get("updated_at")),
        "deleted_at": _timestamp(summary.get("deleted_at")),
        "dry_run": dry_run if isinstance(dry_run, bool) else None,
        "cost": _json_or_none(cost),
        "cost_total": cost_total(cost),
        "triggered_by": triggered_by(summary.get("api_key")),
    }


def summary_values(summary: Mapping[str, Any]) -> tuple[Any, ...]:
    """The summary columns' values in `SUMMARY_TYPES` order: what a run keeps per execution
    until it is fetched (a tuple, and the names many executions share interned, hold a
    100,000-execution listing in about half the memory of dicts)."""
    columns = summary_columns(summary)
    for name in _SHARED_TEXT:
        if columns[name] is not None:
            columns[name] = sys.intern(columns[name])
    return tuple(columns[name] for name in SUMMARY_TYPES)


def cost_total(cost: Any) -> float | None:
    """A cost as one number: the number itself, or an object's first numeric `total`,
    `amount`, `total_cost` or `usd`; otherwise (a string, a list, an object without such a
    field, a boolean, a non-finite number) None."""
    if isinstance(cost, Mapping):
        for key in COST_TOTAL_KEYS:
            value = _finite(cost.get(key))
            if value is not None:
                return value
        return None
    return _finite(cost)


def triggered_by(api_key: Any) -> str | None:
    """The first 16 hex characters of the SHA-256 of `api_key` (None when it is not a
    non-empty string)."""
    if not isinstance(api_key, str) or not api_key:
        return None
    digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:TRIGGERED_BY_CHARS]


def _finite(value: Any) -> float | None:
    number = number_or_none(value)
    return number if number is not None and math.isfinite(number) else None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be stored as text
        return None
    return value


def _timestamp(value: Any) -> int | None:
    try:
        return parse_timestamp_us(value, "summary timestamp")
    except PayloadError:
        return None


def _json_or_none(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return to_json(value)
    except (ValueError, TypeError, RecursionError):  # NaN, nesting too deep
        return None
