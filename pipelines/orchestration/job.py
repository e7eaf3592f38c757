"""The scheduled job, without an orchestrator: its settings and what a run reports.

A scheduled run loads what the settings of the `[orchestration]` section name (workflows to
list, a file of IDs, a webhook spool) through `pipelines.load.run_load`, the load path of
`eachlabs-pipeline load` (chunked commits, the load lock, the incremental selection, the views
applied at the end), then reads back what the orchestrator shows: each table's rows, the
share of failed IDs, how fresh the newest execution is, which models got worse and a
fingerprint of each view. `pipelines.orchestration.dagster` maps these onto assets and
checks; it holds no load logic of its own.

Settings are read the way dlt reads every other setting: values given for one run (Dagster's
run config) over environment variables (`ORCHESTRATION__WORKFLOWS='["wf_a", "wf_b"]'`,
`ORCHESTRATION__CRON`, ...) over `.dlt/config.toml`'s `[orchestration]` over the defaults.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.eachlabs import FetchReport
from pipelines.eachlabs.errors import ConfigError
from pipelines.eachlabs.settings import DEFAULT_DATASET, DEFAULT_DB_PATH
from pipelines.summary import LoadSummary
from pipelines.views import LOADER_TABLES

SECTIONS = ("orchestration",)
DEFAULT_CRON = "*/15 * * * *"


@dataclass
class JobSettings:
    """What a scheduled run loads, where, and when its checks fail (`.dlt/config.toml`,
    section `[orchestration]`; the README's "Running under Dagster" lists them)."""

    #: Workflows whose executions are listed each run (new or changed ones are fetched).
    workflows: list[str] | None = None
    #: A file of execution IDs (one per line) loaded each run; stored final ones are skipped.
    ids_file: str | None = None
    #: A webhook spool folder (`eachlabs-pipeline webhook --spool DIR`) loaded each run.
    spool: str | None = None
    #: Read every page of each workflow's list, not only the new ones (`--full-listing`).
    full_listing: bool = False
    #: `duckdb` (the file `db_path`) or `postgres` (dlt's PostgreSQL credentials).
    destination: str = "duckdb"
    db_path: str = str(DEFAULT_DB_PATH)
    dataset: str = DEFAULT_DATASET
    #: Where the notebook report is written (`model_performance.html` and its figures).
    report_dir: str = "reports"
    #: When the schedule starts a run (cron syntax, in UTC).
    cron: str = DEFAULT_CRON
    #: The run's check fails when more than this share of the requested IDs ends in
    #: fetch_errors (0.01: 1%).
    max_fetch_error_share: float = 0.01
    #: The freshness check fails when the newest execution started longer ago than this
    #: (86400: a day).
    freshness_max_age_s: float = 86400.0

    def has_inputs(self) -> bool:
        return bool(self.workflows or self.ids_file or self.spool)


#: The names of the settings, in declaration order.
JOB_SETTING_NAMES = tuple(f.name for f in fields(JobSettings))
#: The settings that name what a run loads: a run's config giving one replaces them all.
INPUTS = ("workflows", "ids_file", "spool")
#: The type each setting's text (an environment variable, TOML) is read as.
_TYPES: dict[str, type] = {
    "workflows": list, "full_listing": bool, "max_fetch_error_share": float,
    "freshness_max_age_s": float,
}  # fmt: skip


def _problem(name: str, value: Any) -> str | None:
    from pipelines.targets import DESTINATIONS

    if name == "workflows":
        ok = value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        return None if ok else 'must be a list of workflow IDs, e.g. ["wf_a", "wf_b"]'
    if name == "destination" and value not in DESTINATIONS:
        return f"must be one of {', '.join(DESTINATIONS)}"
    if name == "max_fetch_error_share" and not 0 <= value <= 1:
        return "must be a share between 0 and 1 (0.01 is 1%)"
    if name == "freshness_max_age_s" and not value > 0:
        return "must be a number of seconds above 0"
    if name == "cron" and len(str(value).split()) != 5:
        return "must be a cron string of five fields, e.g. '*/15 * * * *'"
    return None


def _setting(name: str, given: Mapping[str, Any]) -> Any:
    """`given[name]`, else `orchestration.<name>` from dlt's config providers (exactly that
    key: never a bare `CRON` or `DATASET` from elsewhere), else the default; checked."""
    import dlt
    from dlt.common.configuration.exceptions import ConfigurationException

    if given.get(name) is not None:
        value, where = given[name], "the run's config"
    else:
        where = f"ORCHESTRATION__{name.upper()} or .dlt/config.toml [orchestration]"
        kind = _TYPES.get(name, str)
        try:
            value = dlt.config.get(f"{SECTIONS[0]}.{name}", kind)
        except ConfigurationException:
            example = ' (JSON, e.g. ["wf_a", "wf_b"])' if kind is list else ""
            raise ConfigError(
                f"orchestration setting {name} must be a {kind.__name__}{example} (from {where})"
            ) from None
        if value is None:
            return getattr(_DEFAULTS, name)
    problem = _problem(name, value)
    if problem:
        raise ConfigError(f"orchestration setting {name} = {value!r} {problem} (from {where})")
    return value


_DEFAULTS = JobSettings()


def resolve_job_settings(
    given: Mapping[str, Any] | None = None, *, only: tuple[str, ...] = JOB_SETTING_NAMES
) -> JobSettings:
    """The settings: `given` (a run's config; None values ignored) over dlt's config providers
    (`ORCHESTRATION__<NAME>`, then `.dlt/config.toml` `[orchestration]`) over the defaults.

    Args:
        only: Read and check just these settings; the others keep their defaults.

    Raises:
        ConfigError: an unknown name, or a value that cannot be read or breaks its rule (the
            message names the setting and where it came from).
    """
    given = dict(given or {})
    unknown = set(given) - set(JOB_SETTING_NAMES)
    if unknown:
        raise ConfigError(f"unknown orchestration settings {sorted(unknown)}")
    return JobSettings(**{name: _setting(name, given) for name in only})


def schedule_cron() -> str:
    """The `cron` setting alone: what the definitions need when they load."""
    return resolve_job_settings(only=("cron",)).cron


def load(
    settings: JobSettings, on_progress: Callable[[FetchReport], None] | None = None
) -> LoadSummary:
    """One scheduled load: `eachlabs-pipeline load` with the job's inputs and destination.

    Raises:
        ConfigError: the job names nothing to load, or a setting is wrong (see `run_load`).
    """
    from pipelines.cli_io import install_log_filters, read_id_file
    from pipelines.load import run_load

    install_log_filters()  # dlt's notes on the loader's own Arrow schemas, as in the CLI

    if not settings.has_inputs():
        raise ConfigError(
            "the scheduled load names nothing to load: set workflows, ids_file or spool in "
            ".dlt/config.toml [orchestration] (or ORCHESTRATION__WORKFLOWS='[\"wf_id\"]', ...) "
            "or in the run's config"
        )
    ids = read_id_file(Path(settings.ids_file), "ids_file") if settings.ids_file else []
    return run_load(
        ids,
        workflows=settings.workflows or (),
        spool=Path(settings.spool) if settings.spool else None,
        full_listing=settings.full_listing,
        db_path=Path(settings.db_path),
        dataset=settings.dataset,
        destination=settings.destination,
        on_progress=on_progress,
    )


def _frames(settings: JobSettings, queries: Mapping[str, str]) -> dict[str, pd.DataFrame]:
    from pipelines.report import read_frames

    return read_frames(
        Path(settings.db_path),
        settings.dataset,
        queries,
        views=(),
        destination=settings.destination,
    )


def table_rows(settings: JobSettings) -> dict[str, int]:
    """Rows in each of the loader's tables (read-only)."""
    query = " union all ".join(
        f"select '{table}' as name, count(*) as n from {{schema}}.{table}"
        for table in LOADER_TABLES
    )
    frame = _frames(settings, {"rows": query})["rows"]
    return {str(name): int(n) for name, n in zip(frame["name"], frame["n"], strict=True)}


@dataclass(frozen=True)
class CheckOutcome:
    """A check's verdict: passed or not, one sentence, and the figures behind it."""

    passed: bool
    description: str
    metadata: dict[str, Any]


def fetch_error_share(summary: LoadSummary, limit: float) -> CheckOutcome:
    """Did at most `limit` of the run's requested IDs end in fetch_errors?

    Counted from the run's own summary (the rows it wrote to fetch_errors: failed, not found,
    rejected or unreadable, and failed listings), not read back from the table, which a load
    starting right after this one may already have replaced. Not found (404) counts too: a
    list of IDs the API does not know is worth a look. Errors without any requested ID (a
    workflow whose listing failed) are a share of 1.
    """
    errors, requested = summary.error_rows, summary.requested
    share = errors / requested if requested else float(errors > 0)
    passed = share <= limit
    verdict = "within" if passed else "over"
    return CheckOutcome(
        passed,
        f"{errors} of {requested} requested IDs in fetch_errors ({share:.2%}), {verdict} the "
        f"limit of {limit:.2%}",
        {"share": share, "fetch_errors": errors, "requested": requested, "limit": limit},
    )


def freshness(settings: JobSettings, now: datetime | None = None) -> CheckOutcome:
    """Did the newest execution in `executions` start at most `freshness_max_age_s` ago?"""
    query = "select max(started_at) as newest, count(*) as n from {schema}.executions"
    row = _frames(settings, {"newest": query})["newest"].iloc[0]
    limit = settings.freshness_max_age_s
    if not row["n"] or pd.isna(row["newest"]):
        return CheckOutcome(
            False, "executions holds no execution with a start time", {"limit_s": limit}
        )
    newest = pd.Timestamp(row["newest"]).to_pydatetime()
    age = ((now or datetime.now(UTC)) - newest).total_seconds()
    passed = age <= limit
    return CheckOutcome(
        passed,
        f"the newest execution started {_duration(age)} ago "
        + ("(limit " if passed else "(older than the limit of ")
        + f"{_duration(limit)})",
        {"newest_started_at": newest.isoformat(), "age_s": round(age, 1), "limit_s": limit},
    )


def _duration(seconds: float) -> str:
    if abs(seconds) < 3600:
        return f"{seconds / 60:.0f} min"
    if abs(seconds) < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def got_worse(settings: JobSettings) -> CheckOutcome:
    """Which models got worse, from the view `model_recent_changes` (the report's "what got
    worse" table): passed when none did."""
    from pipelines.report import RECENT_CHANGES_SQL, format_recent_changes, group_label

    recent = _frames(settings, {"recent": RECENT_CHANGES_SQL})["recent"]
    worse = recent[recent["latency_regressed"] | recent["failures_regressed"]]
    models = [group_label(row.step_type, row.model) for row in worse.itertuples(index=False)]
    if models:
        description = f"{len(models)} got worse in the last 7 days: {', '.join(models)}"
    else:
        description = "no model got worse in the last 7 days"
    return CheckOutcome(
        not models,
        description,
        {"models": models, "what_got_worse": format_recent_changes(recent)},
    )


def view_states(
    settings: JobSettings, views: Mapping[str, str]
) -> dict[str, tuple[int, str | None]]:
    """Each view's row count and, for a reporting view (`views`: name -> kind), a fingerprint
    of its rows: the same rows in any order give the same fingerprint (doubles rounded to 9
    decimals, so the last bits of a sum do not count). A base view, with a row per execution
    or step, is only counted."""
    queries = {
        name: f"select * from {{schema}}.{name}"
        if kind == "reporting"
        else f"select count(*) as n from {{schema}}.{name}"
        for name, kind in views.items()
    }
    states: dict[str, tuple[int, str | None]] = {}
    for name, frame in _frames(settings, queries).items():
        if views[name] == "reporting":
            states[name] = (len(frame), fingerprint(frame))
        else:
            states[name] = (int(frame["n"].iloc[0]), None)
    return states


def fingerprint(frame: pd.DataFrame) -> str:
    floats = frame.select_dtypes(include="floating").columns
    rows = pd.util.hash_pandas_object(
        frame.assign(**{column: frame[column].round(9) for column in floats}), index=False
    )
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(int(rows.sum()).to_bytes(8, "little"))  # order-free: a wrapping sum
    return digest.hexdigest()[:16]


def render_report(settings: JobSettings) -> tuple[Path, int]:
    """`eachlabs-pipeline report --out <report_dir>`: the HTML's path and the figure count."""
    from pipelines.notebook import render_report as render

    files = render(
        Path(settings.db_path),
        settings.dataset,
        Path(settings.report_dir),
        destination=settings.destination,
    )
    return files.html, len(files.figures)
