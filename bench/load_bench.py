"""How fast is the load? Normalise+load against DuckDB's own JSON reader, and fetching
against the ideal N x latency / concurrency. Figures are measured side by side in one run.

    .venv/bin/python bench/load_bench.py                       # 20,000 executions, 2,000 fetched
    .venv/bin/python bench/load_bench.py --executions 5000 --fetch 500 --latency-ms 50

Phases:
1. generate: the simulator's data generator writes N executions as JSONL (the webhook format).
2. duckdb_read_json: DuckDB alone reads the JSONL and unnests it into the three tables in SQL.
   This is the floor: no Python touches a row.
3. normalise: our normaliser turns the parsed payloads into Arrow batches (no dlt).
4. normalise_load: payloads -> Arrow batches -> dlt -> a fresh DuckDB file (merge), the path
   `eachlabs-pipeline load` takes after fetching.
5. fetch: the HTTP client fetches --fetch IDs from a simulator process that adds --latency-ms
   to every answer; efficiency = (N x latency / concurrency) / measured seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulator_bench import running_simulator  # noqa: E402

from pipelines.eachlabs import TableBatch, settings, table_resources  # noqa: E402
from pipelines.eachlabs.client import EachlabsClient  # noqa: E402
from pipelines.eachlabs.normalise import ExecutionBatch, execution_to_rows  # noqa: E402
from pipelines.simulator import Simulator, SimulatorConfig  # noqa: E402

BASELINE_SQL = """
create table executions as
    select * from read_json(?, format = 'newline_delimited', columns = {
        execution_id: 'VARCHAR', workflow_id: 'VARCHAR', bulk_id: 'VARCHAR',
        status: 'VARCHAR', started_at: 'TIMESTAMPTZ', completed_at: 'TIMESTAMPTZ',
        inputs: 'JSON', output: 'JSON', error: 'VARCHAR', error_cause: 'VARCHAR',
        step_outputs: 'MAP(VARCHAR, JSON)'
    });
create table steps as
    select execution_id, e.key as step_id, e.value as s
    from executions, unnest(map_entries(step_outputs)) as t(e);
create table step_outputs as
    select
        execution_id,
        step_id,
        s ->> 'status' as status,
        s -> 'metadata' ->> 'model' as model,
        s -> 'metadata' ->> 'version' as model_version,
        cast(s ->> 'started_at' as timestamptz) as started_at,
        cast(s ->> 'completed_at' as timestamptz) as completed_at,
        s -> 'output' as output,
        s -> 'primary' as primary_output
    from steps;
create table step_params as
    select execution_id, step_id, e.key as param_name, e.value as param_value
    from steps,
        unnest(map_entries(cast(s -> 'metadata' -> 'params' as map(varchar, json)))) as t(e);
"""


def timed(label: str, results: dict[str, float]):
    class _Timer:
        def __enter__(self) -> None:
            self.start = time.perf_counter()

        def __exit__(self, *exc: Any) -> None:
            results[label] = time.perf_counter() - self.start
            print(f"  {label:<18} {results[label]:8.2f} s", flush=True)

    return _Timer()


def batches(payloads: list[dict[str, Any]], size: int) -> Iterator[TableBatch]:
    for start in range(0, len(payloads), size):
        batch = ExecutionBatch()
        for payload in payloads[start : start + size]:
            batch.add(execution_to_rows(payload, 0))
        yield TableBatch(tables=batch.to_arrow())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--fetch", type=int, default=2_000, help="IDs to fetch over HTTP")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=settings.DEFAULTS.concurrency)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, float] = {}
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        jsonl = workdir / "executions.jsonl"
        print(f"{args.executions:,} executions", flush=True)
        with timed("generate", results):
            with Simulator(SimulatorConfig(executions=args.executions, seed=42)) as simulator:
                with jsonl.open("w", encoding="utf-8") as handle:
                    for execution_id in simulator.execution_ids:
                        handle.write(json.dumps(simulator.execution(execution_id)) + "\n")

        with timed("duckdb_read_json", results):
            with duckdb.connect(str(workdir / "baseline.duckdb")) as connection:
                for statement in filter(str.strip, BASELINE_SQL.split(";")):
                    params = [str(jsonl)] if "?" in statement else []
                    connection.execute(statement, params)
                counts = [
                    connection.execute(f"select count(*) from {t}").fetchone()[0]
                    for t in ("executions", "step_outputs", "step_params")
                ]
        print(f"  rows: executions {counts[0]:,}, steps {counts[1]:,}, params {counts[2]:,}")

        with jsonl.open(encoding="utf-8") as handle:
            payloads = [json.loads(line) for line in handle]
        with timed("normalise", results):
            for _ in batches(payloads, settings.DEFAULTS.batch_size):
                pass

        pipeline = dlt.pipeline(
            pipeline_name="load_bench",
            pipelines_dir=str(workdir / "dlt"),
            destination=dlt.destinations.duckdb(str(workdir / "ours.duckdb")),
            dataset_name="eachlabs",
        )
        with timed("normalise_load", results):
            source = dlt.resource(
                batches(payloads, settings.DEFAULTS.batch_size), name="batches", selected=False
            )
            pipeline.run(table_resources(source))
        with duckdb.connect(str(workdir / "ours.duckdb"), read_only=True) as connection:
            ours = [
                connection.execute(f"select count(*) from eachlabs.{t}").fetchone()[0]
                for t in ("executions", "step_outputs", "step_params")
            ]
        assert ours == counts, f"row counts differ: ours {ours}, DuckDB {counts}"
        del payloads

    print(f"fetch {args.fetch:,} IDs, {args.latency_ms:g} ms latency, "
          f"concurrency {args.concurrency}", flush=True)  # fmt: skip
    sim_args = ["--executions", str(args.fetch), "--latency-ms", str(args.latency_ms),
                "--running-share", "0", "--time-scale", "0"]  # fmt: skip
    with running_simulator(*sim_args) as (base_url, api_key, _pid):
        ids_client = Simulator(SimulatorConfig(executions=args.fetch, seed=42))
        ids = ids_client.execution_ids
        client = EachlabsClient(base_url, api_key, pool_size=args.concurrency)
        with timed("fetch", results):
            fetched = sum(r.payload is not None for r in client.fetch_many(ids, args.concurrency))
        client.close()
    assert fetched == args.fetch, f"fetched {fetched} of {args.fetch}"
    ideal_s = args.fetch * args.latency_ms / 1000 / args.concurrency

    ratio = results["normalise_load"] / results["duckdb_read_json"]
    efficiency = ideal_s / results["fetch"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\nsummary")
    print(f"  normalise+load / DuckDB read_json : {ratio:5.1f}x   (target <= 3x)")
    print(f"  fetch efficiency                  : {100 * efficiency:5.1f}%  (target >= 85%;"
          f" ideal {ideal_s:.2f} s)")  # fmt: skip
    print(f"  peak RSS                          : {peak_mb:,.0f} MB")
    if args.json:
        figures = {**results, "ratio": ratio, "fetch_efficiency": efficiency, "peak_mb": peak_mb}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
