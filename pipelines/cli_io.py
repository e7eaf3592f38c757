"""What the command reads and prints: execution IDs from arguments, a file or stdin; report
parameters; progress and summary lines (each starting with a UTC timestamp, for log files);
one-line errors; and quieting dlt's log noise. Imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.eachlabs.errors import ConfigError
from pipelines.eachlabs.ids import parse_id_lines

if TYPE_CHECKING:
    from pipelines.eachlabs.helpers import FetchReport
    from pipelines.eachlabs.listing import WorkflowListing
    from pipelines.summary import LoadSummary


def err(message: str) -> None:
    print(f"eachlabs-pipeline: {message}", file=sys.stderr)


def stamp() -> str:
    """ISO-8601 UTC time that starts every progress and summary line (for log files)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def progress_line(report: FetchReport) -> str | None:
    """`fetched 120 of 400 (30%): ...`, or None before anything is to be fetched."""
    total = report.requested - report.rejected
    if not total:
        return None
    return (
        f"fetched {report.done} of {total} ({100 * report.done / total:.0f}%): "
        f"{report.loaded} loaded, {report.not_found} not found, {report.failed} failed"
    )


def print_progress(report: FetchReport) -> None:
    line = progress_line(report)
    if line is not None:
        print(f"{stamp()} {line}", file=sys.stderr, flush=True)


def print_listing(listing: WorkflowListing) -> None:
    print(f"{stamp()} listed {listing.describe()}", file=sys.stderr, flush=True)


def print_commit(summary: LoadSummary) -> None:
    fetch = summary.fetch
    print(
        f"{stamp()} committed chunk {summary.chunks}: {fetch.done} of "
        f"{fetch.requested - fetch.rejected} "
        "IDs done; an interrupt from now on keeps them",
        file=sys.stderr,
        flush=True,
    )


def print_summary(summary: LoadSummary) -> None:
    print(f"{stamp()} {summary.describe()}")
    if summary.all_not_found:
        err(
            f"the API knows none of the {summary.fetch.not_found} requested executions (404): "
            "check --base-url / SOURCES__EACHLABS__BASE_URL and that the key belongs to the "
            "workspace that ran them"
        )
    errors = summary.fetch.errors
    for row in errors[:10]:
        status = row["http_status"] if row["http_status"] is not None else "-"
        workflow = f"workflow {row['workflow_id']}" if row.get("workflow_id") else "body"
        subject = row["execution_id"] or workflow
        print(f"  {subject}: [{status}] {row['error']}", file=sys.stderr)
    if len(errors) > 10:
        print(f"  ... and {len(errors) - 10} more in fetch_errors", file=sys.stderr)


def print_report_progress(line: str) -> None:
    print(f"{stamp()} report: {line}", file=sys.stderr, flush=True)


def is_dlt_step_failure(exc: BaseException) -> bool:
    """A failure inside one of dlt's steps (extract, normalise, load)? dlt is imported already
    if the error came from it."""
    dlt_exceptions = sys.modules.get("dlt.pipeline.exceptions")
    return dlt_exceptions is not None and isinstance(exc, dlt_exceptions.PipelineStepFailed)


def dlt_failure_message(exc: BaseException) -> str:
    """One line for a failure inside dlt; promises a resume only when a load is pending."""
    step = getattr(exc, "step", "?")
    cause = exc.__cause__ or exc
    first_line = str(cause).splitlines()[0] if str(cause) else ""
    message = f"dlt failed in its {step} step: {type(cause).__name__}: {first_line}."
    message += " Run again with -v for details"
    if getattr(exc, "has_pending_load", False):
        message += "; what was fetched is kept and loaded by the next run"
    return message


class JsonHintNoise(logging.Filter):
    """Drops dlt's warning that our JSON column hints differ from the Arrow string type.

    JSON columns travel as Arrow strings holding JSON text and the `json` hint is how dlt is
    told to create them as JSON columns: the difference is the point, not a problem.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "several column hints were different" not in record.getMessage()


def install_log_filters() -> None:
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, JsonHintNoise) for f in dlt_logger.filters):
        dlt_logger.addFilter(JsonHintNoise())


def decode_lines(data: bytes, name: str) -> list[str]:
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name} is not UTF-8 text (line {line}); save it as UTF-8") from None


def read_id_file(path: Path, name: str) -> list[str]:
    """The execution IDs in a file, one per line (blank lines and `#` comments skipped);
    `name` (the flag or setting) starts the error message of an unreadable file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {name} {path}: {exc.strerror}") from None
    return parse_id_lines(decode_lines(data, f"{name} {path}"))


def read_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.ids)
    if args.ids_file == "-":
        ids.extend(parse_id_lines(decode_lines(sys.stdin.buffer.read(), "stdin")))
    elif args.ids_file:
        ids.extend(read_id_file(Path(args.ids_file), "--ids-file"))
    elif not ids and not args.workflows and not args.jsonl and args.spool is None:
        raise ConfigError(
            "no executions given: pass IDs as arguments, --ids-file PATH, --workflow WF, "
            "--from-jsonl PATH or --from-spool DIR"
        )
    return ids


def parameter(text: str) -> tuple[str, Any]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE, e.g. top_n=5")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value
