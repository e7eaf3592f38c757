"""The loader's settings, each defined once: name, type, default, rule and doc; and the API's
constants.

`EachlabsSettings` declares them; `resolve_settings` resolves them under `[sources.eachlabs]`
the way dlt resolves a source's arguments: explicit values (command-line flags) first, then the
environment (`SOURCES__EACHLABS__<NAME>`), then .dlt/secrets.toml and .dlt/config.toml, then
the default written here. The source, the client, the CLI and `load` read their settings from
it; tests check that .dlt/config.toml and the README's Configuration table list exactly these.

This module does not import dlt (importing dlt takes about half a second): the CLI builds its
flags and answers `--help` from it alone. dlt's configuration spec is a subclass made in
`pipelines/eachlabs/config_spec.py`, imported when settings are resolved.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pipelines.eachlabs.errors import ConfigError

DEFAULT_BASE_URL = "https://workflows.eachlabs.run/api/v1"
API_KEY_HEADER = "X-API-Key"

#: Execution statuses after which an execution never changes again.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
#: Statuses worth another try: rate limiting and transient server errors.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

MAX_CONCURRENCY = 256
#: Seconds a load waits for another load into the same DuckDB file to finish (`--lock-wait`).
#: A per-run option of `load`, not a source setting: it has no place in .dlt/config.toml.
DEFAULT_LOCK_WAIT_S = 30.0

#: Not `eachlabs.duckdb`: DuckDB names the database (catalog) after the file, and a catalog
#: named like the dataset's schema makes every `eachlabs.<table>` reference ambiguous.
DEFAULT_DB_PATH = Path("eachlabs_data.duckdb")
DEFAULT_DATASET = "eachlabs"

#: Where dlt looks the settings up: `[sources.eachlabs]`, `SOURCES__EACHLABS__*`.
SECTIONS = ("sources", "eachlabs")

_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII, as an HTTP header value needs
_BASE_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
NO_KEY_HINT = (
    "set SOURCES__EACHLABS__API_KEY or api_key under [sources.eachlabs] in .dlt/secrets.toml"
)


# --- rules: each returns what is wrong with a value, or None ---------------------------------


def _whole(low: int, high: int | None = None, why: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if high is not None:
            if not is_int or not low <= value <= high:
                return f"must be between {low} and {high}{why}"
        elif not is_int or value < low:
            return f"must be a whole number of at least {low}, not {value!r}"
        return None

    return check


def _seconds(*, above_zero: bool) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if above_zero and not (is_number and value > 0):
            return f"must be a number of seconds above 0, not {value!r}"
        if not above_zero and not (is_number and value >= 0):
            return f"must be a number of seconds, not negative ({value!r})"
        return None

    return check


def _api_key(value: Any) -> str | None:
    if not value:
        return f"is empty: {NO_KEY_HINT}"
    if not isinstance(value, str) or not _HEADER_SAFE.fullmatch(value):
        # Never echo the key: say what is wrong with it, not what it is.
        return (
            "contains spaces, line breaks or other characters an HTTP header cannot carry; "
            "check SOURCES__EACHLABS__API_KEY / .dlt/secrets.toml for stray whitespace or quotes"
        )
    return None


#: The shortest webhook token accepted, and how to make a good one.
WEBHOOK_TOKEN_MIN_CHARS = 32
WEBHOOK_TOKEN_HINT = (
    "make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` and set "
    "SOURCES__EACHLABS__WEBHOOK_TOKEN or webhook_token under [sources.eachlabs] in "
    ".dlt/secrets.toml"
)
_TOKEN = re.compile(r"[A-Za-z0-9_~.-]+")


def _webhook_token(value: Any) -> str | None:
    if value is None:  # only the receiver needs one; it says so itself
        return None
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        # Never echo the token: say what is wrong with it, not what it is.
        return (
            "may hold only letters, digits and '-', '_', '.', '~' (it is part of the URL path); "
            + WEBHOOK_TOKEN_HINT
        )
    if len(value) < WEBHOOK_TOKEN_MIN_CHARS:
        return f"is shorter than {WEBHOOK_TOKEN_MIN_CHARS} characters: {WEBHOOK_TOKEN_HINT}"
    return None


def _base_url(value: Any) -> str | None:
    if isinstance(value, str) and _BASE_URL.fullmatch(value):
        return None
    return (
        f"{str(value)[:100]!r} is not an http(s) URL such as {DEFAULT_BASE_URL}; "
        "fix --base-url or SOURCES__EACHLABS__BASE_URL"
    )


def _setting(default: Any, doc: str, rule: Callable[[Any], str | None], **extra: Any) -> Any:
    """A field of `EachlabsSettings`: its default, its rule and its doc (dataclass metadata).

    Extra metadata: `message` formats the rule's complaint (default "{name} {problem}");
    `flag` = (option, help) makes it a flag of `eachlabs-pipeline load`.
    """
    return dataclasses.field(default=default, metadata={"doc": doc, "rule": rule, **extra})


@dataclasses.dataclass
class EachlabsSettings:
    """Every setting of the loader (see the module docstring for where values come from).

    Resolved settings are instances of the dlt spec subclass (`config_spec.py`), which marks
    `api_key` as a secret; the defaults (`DEFAULTS`) are an instance of this class.
    """

    api_key: str | None = _setting(
        None,
        "The `X-API-Key`: a secret, in .dlt/secrets.toml or SOURCES__EACHLABS__API_KEY, "
        "never in config.toml.",
        _api_key,
        message="the API key {problem}",
    )
    base_url: str = _setting(
        DEFAULT_BASE_URL,
        "API root.",
        _base_url,
        message="base_url {problem}",
        flag=("--base-url", "API root"),
    )
    concurrency: int = _setting(
        16,
        "Requests in flight at once (1-256).",
        _whole(1, MAX_CONCURRENCY),
        flag=("--concurrency", "requests in flight at once"),
    )
    long_poll_timeout_s: int = _setting(
        1,
        "`timeout` query parameter sent with every request: how long (1-30 s) the API may "
        "hold a running execution before answering. Keep it small so a load never stalls on "
        "running work.",
        _whole(1, 30, " (the API's limits)"),
    )
    request_timeout_s: float = _setting(
        30.0,
        "Seconds one request may take in total (connect, headers and the whole body) before "
        "it is retried; a server that trickles its answer is cut off here too.",
        _seconds(above_zero=True),
    )
    max_attempts: int = _setting(
        5, "Tries per execution for 429, 5xx, time-outs and dropped connections.", _whole(1)
    )
    backoff_base_s: float = _setting(
        0.5,
        "First retry waits about this long, doubling each time (Retry-After wins when sent), "
        "never more than max_retry_delay_s.",
        _seconds(above_zero=False),
    )
    max_retry_delay_s: float = _setting(
        30.0, "Longest wait before a retry.", _seconds(above_zero=False)
    )
    batch_size: int = _setting(2000, "Executions normalised into one columnar batch...", _whole(1))
    batch_max_bytes: int = _setting(
        8 * 1024 * 1024,
        "...and at most about this many bytes of text per batch (8 MiB): a batch is one "
        "parquet row group, which DuckDB reads whole, so memory does not follow payload size.",
        _whole(1),
    )
    chunk_executions: int = _setting(
        10_000,
        "A load commits (one complete dlt load into DuckDB) after this many executions...",
        _whole(1),
    )
    chunk_seconds: float = _setting(
        60.0, "...or after this many seconds...", _seconds(above_zero=True)
    )
    chunk_max_bytes: int = _setting(
        32 * 1024 * 1024,
        "...or once the answers fetched for it reach about this many bytes (32 MiB): DuckDB "
        "holds a chunk's text several times over until it is written to the file, so memory "
        "follows this limit, not payload size. Whichever comes first ends the chunk; an "
        "interrupt loses at most the chunk in flight.",
        _whole(1),
    )

    webhook_token: str | None = _setting(
        None,
        "The secret path segment of `eachlabs-pipeline webhook` (`POST /webhooks/<token>`): "
        "at least 32 URL-safe characters, in .dlt/secrets.toml or "
        "SOURCES__EACHLABS__WEBHOOK_TOKEN, never in config.toml. Only the receiver needs it.",
        _webhook_token,
        message="the webhook token {problem}",
    )
    listing_overlap_s: float = _setting(
        3600.0,
        "`load --workflow` stops paging a workflow once a whole page was created this long "
        "before the newest execution the last run listed (1 hour): executions that appear "
        "late in the list are still found.",
        _seconds(above_zero=False),
    )

    def check(self, names: Iterable[str] | None = None) -> EachlabsSettings:
        """Raise ConfigError naming the first setting (of `names`, default all a load uses:
        not the receiver's `webhook_token`) that breaks its rule; with all settings, also the
        rules between settings. Returns self."""
        chosen = LOAD_SETTINGS if names is None else tuple(names)
        for name in chosen:
            problem = setting_problem(name, getattr(self, name))
            if problem is not None:
                raise ConfigError(problem)
        if names is None and self.request_timeout_s < self.long_poll_timeout_s + 5:
            raise ConfigError(
                f"request_timeout_s ({self.request_timeout_s:g}) must be at least "
                f"long_poll_timeout_s + 5 ({self.long_poll_timeout_s + 5}): the API may hold "
                "a request that long"
            )
        return self

    def __repr__(self) -> str:  # never show a secret
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in SETTING_NAMES if n not in SECRETS)
        return f"EachlabsSettings({shown})"


#: Each setting's field, in the order of .dlt/config.toml and the README's table.
SETTING_FIELDS: dict[str, dataclasses.Field[Any]] = {
    f.name: f for f in dataclasses.fields(EachlabsSettings) if "doc" in f.metadata
}
SETTING_NAMES = tuple(SETTING_FIELDS)
#: The settings that are secrets: .dlt/secrets.toml or the environment only, never shown.
SECRETS = ("api_key", "webhook_token")
#: The settings a load checks: all but the receiver's token (a bad one must not stop loads).
LOAD_SETTINGS = tuple(name for name in SETTING_NAMES if name != "webhook_token")
#: The settings with their defaults (api_key: None).
DEFAULTS = EachlabsSettings()


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for setting `name`, as a message for the user, or None."""
    meta = SETTING_FIELDS[name].metadata
    problem = meta["rule"](value)
    if problem is None:
        return None
    return meta.get("message", "{name} {problem}").format(name=name, problem=problem)


def resolve_settings(
    explicit: Mapping[str, Any] | None = None, *, only: Iterable[str] | None = None
) -> EachlabsSettings:
    """The settings: `explicit` values (flags) over dlt's config providers over the defaults.

    Args:
        explicit: Values that beat every other layer; None values are ignored.
        only: Resolve and check just these settings (the key may then be missing).

    Raises:
        ConfigError: a setting is missing (the key), of the wrong type or breaks its rule.
    """
    given = {name: value for name, value in (explicit or {}).items() if value is not None}
    unknown = set(given) - set(SETTING_NAMES)
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}; known: {', '.join(SETTING_NAMES)}")
    from pipelines.eachlabs.config_spec import resolve_with_dlt

    return resolve_with_dlt(given, accept_partial=bool(only)).check(only)
