"""The formulas the views share, defined once as macros (sql/macros/<dialect>.sql).

`apply_views` creates them in the dataset's schema before the views that call them; a
table macro that reads a view (step_latency) comes right before its first caller. These
tests pin the macros' values, where they live, how they are applied and that each formula
has one home per dialect.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipelines.views import (
    ViewApplyError,
    ViewDefinitionError,
    apply_views,
    discover_macros,
    discover_views,
    order_views,
    view_statements,
)

REPO = Path(__file__).resolve().parent.parent
SQL = REPO / "sql"
Z = 1.959963984540054
COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of k out of n, from its textbook (proportion) form."""
    p = k / n
    centre = p + Z * Z / (2 * n)
    margin = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    denominator = 1 + Z * Z / n
    return (centre - margin) / denominator, (centre + margin) / denominator


@pytest.fixture
def applied() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory database with the loader's two tables (empty) and the views applied."""
    with duckdb.connect() as connection:
        connection.execute(
            """
            create schema ds;
            create table ds.executions (
                execution_id varchar, workflow_id varchar, bulk_id varchar, status varchar,
                started_at timestamptz, completed_at timestamptz, latency_seconds double,
                started_date date, step_count bigint, error varchar, error_cause varchar,
                flow_name varchar, version_id varchar, created_at timestamptz,
                updated_at timestamptz, deleted_at timestamptz, dry_run boolean,
                cost_total double
            );
            create table ds.step_outputs (
                execution_id varchar, step_id varchar, step_position bigint, status varchar,
                step_type varchar, model varchar, model_version varchar,
                started_at timestamptz, completed_at timestamptz, latency_seconds double,
                started_date date, execution_status varchar, execution_started_at timestamptz,
                workflow_id varchar, error varchar, error_cause varchar,
                execution_dry_run boolean, execution_deleted_at timestamptz
            );
            """
        )
        apply_views(connection, "ds")
        connection.execute("set search_path = 'ds'")
        yield connection


def scalar(connection: duckdb.DuckDBPyConnection, expression: str) -> object:
    return connection.execute(f"select {expression}").fetchone()[0]


@pytest.mark.parametrize(("k", "n"), [(1, 2), (3, 10), (7, 7 + 93), (29, 30), (1, 1000)])
def test_wilson_bounds_match_the_textbook_interval(
    applied: duckdb.DuckDBPyConnection, k: int, n: int
) -> None:
    low, high = wilson(k, n)
    assert scalar(applied, f"wilson_low({k}, {n})") == pytest.approx(low, rel=1e-12)
    assert scalar(applied, f"wilson_high({k}, {n})") == pytest.approx(high, rel=1e-12)


def test_wilson_bounds_at_the_edges(applied: duckdb.DuckDBPyConnection) -> None:
    # Exactly 0 at no events and 1 at n of n; null when nothing was tried.
    assert scalar(applied, "wilson_low(0, 12)") == 0.0
    assert scalar(applied, "wilson_high(0, 12)") == pytest.approx(wilson(0, 12)[1], rel=1e-12)
    assert scalar(applied, "wilson_high(12, 12)") == 1.0
    assert scalar(applied, "wilson_low(12, 12)") == pytest.approx(wilson(12, 12)[0], rel=1e-12)
    assert scalar(applied, "wilson_low(0, 0)") is None
    assert scalar(applied, "wilson_high(0, 0)") is None


def test_rate_and_latency_sample(applied: duckdb.DuckDBPyConnection) -> None:
    assert scalar(applied, "rate_of(1, 4)") == 0.25
    assert scalar(applied, "rate_of(0, 0)") is None
    assert scalar(applied, "latency_sample('completed', 2.5)") == 2.5
    assert scalar(applied, "latency_sample('completed', 0.0)") == 0.0
    assert scalar(applied, "latency_sample('completed', -1.0)") is None  # clock skew
    assert scalar(applied, "latency_sample('completed', null)") is None  # untimed
    assert scalar(applied, "latency_sample('failed', 2.5)") is None


def test_cost_per_completed(applied: duckdb.DuckDBPyConnection) -> None:
    assert scalar(applied, "cost_per_completed(3.0, 4)") == 0.75
    assert scalar(applied, "cost_per_completed(0.0, 2)") == 0.0  # free runs: 0, not unknown
    assert scalar(applied, "cost_per_completed(3.0, 0)") is None  # nothing completed
    assert scalar(applied, "cost_per_completed(null, 2)") is None  # no known cost
    assert scalar(applied, "cost_per_completed(1, 3)") == pytest.approx(1 / 3, rel=1e-15)


def test_latest_flow_names(applied: duckdb.DuckDBPyConnection) -> None:
    applied.execute(
        """
        insert into executions (execution_id, workflow_id, status, started_at, created_at,
            flow_name, dry_run, deleted_at)
        values
            -- The latest start wins; an unnamed later execution does not count.
            ('a1', 'wf-a', 'completed', '2026-01-01 10:00+00', null, 'A old', false, null),
            ('a2', 'wf-a', 'completed', '2026-01-02 10:00+00', null, 'A new', null, null),
            ('a3', 'wf-a', 'completed', '2026-01-03 10:00+00', null, null, false, null),
            -- A later dry run or deleted execution names nothing.
            ('a4', 'wf-a', 'completed', '2026-01-04 10:00+00', null, 'A dry', true, null),
            ('a5', 'wf-a', 'completed', '2026-01-05 10:00+00', null, 'A gone', false,
                '2026-01-06 00:00+00'),
            -- Without a start, created_at places it; with neither, it comes last.
            ('b1', 'wf-b', 'running', null, '2026-01-02 00:00+00', 'B created', false, null),
            ('b2', 'wf-b', 'completed', '2026-01-01 00:00+00', null, 'B started', false, null),
            ('b3', 'wf-b', 'completed', null, null, 'B undated', false, null),
            -- The same time: the alphabetically first name.
            ('c1', 'wf-c', 'completed', '2026-01-01 00:00+00', null, 'C zeta', false, null),
            ('c2', 'wf-c', 'completed', '2026-01-01 00:00+00', null, 'C alpha', false, null),
            -- Never listed, or only as a dry run: no row.
            ('d1', 'wf-d', 'completed', '2026-01-01 00:00+00', null, null, null, null),
            ('e1', 'wf-e', 'completed', '2026-01-01 00:00+00', null, 'E dry', true, null)
        """
    )
    names = applied.execute("select * from latest_flow_names() order by all").fetchall()
    assert names == [("wf-a", "A new"), ("wf-b", "B created"), ("wf-c", "C alpha")]


def test_macros_live_in_the_dataset_schema_and_the_search_path_is_restored() -> None:
    with duckdb.connect() as connection:
        connection.execute(
            "create schema ds; create table ds.executions (execution_id varchar, "
            "workflow_id varchar, bulk_id varchar, status varchar, started_at timestamptz, "
            "completed_at timestamptz, latency_seconds double, started_date date, "
            "step_count bigint, error varchar, error_cause varchar, flow_name varchar, "
            "version_id varchar, created_at timestamptz, updated_at timestamptz, "
            "deleted_at timestamptz, dry_run boolean, cost_total double)"
        )
        connection.execute(
            "create table ds.step_outputs as select * from ds.executions where false"
        )
        connection.execute(
            "alter table ds.step_outputs add column step_id varchar;"
            "alter table ds.step_outputs add column step_position bigint;"
            "alter table ds.step_outputs add column step_type varchar;"
            "alter table ds.step_outputs add column model varchar;"
            "alter table ds.step_outputs add column model_version varchar;"
            "alter table ds.step_outputs add column execution_status varchar;"
            "alter table ds.step_outputs add column execution_started_at timestamptz;"
            "alter table ds.step_outputs add column execution_dry_run boolean;"
            "alter table ds.step_outputs add column execution_deleted_at timestamptz;"
        )
        connection.execute("create schema other; set search_path = 'other,main'")
        apply_views(connection, "ds")
        search_path = connection.execute("select current_setting('search_path')").fetchone()[0]
        macros = connection.execute(
            "select distinct schema_name, function_name from duckdb_functions()"
            " where function_type in ('macro', 'table_macro') and not internal"
        ).fetchall()
    assert search_path == "other,main"
    expected = {macro.name for macro in discover_macros()}
    assert expected >= {"wilson_low", "wilson_high", "rate_of", "latency_sample", "step_latency"}
    assert expected >= {"cost_per_completed", "latest_flow_names", "trailing_week"}
    assert set(macros) == {("ds", name) for name in expected}


def test_each_formula_has_one_home_per_dialect() -> None:
    duck = {macro.name for macro in discover_macros(dialect="duckdb")}
    postgres = {macro.name for macro in discover_macros(dialect="postgres")}
    assert duck == postgres, "sql/macros/duckdb.sql and postgres.sql define different formulas"
    for dialect in ("duckdb", "postgres"):
        code = COMMENTS.sub("", (SQL / "macros" / f"{dialect}.sql").read_text(encoding="utf-8"))
        assert code.count("1.959963984540054") == 1, dialect
        assert code.count("sqrt(") == 1, dialect
    for path in sorted(SQL.glob("*.sql")):
        code = COMMENTS.sub("", path.read_text(encoding="utf-8"))
        assert "1.959963984540054" not in code and "sqrt(" not in code, (
            f"{path.name} writes the Wilson formula itself: call wilson_low / wilson_high"
        )
        assert "latency_seconds >= 0" not in code or path.name == "step_runs.sql", (
            f"{path.name} re-derives the latency sample: read step_runs.sample_seconds"
        )
        assert not re.search(r"/\s*[\w.]*completed_executions", code), (
            f"{path.name} divides by completed executions itself: call cost_per_completed"
        )


def test_the_latency_views_share_one_query() -> None:
    by_model = (SQL / "step_latency_by_model.sql").read_text(encoding="utf-8")
    by_version = (SQL / "step_latency_by_model_version.sql").read_text(encoding="utf-8")
    assert "from step_latency(false)" in COMMENTS.sub("", by_model)
    assert COMMENTS.sub("", by_version).strip() == "select * from step_latency(true)"
    dependencies = {view.name: view.dependencies for view in discover_views()}
    # Read through the table macro: they still come after step_runs.
    assert dependencies["step_latency_by_model"] == ("step_runs",)
    assert dependencies["step_latency_by_model_version"] == ("step_runs",)


def test_statements_put_a_table_macro_right_before_its_first_caller() -> None:
    for dialect in ("duckdb", "postgres"):
        order = [statement.what for statement in view_statements("ds", dialect=dialect)]
        scalar_macros = order[:6]
        assert all(what.startswith("macro ") for what in scalar_macros), order
        table_macro = order.index("macro step_latency")
        assert order.index("view step_runs") < table_macro
        assert order[table_macro + 1] == "view step_latency_by_model"
        names_macro = order.index("macro latest_flow_names")
        assert order.index("view execution_runs") < names_macro
        assert order[names_macro + 1] == "view workflow_cost_daily"
        assert [what for what in order if what.startswith("view ")] == [
            f"view {view.name}" for view in order_views(discover_views())
        ]
        qualified = view_statements("my ds", dialect=dialect)[0].sql
        assert re.match(r'create or replace (macro|function) "my ds"\.wilson_z\(', qualified)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def toy_db() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        connection.execute("create schema toy; create table toy.numbers as select 1 as n")
        yield connection


def test_custom_macros_and_a_table_macro_reading_a_view(
    tmp_path: Path, toy_db: duckdb.DuckDBPyConnection
) -> None:
    write(tmp_path / "base.sql", "select n from numbers")
    write(tmp_path / "top.sql", "select total from totals(10)")
    write(
        tmp_path / "macros" / "duckdb.sql",
        "-- toy macros\ncreate or replace macro tenfold(x) as x * 10;\n\n"
        "create or replace macro totals(factor) as table\n"
        "    select sum(tenfold(n)) * factor as total from base;\n",
    )
    assert {view.name: view.dependencies for view in discover_views(tmp_path)} == {
        "base": (),
        "top": ("base",),
    }
    assert apply_views(toy_db, "toy", tmp_path) == ["base", "top"]
    toy_db.execute("create table main.base as select 1000 as n")  # a decoy on the search path
    assert toy_db.execute("select * from toy.top").fetchall() == [(100,)]


def test_a_broken_macro_names_its_file_and_changes_nothing(
    tmp_path: Path, toy_db: duckdb.DuckDBPyConnection
) -> None:
    good = tmp_path / "good"
    write(good / "base.sql", "select double_it(n) as m from numbers")
    write(good / "macros" / "duckdb.sql", "create or replace macro double_it(x) as x * 2;\n")
    assert apply_views(toy_db, "toy", good) == ["base"]
    broken = tmp_path / "broken"
    write(broken / "base.sql", "select double_it(n) as m from numbers")
    write(
        broken / "macros" / "duckdb.sql",
        "create or replace macro double_it(x) as x * 3;\n\n"
        "create or replace macro nonsense(x) as no_such_function(x);\n",
    )
    toy_db.execute("set search_path = 'main'")
    with pytest.raises(ViewApplyError, match=r"macros/duckdb\.sql: macro nonsense failed"):
        apply_views(toy_db, "toy", broken)
    assert toy_db.execute("select * from toy.base").fetchall() == [(2,)]
    assert toy_db.execute("select current_setting('search_path')").fetchone()[0] == "main"


def test_a_macro_file_statement_must_be_a_create_macro(tmp_path: Path) -> None:
    write(tmp_path / "base.sql", "select 1 as n")
    write(
        tmp_path / "macros" / "duckdb.sql", "create or replace macro ok(x) as x;\n\ndrop table t;\n"
    )
    with pytest.raises(ViewDefinitionError, match=r"duckdb\.sql: every statement.*'drop table t'"):
        discover_macros(tmp_path)
    with pytest.raises(ViewDefinitionError, match="unknown SQL dialect 'oracle'"):
        discover_macros(tmp_path, dialect="oracle")
    assert discover_macros(tmp_path, dialect="postgres") == []  # no file for that dialect
