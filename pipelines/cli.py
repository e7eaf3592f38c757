"""The `eachlabs-pipeline` command: parses flags and wires the stages together."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.eachlabs import FetchReport, settings
from pipelines.eachlabs.errors import AuthError, ConfigError, EachlabsError
from pipelines.eachlabs.ids import parse_id_lines
from pipelines.load import DEFAULT_DATASET, DEFAULT_DB_PATH, LoadSummary, check_target, run_load
from pipelines.views import ViewError

#: The demo's own file, so that simulated data never mixes into a real load's file.
DEMO_DB_PATH = Path("eachlabs_demo.duckdb")

EXIT_OK = 0
EXIT_FATAL = 1  # bad key, bad settings, bad usage: nothing was loaded
EXIT_PARTIAL = 2  # loaded what it could; some IDs failed (see fetch_errors)


def _err(message: str) -> None:
    print(f"eachlabs-pipeline: {message}", file=sys.stderr)


def _add_target_options(
    parser: argparse.ArgumentParser, default_db: Path = DEFAULT_DB_PATH
) -> None:
    parser.add_argument(
        "--db",
        type=Path,
        default=default_db,
        help="DuckDB file to load into (created if missing; default: %(default)s)",
    )
    parser.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help="schema of the tables and views in the DuckDB file (default: %(default)s)",
    )


class _Parser(argparse.ArgumentParser):
    """Bad usage exits 1 like every fatal error; 2 means "some IDs failed"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_FATAL, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="eachlabs-pipeline",
        description="Load Eachlabs workflow executions into DuckDB analytics tables.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    load = subparsers.add_parser(
        "load",
        help="fetch executions by ID and merge them into DuckDB",
        description=(
            "Fetch executions by ID from the Eachlabs Workflows API and merge them into the "
            "executions, step_outputs, step_params and fetch_errors tables, then apply the SQL "
            "views. IDs stored with a final status (completed, failed, cancelled) are not "
            "fetched again unless --refresh-all is given. The API key comes from "
            "SOURCES__EACHLABS__API_KEY or [sources.eachlabs] api_key in .dlt/secrets.toml. "
            "Exit codes: 0 all loaded (or not found), 1 fatal (bad key or settings, nothing "
            "loaded), 2 some IDs failed (see the fetch_errors table), 130 / 143 interrupted "
            "by Ctrl-C / SIGTERM (committed chunks are kept; run again to finish)."
        ),
    )
    load.add_argument("ids", nargs="*", metavar="ID", help="execution IDs to load")
    load.add_argument(
        "--ids-file",
        metavar="PATH",
        help="file of execution IDs, one per line ('-' = stdin); blank lines and lines "
        "starting with '#' are skipped",
    )
    _add_target_options(load)
    load.add_argument(
        "--base-url",
        help=f"API root (default from config, else {settings.DEFAULT_BASE_URL})",
    )
    load.add_argument(
        "--concurrency",
        type=int,
        help=f"requests in flight at once (default from config, else "
        f"{settings.DEFAULT_CONCURRENCY})",
    )
    load.add_argument(
        "--refresh-all",
        action="store_true",
        help="fetch every given ID again, even those already stored with a final status",
    )
    load.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    load.set_defaults(handler=_cmd_load)

    views = subparsers.add_parser(
        "views",
        help="(re)apply the SQL views in sql/ to a DuckDB file",
        description="Create or replace every view in sql/ in the dataset's schema.",
    )
    _add_target_options(views)
    views.set_defaults(handler=_cmd_views)

    demo = subparsers.add_parser(
        "demo",
        help="start the simulator, load generated executions and print model performance",
        description=(
            "Start the bundled API simulator on a free loopback port, load its generated "
            "executions into a DuckDB file, apply the views and print a model performance table."
        ),
    )
    _add_target_options(demo, default_db=DEMO_DB_PATH)
    demo.add_argument(
        "--executions",
        type=int,
        default=1000,
        help="executions to generate (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=42, help="data seed (default: %(default)s)")
    demo.set_defaults(handler=_cmd_demo)

    from pipelines.simulator.cli import add_simulator_parser

    add_simulator_parser(subparsers)
    return parser


def _decode_lines(data: bytes, name: str) -> list[str]:
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name} is not UTF-8 text (line {line}); save it as UTF-8") from None


def _read_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.ids)
    if args.ids_file == "-":
        ids.extend(parse_id_lines(_decode_lines(sys.stdin.buffer.read(), "stdin")))
    elif args.ids_file:
        path = Path(args.ids_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read --ids-file {path}: {exc.strerror}") from None
        ids.extend(parse_id_lines(_decode_lines(data, f"--ids-file {path}")))
    elif not ids:
        raise ConfigError("no execution IDs given: pass IDs as arguments or use --ids-file PATH")
    return ids


def _print_progress(report: FetchReport) -> None:
    total = report.requested - report.rejected
    if not total:
        return
    share = f" ({100 * report.done / total:.0f}%)" if total else ""
    print(
        f"fetched {report.done} of {total}{share}: {report.loaded} loaded, "
        f"{report.not_found} not found, {report.failed} failed",
        file=sys.stderr,
        flush=True,
    )


def _print_commit(summary: LoadSummary) -> None:
    fetch = summary.fetch
    print(
        f"committed chunk {summary.chunks}: {fetch.done} of {fetch.requested - fetch.rejected} "
        "IDs done; an interrupt from now on keeps them",
        file=sys.stderr,
        flush=True,
    )


def _print_summary(summary: LoadSummary) -> None:
    print(summary.describe())
    errors = summary.fetch.errors
    for row in errors[:10]:
        status = row["http_status"] if row["http_status"] is not None else "-"
        print(f"  {row['execution_id']}: [{status}] {row['error']}", file=sys.stderr)
    if len(errors) > 10:
        print(f"  ... and {len(errors) - 10} more in fetch_errors", file=sys.stderr)


def _cmd_load(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {}
    if args.base_url:
        options["base_url"] = args.base_url
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    summary = run_load(
        _read_ids(args),
        db_path=args.db,
        dataset=args.dataset,
        refresh_all=args.refresh_all,
        source_options=options,
        on_progress=None if args.quiet else _print_progress,
        on_commit=None if args.quiet else _print_commit,
    )
    _print_summary(summary)
    return summary.exit_code


def _cmd_views(args: argparse.Namespace) -> int:
    import duckdb

    from pipelines.views import apply_views

    check_target(args.db, args.dataset)
    if not args.db.exists():
        raise ConfigError(f"no DuckDB file at {args.db}: run `eachlabs-pipeline load` first")
    with duckdb.connect(str(args.db)) as connection:
        names = apply_views(connection, args.dataset)
    print(f"applied {len(names)} views in schema {args.dataset}: {', '.join(names)}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.report import model_performance_table
    from pipelines.simulator import Simulator, SimulatorConfig

    # The clock runs at 60 simulated seconds per second, as with `eachlabs-pipeline simulator`.
    config = SimulatorConfig(executions=args.executions, seed=args.seed, time_scale=60)
    with Simulator(config) as simulator:
        print(f"simulator serving {args.executions} executions at {simulator.base_url}")
        summary = run_load(
            simulator.execution_ids,
            db_path=args.db,
            dataset=args.dataset,
            source_options={"base_url": simulator.base_url, "api_key": simulator.api_key},
            on_progress=_print_progress,
        )
    _print_summary(summary)
    print(f"\nModel performance (views in schema {args.dataset} of {args.db}):")
    print(model_performance_table(args.db, args.dataset))
    print(
        "step_type '-': steps without metadata. Failure % is failed / (completed + failed), "
        "with its 95% Wilson interval (low..high)."
    )
    return summary.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    # dlt's anonymous usage telemetry is off unless the user switches it on.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or EXIT_OK)
    except AuthError as exc:
        _err(f"authentication failed, nothing was loaded: {exc}")
    except (ConfigError, EachlabsError) as exc:
        _err(str(exc))
    except ViewError as exc:
        _err(f"applying the SQL views failed (loaded data is kept): {exc}")
    except PipelineStepFailed as exc:
        if args.verbose:
            raise
        step = getattr(exc, "step", "?")
        cause = exc.__cause__ or exc
        _err(
            f"dlt failed in its {step} step: {type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}. Run again with -v for details; "
            "a load interrupted after fetching is finished by the next run"
        )
    except KeyboardInterrupt as exc:  # Ctrl-C: 130; SIGTERM (load.Terminated): 143
        _err(
            "interrupted; run the same command again to finish the load (the chunks "
            "committed so far are kept and not fetched again)"
        )
        return getattr(exc, "exit_code", 130)
    return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
