"""Small text reports over the views, for the terminal."""

from __future__ import annotations

from pathlib import Path

import duckdb


def model_performance_table(db_path: Path, dataset: str) -> str:
    """Latency percentiles and failure rates per model, as a printable table."""
    query = f"""
        select
            coalesce(f.step_type, '-') as step_type,
            coalesce(f.model, '-') as model,
            f.completed_steps as completed,
            f.failed_steps as failed,
            round(l.p50_seconds, 1) as p50_s,
            round(l.p95_seconds, 1) as p95_s,
            round(100 * f.failure_rate, 1) as failure_pct,
            round(100 * f.failure_rate_low, 1) as low_pct,
            round(100 * f.failure_rate_high, 1) as high_pct
        from "{dataset}".model_failure_rates as f
        left join "{dataset}".step_latency_by_model as l
            on f.step_type is not distinct from l.step_type
            and f.model is not distinct from l.model
        order by f.step_type nulls last, l.p50_seconds desc nulls last
    """
    with duckdb.connect(str(db_path), read_only=True) as connection:
        frame = connection.execute(query).df()
    return frame.to_string(index=False)
