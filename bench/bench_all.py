"""`make bench`: every performance figure of docs/performance.md, side by side in one run.

Prints one table and writes the figures as JSON. Ten measurements:

1. fetch: N IDs from a simulator process at a fixed latency. Ours (`run_load`: first request
   to last row committed, and the whole call) against dlt's own `rest_api` source configured
   for the same job (parent resource of IDs -> `executions/{id}`, `parallelized=True`, merge)
   with its default extract workers and with workers = our concurrency, and against a
   sequential `requests` loop (run on a sample, scaled to N). Ratio = ideal / wall, where
   ideal = N x latency / concurrency.
2. normalise + load of M pre-fetched executions (parsed payloads): ours (Arrow batches -> dlt
   merge into DuckDB) against DuckDB's `read_json` + SQL unnesting of the same payloads as JSONL
   (the floor: no Python touches a row) and against dlt fed the plain dicts with its defaults.
3. incremental re-run with 1% of the executions still running: requests of the second run
   (should be the running ones only) and its time as a share of the first run's.
4. peak RSS of a real `eachlabs-pipeline load` process at two sizes, and a million-execution
   extrapolation from what grows with the number of IDs.
5. every view, read in full, on two synthetic datasets (bench/views_bench.py).
6. peak RSS of a real load of 100 payloads of 10 MB each (bench/memory_bench.py): memory
   does not follow payload size.
7. start-up: wall time of `eachlabs-pipeline --version` and `--help` (median of several runs)
   against a bare `python -c pass` in the same run, and the time to build the simulator's
   100,000 executions (a timed assertion in the tests once; speed belongs here).
8. webhook receiver: acknowledged webhooks per second from 16 concurrent keep-alive senders
   to a real `eachlabs-pipeline webhook` process with real fsync, beside the same run's fsync
   count (bodies per fsync: the group commit) (bench/webhook_bench.py).
9. files: `load --from-jsonl` against the API path for the same bodies, side by side:
   in-process (the API path's normalise+load, its fetch answering at once with payloads
   parsed beforehand, against reading, ranking, parsing and loading the file) and as real
   CLI processes (`--ids-file` against a local simulator, `--from-jsonl`) (bench/files_bench.py).

    .venv/bin/python bench/bench_all.py [--json PATH] [--tiny]

`--tiny` runs every measurement at toy sizes in about a minute: it proves the harness works
(tests/test_bench.py runs it) and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dlt
import duckdb
import requests

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from files_bench import measure_files as measure_files_cli  # noqa: E402
from files_bench import measure_in_process as measure_files_in_process  # noqa: E402
from load_bench import BASELINE_SQL, batches  # noqa: E402
from memory_bench import PEAK_RSS_WRAPPER  # noqa: E402
from memory_bench import measure as measure_big_load  # noqa: E402
from postgres_bench import measure as measure_postgres_load  # noqa: E402
from simulator_bench import running_simulator  # noqa: E402
from views_bench import build_database, time_views  # noqa: E402
from webhook_bench import measure as measure_webhook_run  # noqa: E402

import pipelines.dlt_run as dlt_run_module  # noqa: E402
import pipelines.eachlabs.client as client_module  # noqa: E402
import pipelines.load as load_module  # noqa: E402
from pipelines.eachlabs import settings, table_resources  # noqa: E402
from pipelines.eachlabs.ids import select_ids  # noqa: E402
from pipelines.simulator import Simulator, SimulatorConfig  # noqa: E402

TABLES = ("executions", "step_outputs", "step_params")


@dataclass(frozen=True)
class Sizes:
    fetch_ids: int = 1_000
    latency_ms: float = 200.0
    concurrency: int = 25
    sequential_ids: int = 50
    normalise_executions: int = 50_000
    dict_executions: int = 5_000  # dlt on plain dicts is slow: a sample, rows/s compared
    incremental_executions: int = 5_000
    rss_executions: tuple[int, int] = (10_000, 100_000)
    views_steps: tuple[tuple[int, int], ...] = ((330_000, 1_000_000), (3_300_000, 10_000_000))
    views_repeat: int = 3
    big_payloads: tuple[int, int] = (100, 10)  # executions, MB each
    startup_runs: int = 15
    simulator_executions: int = 100_000
    webhook_bodies: int = 10_000
    webhook_senders: int = 16
    files_executions: int = 10_000
    files_runs: int = 3
    postgres_executions: int = 50_000


TINY = Sizes(
    fetch_ids=40, latency_ms=20.0, concurrency=8, sequential_ids=5,
    normalise_executions=200, dict_executions=50, incremental_executions=200,
    rss_executions=(100, 300), views_steps=((1_000, 3_000),), views_repeat=1,
    big_payloads=(4, 2), startup_runs=2, simulator_executions=1_000, webhook_bodies=200,
    files_executions=100, files_runs=1, postgres_executions=200,
)  # fmt: skip


@dataclass
class Row:
    section: str
    what: str
    figure: str
    target: str = ""
    note: str = ""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def count_rows(db: Path, schema: str) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as connection:
        names = [
            row[0]
            for row in connection.execute(
                "select table_name from information_schema.tables where table_schema = ? "
                "and table_type = 'BASE TABLE' and table_name not like '\\_dlt%' escape '\\'",
                [schema],
            ).fetchall()
        ]
        return {
            name: connection.execute(f'select count(*) from {schema}."{name}"').fetchall()[0][0]
            for name in sorted(names)
        }


# --- 1. fetch ---------------------------------------------------------------------------


def run_ours(ids: list[str], base_url: str, api_key: str, concurrency: int, work: Path) -> dict:
    """run_load in this process, timed from the first request to the last chunk committed."""
    marks: dict[str, float] = {}
    fetch_result = client_module.EachlabsClient._fetch_result
    run_pipeline = dlt_run_module.run_pipeline

    def timed_fetch(self: Any, execution_id: str) -> Any:
        marks.setdefault("first_request", time.perf_counter())
        return fetch_result(self, execution_id)

    def timed_run(pipeline: Any, source: Any) -> Any:
        result = run_pipeline(pipeline, source)
        marks["committed"] = time.perf_counter()
        return result

    client_module.EachlabsClient._fetch_result = timed_fetch  # type: ignore[method-assign]
    dlt_run_module.run_pipeline = timed_run
    try:
        with environment(DLT_DATA_DIR=str(work / "dlt-ours")):
            started = time.perf_counter()
            summary = load_module.run_load(
                ids,
                db_path=work / "ours.duckdb",
                source_options={
                    "base_url": base_url,
                    "api_key": api_key,
                    "concurrency": concurrency,
                },
            )
            ended = time.perf_counter()
    finally:
        client_module.EachlabsClient._fetch_result = fetch_result  # type: ignore[method-assign]
        dlt_run_module.run_pipeline = run_pipeline
    assert summary.fetch.loaded == len(ids), summary.describe()
    return {
        "wall_s": marks["committed"] - marks["first_request"],
        "whole_call_s": ended - started,
        "tables": count_rows(work / "ours.duckdb", "eachlabs"),
    }


def run_rest_api(
    ids: list[str], base_url: str, api_key: str, workers: int | None, work: Path, name: str
) -> dict:
    """dlt's generic rest_api source, configured as a dlt user would for this API."""
    from dlt.sources.rest_api import rest_api_source

    @dlt.resource(name="execution_ids", selected=False)
    def execution_ids() -> Iterator[list[dict[str, str]]]:
        yield [{"id": execution_id} for execution_id in ids]

    source = rest_api_source(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/",
                "headers": {"X-API-Key": api_key},
                "paginator": "single_page",
            },
            "resource_defaults": {"write_disposition": "merge", "primary_key": "execution_id"},
            "resources": [
                execution_ids,
                {
                    "name": "executions",
                    "parallelized": True,
                    "endpoint": {
                        "path": "executions/{id}",
                        "params": {
                            "id": {"type": "resolve", "resource": "execution_ids", "field": "id"},
                            "timeout": 1,
                        },
                        "data_selector": "$",
                    },
                },
            ],
        }
    )
    tuned = {} if workers is None else {
        "EXTRACT__WORKERS": str(workers), "EXTRACT__MAX_PARALLEL_ITEMS": str(workers),
    }  # fmt: skip
    pipeline = dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(work / f"dlt-{name}"),
        destination=dlt.destinations.duckdb(str(work / f"{name}.duckdb")),
        dataset_name="rest",
    )
    with environment(**tuned):
        started = time.perf_counter()
        pipeline.run(source)
        wall = time.perf_counter() - started
    tables = count_rows(work / f"{name}.duckdb", "rest")
    assert tables.get("executions") == len(ids), tables
    with duckdb.connect(str(work / f"{name}.duckdb"), read_only=True) as connection:
        columns = connection.execute(
            "select count(*) from information_schema.columns "
            "where table_schema = 'rest' and table_name = 'executions'"
        ).fetchall()[0][0]
    return {"wall_s": wall, "tables": len(tables), "executions_columns": columns}


def run_sequential(ids: list[str], base_url: str, api_key: str) -> float:
    with requests.Session() as session:
        session.headers["X-API-Key"] = api_key
        started = time.perf_counter()
        for execution_id in ids:
            answer = session.get(f"{base_url}/executions/{execution_id}", params={"timeout": 1})
            answer.raise_for_status()
            answer.json()
        return time.perf_counter() - started


def measure_fetch(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    n, latency, concurrency = sizes.fetch_ids, sizes.latency_ms, sizes.concurrency
    ideal = n * latency / 1000 / concurrency
    log(f"fetch: {n} IDs at {latency:g} ms, concurrency {concurrency} (ideal {ideal:.2f} s)")
    figures: dict[str, Any] = {"ids": n, "latency_ms": latency, "concurrency": concurrency,
                               "ideal_s": ideal}  # fmt: skip
    ids_file = work / "fetch_ids.txt"
    simulator_args = ["--executions", str(n), "--latency-ms", str(latency), "--running-share",
                      "0", "--time-scale", "0", "--ids-out", str(ids_file)]  # fmt: skip
    with running_simulator(*simulator_args) as (base_url, api_key, _pid):
        ids = ids_file.read_text().split()
        figures["ours"] = run_ours(ids, base_url, api_key, concurrency, work)
        log(f"  ours {figures['ours']['wall_s']:.2f} s")
        figures["rest_api_default"] = run_rest_api(ids, base_url, api_key, None, work, "ra5")
        log(f"  rest_api default workers {figures['rest_api_default']['wall_s']:.2f} s")
        figures["rest_api_tuned"] = run_rest_api(
            ids, base_url, api_key, concurrency, work, "ra_tuned"
        )
        log(f"  rest_api tuned {figures['rest_api_tuned']['wall_s']:.2f} s")
        sample = ids[: sizes.sequential_ids]
        sequential = run_sequential(sample, base_url, api_key)
        figures["sequential"] = {"sample_ids": len(sample), "sample_s": sequential,
                                 "wall_s": sequential * n / len(sample)}  # fmt: skip
        log(f"  sequential {figures['sequential']['wall_s']:.2f} s (scaled)")
    ours, default, tuned = (figures[k] for k in ("ours", "rest_api_default", "rest_api_tuned"))
    rest_tables = (
        f"{default['tables']} tables, executions has {default['executions_columns']} columns"
    )
    rows = [
        Row("1 fetch", f"ours, {n} IDs at {latency:g} ms, concurrency {concurrency}",
            f"{ours['wall_s']:.2f} s = {ideal / ours['wall_s']:.2f} of ideal", ">= 0.90 of ideal",
            f"first request -> last row committed; whole call {ours['whole_call_s']:.2f} s; "
            f"ideal {ideal:.2f} s"),
        Row("1 fetch", "dlt rest_api, default workers (5)",
            f"{default['wall_s']:.2f} s = {ideal / default['wall_s']:.2f} of ideal", "",
            f"whole pipeline.run; {rest_tables}; no step/param rows"),
        Row("1 fetch", f"dlt rest_api, workers = {concurrency}",
            f"{tuned['wall_s']:.2f} s = {ideal / tuned['wall_s']:.2f} of ideal", "",
            "whole pipeline.run; same tables"),
        Row("1 fetch", "sequential requests loop",
            f"{figures['sequential']['wall_s']:.1f} s = "
            f"{ideal / figures['sequential']['wall_s']:.3f} of ideal", "",
            f"{len(sample)} IDs timed, scaled to {n}; fetch only, nothing stored"),
    ]  # fmt: skip
    return rows, figures


# --- 2. normalise + load ----------------------------------------------------------------


def measure_normalise(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    n = sizes.normalise_executions
    log(f"normalise + load: {n} executions")
    jsonl = work / "executions.jsonl"
    with Simulator(SimulatorConfig(executions=n, seed=42)) as simulator:
        with jsonl.open("w", encoding="utf-8") as handle:
            for execution_id in simulator.execution_ids:
                handle.write(json.dumps(simulator.execution(execution_id)) + "\n")
    figures: dict[str, Any] = {"executions": n}

    started = time.perf_counter()
    with duckdb.connect(str(work / "read_json.duckdb")) as connection:
        for statement in filter(str.strip, BASELINE_SQL.split(";")):
            connection.execute(statement, [str(jsonl)] if "?" in statement else [])
    floor_s = time.perf_counter() - started
    floor_rows = count_rows(work / "read_json.duckdb", "main")
    floor_rows = {t: floor_rows[t] for t in TABLES}
    figures["duckdb_read_json"] = {"s": floor_s, "rows": floor_rows}
    log(f"  DuckDB read_json {floor_s:.2f} s")

    with jsonl.open(encoding="utf-8") as handle:
        payloads = [json.loads(line) for line in handle]
    pipeline = dlt.pipeline(
        pipeline_name="bench_ours", pipelines_dir=str(work / "dlt-norm"),
        destination=dlt.destinations.duckdb(str(work / "ours_norm.duckdb")),
        dataset_name="eachlabs",
    )  # fmt: skip
    started = time.perf_counter()
    source = dlt.resource(batches(payloads, settings.DEFAULTS.batch_size), name="b", selected=False)
    pipeline.run(table_resources(source))
    ours_s = time.perf_counter() - started
    ours_rows = {t: count_rows(work / "ours_norm.duckdb", "eachlabs")[t] for t in TABLES}
    assert ours_rows == floor_rows, (ours_rows, floor_rows)
    figures["ours"] = {"s": ours_s, "rows": ours_rows}
    log(f"  ours {ours_s:.2f} s")

    sample = payloads[: sizes.dict_executions]
    del payloads
    pipeline = dlt.pipeline(
        pipeline_name="bench_dicts", pipelines_dir=str(work / "dlt-dicts"),
        destination=dlt.destinations.duckdb(str(work / "plain.duckdb")), dataset_name="dicts",
    )  # fmt: skip
    started = time.perf_counter()
    pipeline.run(sample, table_name="executions", write_disposition="merge",
                 primary_key="execution_id")  # fmt: skip
    dicts_s = time.perf_counter() - started
    dict_rows = count_rows(work / "plain.duckdb", "dicts")
    figures["dlt_dicts"] = {"s": dicts_s, "executions": len(sample), "tables": len(dict_rows),
                            "rows": sum(dict_rows.values())}  # fmt: skip
    log(f"  dlt on dicts {dicts_s:.2f} s for {len(sample)}")

    def per_s(rows: dict[str, int], seconds: float) -> str:
        return ", ".join(f"{rows[t] / seconds:,.0f}" for t in TABLES)

    rows = [
        Row("2 normalise+load", f"ours, {n:,} executions ({ours_rows['step_outputs']:,} steps, "
            f"{ours_rows['step_params']:,} params)",
            f"{ours_s:.2f} s = {ours_s / floor_s:.1f}x the floor",
            "", f"rows/s executions, steps, params: {per_s(ours_rows, ours_s)}"),
        Row("2 normalise+load", "DuckDB read_json + SQL unnest (floor)", f"{floor_s:.2f} s", "",
            f"rows/s: {per_s(floor_rows, floor_s)}; parses the JSON text too"),
        Row("2 normalise+load", f"dlt fed plain dicts, defaults ({len(sample):,} executions)",
            f"{dicts_s:.2f} s = {n / len(sample) * dicts_s / floor_s:.0f}x the floor (scaled)", "",
            f"{len(sample) / dicts_s:,.0f} executions/s; {len(dict_rows)} tables, "
            f"{sum(dict_rows.values()):,} rows, no step/param tables"),
    ]  # fmt: skip
    return rows, figures


# --- 3. incremental ---------------------------------------------------------------------


def measure_incremental(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    n = sizes.incremental_executions
    log(f"incremental: {n} executions, 1% running")
    config = SimulatorConfig(executions=n, seed=5, running_share=0.01, time_scale=0)
    with Simulator(config) as simulator, environment(DLT_DATA_DIR=str(work / "dlt-incr")):
        options = {"base_url": simulator.base_url, "api_key": simulator.api_key}
        running = sum(
            simulator.execution(i)["status"] == "running" for i in simulator.execution_ids
        )
        simulator.clear_request_log()
        times, requests_made = [], []
        for _ in range(2):
            started = time.perf_counter()
            load_module.run_load(simulator.execution_ids, db_path=work / "incr.duckdb",
                                 source_options=options)  # fmt: skip
            times.append(time.perf_counter() - started)
            requests_made.append(len(simulator.request_log))
            simulator.clear_request_log()
    figures = {"executions": n, "running": running, "first_s": times[0], "second_s": times[1],
               "first_requests": requests_made[0], "second_requests": requests_made[1]}  # fmt: skip
    rows = [
        Row("3 incremental", f"re-run over {n:,} IDs, {running} still running",
            f"{requests_made[1]} requests, {times[1]:.2f} s = {times[1] / times[0]:.2f} of the "
            f"first run ({times[0]:.2f} s)", f"requests = {running}",
            "in-process simulator, no latency; running ones answer after the 1 s long-poll"),
    ]  # fmt: skip
    return rows, figures


# --- 4. peak RSS ------------------------------------------------------------------------


def run_cli_load(ids_file: Path, base_url: str, api_key: str, work: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of a real `eachlabs-pipeline load` process."""
    cli = Path(sys.executable).with_name("eachlabs-pipeline")
    db = work / f"rss_{ids_file.stem}.duckdb"
    env = {**os.environ, "SOURCES__EACHLABS__API_KEY": api_key,
           "DLT_DATA_DIR": str(work / f"dlt-{ids_file.stem}"),
           "RUNTIME__DLTHUB_TELEMETRY": "false"}  # fmt: skip
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_WRAPPER, str(cli), "load", "--ids-file", str(ids_file),
         "--db", str(db), "--base-url", base_url, "--quiet"],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    assert completed.returncode == 0, f"load exited {completed.returncode}: {completed.stderr}"
    peak_kb = int(completed.stderr.strip().splitlines()[-1])
    return peak_kb / 1024, wall


def id_bytes(count: int) -> float:
    """Bytes of Python memory per ID held by a run: the selection list and the skip set."""
    import tracemalloc

    ids = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(count)]
    tracemalloc.start()
    selection = select_ids(ids)
    skip = set(selection.valid)
    to_fetch = [i for i in selection.valid if i not in skip]
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del selection, skip, to_fetch
    own = sum(sys.getsizeof(i) for i in ids) / count + 8  # the strings and the input list
    return current / count + own


def measure_rss(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    small, large = sizes.rss_executions
    figures: dict[str, Any] = {}
    for n in (small, large):
        log(f"peak RSS: load of {n:,} executions")
        ids_file = work / f"ids_{n}.txt"
        args = ["--executions", str(n), "--ids-out", str(ids_file), "--time-scale", "0",
                "--running-share", "0"]  # fmt: skip
        with running_simulator(*args) as (base_url, api_key, _pid):
            peak, wall = run_cli_load(ids_file, base_url, api_key, work)
        figures[str(n)] = {"peak_mb": peak, "wall_s": wall}
        log(f"  {peak:.0f} MB in {wall:.1f} s")
    per_id = id_bytes(min(large, 200_000))
    small_mb, large_mb = figures[str(small)]["peak_mb"], figures[str(large)]["peak_mb"]
    million_mb = large_mb + per_id * (1_000_000 - large) / 2**20
    figures["per_id_bytes"] = per_id
    figures["million_extrapolated_mb"] = million_mb
    rows = [
        Row("4 peak RSS", f"load of {small:,} executions", f"{small_mb:.0f} MB", "",
            f"{figures[str(small)]['wall_s']:.1f} s, real CLI process, no latency, none running"),
        Row("4 peak RSS", f"load of {large:,} executions",
            f"{large_mb:.0f} MB = {large_mb / small_mb:.2f}x", "< 1.5x and < 600 MB",
            f"{figures[str(large)]['wall_s']:.1f} s"),
        Row("4 peak RSS", "1,000,000 executions (extrapolated)", f"~{million_mb:.0f} MB", "",
            f"the chunk is bounded; the ID list and skip set grow by ~{per_id:.0f} B per ID"),
    ]  # fmt: skip
    return rows, figures


# --- 5. views ---------------------------------------------------------------------------


def measure_views(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    for executions, steps in sizes.views_steps:
        log(f"views: {executions:,} executions / {steps:,} steps")
        db = work / f"views_{steps}.duckdb"
        started = time.perf_counter()
        build_database(db, executions, steps)
        build_s = time.perf_counter() - started
        results = time_views(db, sizes.views_repeat)
        db.unlink()
        figures[str(steps)] = {"build_s": build_s, "views": {
            name: {"rows": n, "best_s": best, "median_s": median}
            for name, n, best, median in results
        }}  # fmt: skip
        for name, n, best, median in results:
            reporting = name not in ("execution_runs", "step_runs")
            rows.append(Row(
                "5 views", f"{name} on {steps:,} steps ({n:,} rows)",
                f"{median:.3f} s (best {best:.3f})",
                "< 1 s" if reporting and steps >= 10_000_000 else "",
                "" if reporting else "base view: every row fetched",
            ))  # fmt: skip
    return rows, figures


# --- main -------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    headers = ("measurement", "what", "figure", "target", "note")
    cells = [headers] + [(r.section, r.what, r.figure, r.target, r.note) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    for index, cell in enumerate(cells):
        print("| " + " | ".join(v.ljust(w) for v, w in zip(cell, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


# --- 6. big payloads --------------------------------------------------------------------


def measure_big_payloads(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    executions, megabytes = sizes.big_payloads
    log(f"big payloads: load of {executions} executions of {megabytes} MB")
    load = measure_big_load(executions, megabytes)
    assert load.exit_code == 0, f"load exited {load.exit_code}: {load.summary}"
    log(f"  {load.peak_mib:.0f} MiB in {load.wall_s:.1f} s")
    figures = {"peak_mib": load.peak_mib, "wall_s": load.wall_s, "step_rows": load.step_rows}
    rows = [
        Row("6 big payloads", f"load of {executions} executions of {megabytes} MB",
            f"{load.peak_mib:.0f} MiB peak RSS", "< 1.5 GiB",
            f"{load.wall_s:.1f} s, random text (incompressible), {load.step_rows} steps of 1 MB"),
    ]  # fmt: skip
    return rows, figures


# --- 7. start-up --------------------------------------------------------------------------


def _median_wall_s(command: list[str], runs: int) -> float:
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
    return sorted(walls)[len(walls) // 2]


def measure_startup(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    cli = str(Path(sys.executable).with_name("eachlabs-pipeline"))
    runs = sizes.startup_runs
    log(f"start-up: --version, --help and bare Python, {runs} runs each")
    python_s = _median_wall_s([sys.executable, "-c", "pass"], runs)
    version_s = _median_wall_s([cli, "--version"], runs)
    help_s = _median_wall_s([cli, "load", "--help"], runs)
    n = sizes.simulator_executions
    log(f"start-up: building the simulator's {n:,} executions")
    started = time.perf_counter()
    simulator = Simulator(SimulatorConfig(executions=n, seed=42))
    build_s = time.perf_counter() - started
    assert len(simulator.execution_ids) == n
    figures = {
        "python_s": python_s, "version_s": version_s, "help_s": help_s,
        "simulator_executions": n, "simulator_build_s": build_s,
    }  # fmt: skip
    rows = [
        Row("7 start-up", "eachlabs-pipeline --version", f"{version_s:.2f} s", "< 0.5 s",
            f"median of {runs}; bare `python -c pass`: {python_s:.2f} s"),
        Row("7 start-up", "eachlabs-pipeline load --help", f"{help_s:.2f} s", "< 0.5 s",
            f"median of {runs}; = {help_s / python_s:.1f}x bare Python"),
        Row("7 start-up", f"simulator: build {n:,} executions", f"{build_s:.2f} s", "< 10 s",
            "the data set behind `eachlabs-pipeline simulator --executions N`"),
    ]  # fmt: skip
    return rows, figures


# --- 8. webhook receiver -------------------------------------------------------------------


def measure_webhook(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    n, senders = sizes.webhook_bodies, sizes.webhook_senders
    log(f"webhook receiver: {n:,} bodies from {senders} senders")
    run = measure_webhook_run(n, senders, work)
    log(f"  {run.acknowledged_per_s:,.0f}/s, {run.bodies_per_fsync:.1f} bodies per fsync")
    rows = [
        Row("8 webhook", f"receiver, {n:,} bodies from {senders} keep-alive senders",
            f"{run.acknowledged_per_s:,.0f} acknowledged/s", ">= 500/s",
            f"{run.bodies_per_fsync:.1f} bodies per fsync ({run.fsyncs:,} fsyncs), real fsync; "
            f"{run.wall_s:.1f} s, {run.spool_bytes / n:.0f} B per body"),
    ]  # fmt: skip
    return rows, asdict(run)


# --- 9. bodies from files --------------------------------------------------------------


def measure_files(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    n, runs = sizes.files_executions, sizes.files_runs
    log(f"files: {n:,} executions, best of {runs} each way")
    (work / "in_process").mkdir()
    (work / "cli").mkdir()
    with environment(DLT_DATA_DIR=str(work / "dlt-in-process")):
        inner = measure_files_in_process(n, runs, work / "in_process")
    outer = measure_files_cli(n, runs, work / "cli")
    inner_ratio = inner["api_s"] / inner["files_s"]
    outer_ratio = outer["api_s"] / outer["files_s"]
    rows = [
        Row("9 files", f"--from-jsonl vs the API path's normalise+load, {n:,} executions",
            f"{inner_ratio:.2f}x ({n / inner['files_s']:,.0f} vs {n / inner['api_s']:,.0f}/s)",
            ">= 0.8x", f"in-process, best of {runs}; the file is read twice (rank, then load)"),
        Row("9 files", "--from-jsonl vs --ids-file, CLI end to end",
            f"{outer_ratio:.2f}x ({outer['files_s']:.1f} vs {outer['api_s']:.1f} s)", "",
            f"local simulator answering at once; {outer['body_mb']:.0f} MB of bodies"),
    ]  # fmt: skip
    return rows, {"in_process": inner, "cli": outer, "in_process_ratio": inner_ratio,
                  "cli_ratio": outer_ratio}  # fmt: skip


# --- 10. PostgreSQL ----------------------------------------------------------------------


def measure_postgres(sizes: Sizes, work: Path) -> tuple[list[Row], dict]:
    n = sizes.postgres_executions
    log(f"postgres: {n:,} executions, three ways, against COPY")
    figures = measure_postgres_load(n, work)
    floor = figures["floor"]
    log("  " + ", ".join(f"{name} {figures[name]['s']:.1f} s" for name in
                         ("dlt_choice", "insert_values", "tuned", "floor")))  # fmt: skip

    def load_row(name: str, what: str, target: str = "") -> Row:
        load, steps = figures[name], figures[name]["steps_s"]
        return Row(
            "10 postgres", what,
            f"{load['s']:.2f} s = {load['rows_per_s']:,.0f} rows/s = "
            f"{load['floor_ratio']:.1f}x the floor", target,
            f"steps: extract {steps['extract']:.1f} s, normalize {steps['normalize']:.1f} s, "
            f"load {steps['load']:.1f} s = {load['load_step_floor_ratio']:.1f}x the floor",
        )  # fmt: skip

    formats = sorted({f for found in figures["dlt_choice"]["formats"].values() for f in found})
    edge = figures["empty_strings"]
    kept = sum(edge["insert_values"].values())
    lost = kept - sum(edge["dlt_choice"].values())
    slowest = max(figures["views"], key=lambda name: figures["views"][name]["best_s"])
    views_total = sum(view["best_s"] for view in figures["views"].values())
    unanalysed = sum(view["best_s"] for view in figures["views_unanalysed"].values())
    rows = [
        load_row("insert_values", f"run_load into PostgreSQL, {n:,} executions "
                 f"({figures['total_rows']:,} rows), insert_values (the product's format)",
                 "<= 2x the floor"),
        load_row("dlt_choice", f"same, dlt's own format ({'/'.join(formats)}): loses empty "
                 "strings"),
        load_row("tuned", "same, dlt's format, load files uncompressed, 3 load workers"),
        Row("10 postgres", "plain COPY of the same rows (floor)",
            f"{floor['s']:.2f} s = {floor['rows_per_s']:,.0f} rows/s", "",
            f"COPY FROM STDIN into empty copies of the 4 tables, {floor['mb']:.0f} MB, "
            f"best of {floor['runs']}; PostgreSQL {figures['server_version'].split()[0]}"),
        Row("10 postgres", "dlt's format vs insert_values, row by row",
            f"{sum(figures['compare']['differing_rows'].values())} rows differ", "0",
            f"columns {figures['compare']['columns_by_type']}; edge bodies: "
            f"{lost} of {kept} empty strings turned NULL by dlt's format"),
        Row("10 postgres", f"every view read in full on {n:,} executions",
            f"{views_total:.2f} s in all", "",
            f"tables analysed (before ANALYZE: {unanalysed:.2f} s); slowest {slowest} "
            f"{figures['views'][slowest]['best_s']:.2f} s; best of 2"),
    ]  # fmt: skip
    return rows, figures


SECTIONS = {
    "fetch": measure_fetch,
    "normalise_load": measure_normalise,
    "incremental": measure_incremental,
    "peak_rss": measure_rss,
    "views": measure_views,
    "big_payloads": measure_big_payloads,
    "startup": measure_startup,
    "webhook": measure_webhook,
    "files": measure_files,
    "postgres": measure_postgres,
}


def run_section(name: str, sizes: Sizes, out: Path) -> None:
    """One measurement, in this (fresh) process; rows and figures written to `out`."""
    with tempfile.TemporaryDirectory(prefix=f"eachlabs-bench-{name}-") as tmp:
        started = time.perf_counter()
        rows, figures = SECTIONS[name](sizes, Path(tmp))
        figures["section_s"] = time.perf_counter() - started
    out.write_text(json.dumps({"rows": [asdict(row) for row in rows], "figures": figures}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=BENCH / "results.json")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: proves the harness")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")  # dlt's warnings on the wide tables
    logging.getLogger("dlt").setLevel(logging.ERROR)
    sizes = TINY if args.tiny else Sizes()
    if args.section:
        run_section(args.section, sizes, args.json)
        return 0

    # Each measurement runs in a fresh process: no memory, threads or imports carried over.
    started = time.perf_counter()
    load_before = os.getloadavg()
    rows: list[Row] = []
    figures: dict[str, Any] = {"sizes": asdict(sizes)}
    with tempfile.TemporaryDirectory(prefix="eachlabs-bench-") as tmp:
        for name in SECTIONS:
            part = Path(tmp) / f"{name}.json"
            command = [sys.executable, __file__, "--section", name, "--json", str(part)]
            subprocess.run(command + (["--tiny"] if args.tiny else []), check=True)
            result = json.loads(part.read_text())
            rows += [Row(**row) for row in result["rows"]]
            figures[name] = result["figures"]
    total = time.perf_counter() - started
    figures["machine"] = {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "duckdb": duckdb.__version__, "dlt": dlt.__version__,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
    }  # fmt: skip
    figures["total_s"] = total
    print()
    print_table(rows)
    print(f"\n{'tiny run (figures mean nothing), ' if args.tiny else ''}total {total / 60:.1f} min;"
          f" load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], **figures}, indent=2))
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
