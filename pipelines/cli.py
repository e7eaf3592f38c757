"""The `eachlabs-pipeline` command: parses flags and wires the stages together."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

from pipelines.cli_io import (
    dlt_failure_message,
    err,
    install_log_filters,
    is_dlt_step_failure,
    parameter,
    print_commit,
    print_listing,
    print_progress,
    print_report_progress,
    print_summary,
    read_ids,
)
from pipelines.eachlabs import settings
from pipelines.eachlabs.errors import (
    AuthError,
    ConfigError,
    EachlabsError,
    LockedError,
    ViewError,
)
from pipelines.eachlabs.settings import DEFAULT_DATASET, DEFAULT_DB_PATH
from pipelines.targets import DESTINATIONS

# This module imports neither dlt, DuckDB nor pandas (about a second together): each command
# imports what it needs when it runs, so `--help` and `--version` answer at once.

#: The demo's own file, so that simulated data never mixes into a real load's file.
DEMO_DB_PATH = Path("eachlabs_demo.duckdb")

EXIT_OK = 0
EXIT_FATAL = 1  # bad key, bad settings, bad usage: nothing was loaded
EXIT_PARTIAL = 2  # loaded what it could; some IDs failed (see fetch_errors)
EXIT_LOCKED = 3  # another load or program holds the DuckDB file; what was fetched is kept


def _process_started_at() -> float:
    """When this process started, on the `time.monotonic()` clock (interpreter start-up and
    imports included); now, where /proc does not say."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_after_boot_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        age_s = time.clock_gettime(time.CLOCK_BOOTTIME) - started_after_boot_s
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()
    return time.monotonic() - max(0.0, age_s)


def _package_version() -> str:
    try:
        return version("eachlabs-pipeline")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def _add_target_options(
    parser: argparse.ArgumentParser,
    default_db: Path = DEFAULT_DB_PATH,
    db_help: str = "DuckDB file to load into (created if missing; default: %(default)s)",
) -> None:
    parser.add_argument(
        "--destination",
        choices=DESTINATIONS,
        default=DESTINATIONS[0],
        help="where the tables and views are: duckdb, the file --db (default), or postgres, "
        "the database of DESTINATION__POSTGRES__CREDENTIALS / [destination.postgres."
        "credentials] in .dlt/secrets.toml (credentials never as a flag)",
    )
    parser.add_argument("--db", type=Path, default=default_db, help=db_help)
    parser.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help="schema of the tables and views (default: %(default)s)",
    )


class _Parser(argparse.ArgumentParser):
    """Bad usage exits 1 like every fatal error; 2 means "some IDs failed"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_FATAL, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def, override]
        # A mistyped flag is reported with the usage of the subcommand it was given to.
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            command_parser = getattr(parsed, "command_parser", None) or self
            command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed


def _add_verbose(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log debug details"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="eachlabs-pipeline",
        description="Load Eachlabs workflow executions into DuckDB analytics tables.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    _add_verbose(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    load = subparsers.add_parser(
        "load",
        help="load executions (by ID, by workflow, from files or the webhook spool) into DuckDB",
        description=(
            "Fetch executions by ID, or every execution of a workflow (--workflow), from the "
            "Eachlabs Workflows API, or read their bodies from files (--from-jsonl) or the "
            "webhook receiver's spool (--from-spool), and merge them into the executions, "
            "step_outputs, step_params and fetch_errors tables, then apply the SQL views. "
            "IDs stored with a "
            "final status (completed, failed, cancelled) are not fetched again unless "
            "--refresh-all is given; a listed execution is fetched only when new or changed. "
            "The API key comes from "
            "SOURCES__EACHLABS__API_KEY or [sources.eachlabs] api_key in .dlt/secrets.toml. "
            "Exit codes: 0 all loaded (or not found), 1 fatal (bad key or settings, nothing "
            "loaded), 2 some IDs or workflows failed (see the fetch_errors table), 3 another "
            "load or program holds the DuckDB file (what was fetched is kept for the next run), "
            "130 / 143 interrupted by Ctrl-C / SIGTERM (committed chunks are kept; run again to "
            "finish)."
        ),
    )
    load.add_argument("ids", nargs="*", metavar="ID", help="execution IDs to load")
    load.add_argument(
        "--ids-file",
        metavar="PATH",
        help="file of execution IDs, one per line ('-' = stdin); blank lines and lines "
        "starting with '#' are skipped",
    )
    load.add_argument(
        "--workflow",
        dest="workflows",
        action="append",
        default=[],
        metavar="WF",
        help="also load the executions of workflow WF, found through the API's list "
        "endpoint (repeat for more workflows); a later run pages only down to what the last "
        "one listed and fetches only new or changed executions",
    )
    load.add_argument(
        "--bulk-id",
        metavar="UUID",
        help="with --workflow: list only the executions of this bulk operation",
    )
    load.add_argument(
        "--from-jsonl",
        dest="jsonl",
        action="append",
        default=[],
        metavar="PATH",
        help="also load execution bodies (one JSON object per line, as GET /executions/{id} "
        "answers) from this file, .gz file, folder of *.jsonl[.gz] files, or '-' for stdin "
        "(repeatable); no API key needed unless --verify",
    )
    load.add_argument(
        "--from-spool",
        dest="spool",
        type=Path,
        metavar="DIR",
        help="also load the closed files of the webhook receiver's spool folder, then move "
        "them to DIR/loaded/",
    )
    load.add_argument(
        "--include-open",
        action="store_true",
        help="with --from-spool: also load the complete lines of the file the receiver is "
        "still writing (it is not moved)",
    )
    load.add_argument(
        "--verify",
        action="store_true",
        help="with --from-jsonl / --from-spool: fetch each execution from the API by ID and "
        "load that answer instead of the body (an ID the API does not know is not loaded)",
    )
    load.add_argument(
        "--full-listing",
        action="store_true",
        help="with --workflow: read every page of the list instead of stopping where the "
        "last run's listing ended",
    )
    _add_target_options(load)
    for name, setting in settings.SETTING_FIELDS.items():
        if "flag" in setting.metadata:
            flag, help_text = setting.metadata["flag"]
            load.add_argument(
                flag,
                dest=name,
                type=type(setting.default),
                help=f"{help_text} (default from config, else {setting.default})",
            )
    load.add_argument(
        "--refresh-all",
        action="store_true",
        help="fetch every given ID (and listed execution) again, even those already stored "
        "with a final status; with --workflow, implies --full-listing",
    )
    load.add_argument(
        "--lock-wait",
        type=float,
        default=settings.DEFAULT_LOCK_WAIT_S,
        metavar="SECONDS",
        help="wait this long for another load into the same file to finish, then exit 3 "
        "(default: %(default)s)",
    )
    load.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    load.set_defaults(handler=_cmd_load)

    views = subparsers.add_parser(
        "views",
        help="(re)apply the SQL views to a loaded DuckDB file",
        description=(
            "Create or replace every analytics view in the dataset's schema of a DuckDB file "
            "that `load` has written. Loads nothing; the tables are not changed."
        ),
    )
    _add_target_options(
        views, db_help="DuckDB file holding the loaded tables (default: %(default)s)"
    )
    views.set_defaults(handler=_cmd_views)

    demo = subparsers.add_parser(
        "demo",
        help="start the simulator, load generated executions and print model performance",
        description=(
            "Start the bundled API simulator on a free loopback port, load every execution of "
            "its workflows (load --workflow) into a DuckDB file, apply the views and print a "
            "model performance table."
        ),
    )
    _add_target_options(
        demo,
        default_db=DEMO_DB_PATH,
        db_help="DuckDB file for the demo data (created if missing; a file holding executions "
        "that a demo did not write is refused; default: %(default)s)",
    )
    demo.add_argument(
        "--executions",
        type=int,
        default=1000,
        help="executions to generate (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=42, help="data seed (default: %(default)s)")
    demo.add_argument(
        "--force",
        action="store_true",
        help="load demo data even into a file that holds executions a demo did not write",
    )
    demo.set_defaults(handler=_cmd_demo)

    report = subparsers.add_parser(
        "report",
        help="print model performance and what got worse; --out renders the notebook report",
        description=(
            "Print the headline table (per model: finished steps, failure rate with its 95%% "
            "Wilson interval, p50/p95 latency) and the models that got worse in the last 7 "
            "days (view model_recent_changes). The views are read read-only, from either "
            "destination with the same figures: the DuckDB file opened read-only, or "
            "PostgreSQL (--destination postgres) in a read-only transaction. With "
            "--out DIR, also execute notebooks/model_performance.ipynb and write "
            "model_performance.html and one PNG per figure to DIR (needs the report extra: "
            "pip install -e '.[report]')."
        ),
    )
    _add_target_options(report, db_help="DuckDB file to read, read-only (default: %(default)s)")
    report.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write the notebook report (HTML, executed notebook, PNGs) to DIR",
    )
    report.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        type=parameter,
        metavar="NAME=VALUE",
        help="a notebook parameter for --out, repeatable: models='[\"flux-1-1-pro\"]', "
        "start_date=2026-02-01, end_date=..., top_n=5 (VALUE is read as JSON, else as text)",
    )
    report.set_defaults(handler=_cmd_report)

    from pipelines.simulator.cli import add_simulator_parser, add_wait_ready_parser

    add_simulator_parser(subparsers)
    add_wait_ready_parser(subparsers)
    from pipelines.webhook.cli import add_webhook_command

    add_webhook_command(subparsers)
    for command_parser in subparsers.choices.values():
        # -v works after the subcommand too; SUPPRESS keeps a -v given before it.
        _add_verbose(command_parser, default=argparse.SUPPRESS)
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def _cmd_load(args: argparse.Namespace) -> int:
    from pipelines.load import run_load

    options: dict[str, Any] = {
        name: getattr(args, name)
        for name, setting in settings.SETTING_FIELDS.items()
        if "flag" in setting.metadata and getattr(args, name) not in (None, "")
    }
    if (args.bulk_id or args.full_listing) and not args.workflows:
        flag = "--bulk-id" if args.bulk_id else "--full-listing"
        raise ConfigError(f"{flag} applies to listed workflows: add --workflow WF")
    if args.include_open and args.spool is None:
        raise ConfigError("--include-open applies to --from-spool DIR")
    if args.verify and not args.jsonl and args.spool is None:
        raise ConfigError("--verify applies to --from-jsonl PATH or --from-spool DIR")
    if args.ids_file == "-" and "-" in args.jsonl:
        raise ConfigError("--ids-file - and --from-jsonl - cannot both read stdin")
    from pipelines.bodies import jsonl_files

    summary = run_load(
        read_ids(args),
        workflows=args.workflows,
        files=jsonl_files(args.jsonl),
        spool=args.spool,
        include_open=args.include_open,
        verify=args.verify,
        bulk_id=args.bulk_id,
        full_listing=args.full_listing,
        on_listed=None if args.quiet else print_listing,
        db_path=args.db,
        dataset=args.dataset,
        refresh_all=args.refresh_all,
        source_options=options,
        on_progress=None if args.quiet else print_progress,
        lock_wait_s=args.lock_wait,
        on_commit=None if args.quiet else print_commit,
        started_at=args.started_at,
        destination=args.destination,
    )
    print_summary(summary)
    return summary.exit_code


def _cmd_views(args: argparse.Namespace) -> int:
    from pipelines.load import apply_views

    names = apply_views(args.destination, args.db, args.dataset)
    print(f"applied {len(names)} views in schema {args.dataset}: {', '.join(names)}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from pipelines.report import terminal_report
    from pipelines.targets import make_target

    make_target(args.destination, args.db, args.dataset)  # its names and credentials, checked
    if args.param and args.out is None:
        raise ConfigError("-p/--param sets a parameter of the notebook report: add --out DIR")
    if args.param:
        from pipelines.notebook import check_parameters

        check_parameters(dict(args.param))  # before anything is printed
    print(terminal_report(args.db, args.dataset, args.destination))
    if args.out is not None:
        from pipelines.notebook import render_report

        files = render_report(
            args.db,
            args.dataset,
            args.out,
            dict(args.param),
            on_progress=print_report_progress,
            destination=args.destination,
        )
        print(
            f"\nreport written to {files.html} ({len(files.figures)} figures as PNG in {args.out})"
        )
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.load import run_load
    from pipelines.report import terminal_report
    from pipelines.simulator import Simulator, SimulatorConfig
    from pipelines.targets import make_target

    target = make_target(args.destination, args.db, args.dataset)
    foreign_executions = target.foreign_executions()
    if foreign_executions and not args.force:
        raise ConfigError(
            f"{target.describe()} already holds {foreign_executions} executions that no demo "
            "wrote; the demo will not mix generated executions into them. Use another --db "
            "or --dataset, or --force to load demo data there anyway"
        )
    # The simulated clock stands still at the data set's "now" and long-polls answer at once:
    # however fast the machine, the same executions are running and every figure is the same
    # (`eachlabs-pipeline simulator` keeps a running clock).
    config = SimulatorConfig(
        executions=args.executions, seed=args.seed, time_scale=0.0, long_poll=False
    )
    with Simulator(config) as simulator:
        print(f"simulator serving {args.executions} executions at {simulator.base_url}")
        # As a scheduled load would: every workflow listed, only new or changed executions
        # fetched (a second demo into the same file lists a page or two per workflow).
        summary = run_load(
            workflows=simulator.workflow_ids,
            on_listed=print_listing,
            db_path=args.db,
            dataset=args.dataset,
            source_options={"base_url": simulator.base_url, "api_key": simulator.api_key},
            on_progress=print_progress,
            started_at=args.started_at,
            destination=args.destination,
        )
    if not foreign_executions:
        target.mark_demo()
    print_summary(summary)
    print()
    print(terminal_report(args.db, args.dataset, args.destination))
    return summary.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    # dlt's anonymous usage telemetry is off unless the user switches it on.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    # The summary's time is the whole command's: from the process's start when run as the
    # installed command, from this call when called in process with arguments (tests).
    started_at = _process_started_at() if argv is None else time.monotonic()
    args = build_parser().parse_args(argv)
    args.started_at = started_at
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_filters()
    try:
        return int(args.handler(args) or EXIT_OK)
    except AuthError as exc:
        err(f"authentication failed, nothing was loaded: {exc}")
    except LockedError as exc:
        err(str(exc))
        return EXIT_LOCKED
    except (ConfigError, EachlabsError) as exc:
        err(str(exc))
    except ViewError as exc:
        kept = "the tables are unchanged" if args.command == "views" else "loaded data is kept"
        err(f"applying the SQL views failed ({kept}): {exc}")
    except Exception as exc:
        if args.verbose or not is_dlt_step_failure(exc):
            raise
        err(dlt_failure_message(exc))
    except KeyboardInterrupt as exc:  # Ctrl-C: 130; SIGTERM (dlt_run.Terminated): 143
        err(
            "interrupted; run the same command again to finish the load (the chunks "
            "committed so far are kept and not fetched again)"
        )
        return getattr(exc, "exit_code", 130)
    return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
