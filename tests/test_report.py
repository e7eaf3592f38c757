"""The model performance report: `eachlabs-pipeline report`, the notebook, `make report`.

The end-to-end test loads a simulator dataset through the real CLI, renders the notebook
report through the CLI (what `make report` runs), and checks the executed notebook, its
figures, its HTML and its numbers against the views.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import nbformat
import pandas as pd
import pytest
from conftest import once_per_run
from simulator_fixtures import start_simulator
from workspace import CliResult, make_workspace

from pipelines.notebook import FIGURES, NOTEBOOK_PATH, figure_outputs, table_outputs
from pipelines.report import format_cost, workflow_labels

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC, "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def view_rows(db: Path, sql: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(db), read_only=True) as connection:
        cursor = connection.execute(sql)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def same_number(notebook_value: Any, view_value: Any) -> bool:
    if view_value is None:
        return notebook_value is None
    if isinstance(view_value, bool | int | str):
        return notebook_value == view_value
    return math.isclose(notebook_value, view_value, rel_tol=1e-12, abs_tol=1e-12)


def key(row: dict[str, Any]) -> tuple[Any, Any]:
    return (row["step_type"], row["model"])


def plotted(out: Path, figure: str) -> list[dict[str, Any]]:
    """The figures a chart plots, as the notebook wrote them into its PNG (text chunk `Data`)."""
    from PIL import Image

    with Image.open(out / f"{figure}.png") as image:
        return json.loads(image.text["Data"])


def same_cost(notebook_value: Any, view_value: Any) -> bool:
    """Costs are sums of doubles, whose last bits depend on the order they were added in."""
    if view_value is None:
        return notebook_value is None
    return math.isclose(notebook_value, view_value, rel_tol=1e-9)


# --- how the report names workflows ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [("1a2b3c4d-0000", "Quick Caption"), ("5e6f7a8b-0000", "Story to Video")],
            {"1a2b3c4d-0000": "Quick Caption", "5e6f7a8b-0000": "Story to Video"},
            id="by-name",
        ),
        pytest.param(
            [("1a2b3c4d-0000", None), ("5e6f7a8b-0000", "Story to Video")],
            {"1a2b3c4d-0000": "1a2b3c4d", "5e6f7a8b-0000": "Story to Video"},
            id="loaded-by-id-only",
        ),
        pytest.param(
            [("1a2b3c4d-0000", "Upscale"), ("5e6f7a8b-0000", "Upscale"), ("9c0d1e2f-0000", "x")],
            {
                "1a2b3c4d-0000": "Upscale (1a2b3c4d)",
                "5e6f7a8b-0000": "Upscale (5e6f7a8b)",
                "9c0d1e2f-0000": "x",
            },
            id="shared-name",
        ),  # fmt: skip
        pytest.param(
            [("1a2b3c4d-0000", "Upscale"), ("1a2b3c4d-0000", "Upscale")],
            {"1a2b3c4d-0000": "Upscale"},
            id="one-workflow-on-two-rows",
        ),
    ],
)
def test_workflows_are_named_by_flow_name(
    rows: list[tuple[str, str | None]], expected: dict[str, str]
) -> None:
    frame = pd.DataFrame(rows, columns=["workflow_id", "flow_name"])
    assert workflow_labels(frame) == expected


@pytest.mark.parametrize(
    ("cost", "shown"),
    [(None, "-"), (0.0, "0.00"), (69.056738, "69.06"), (1234.5, "1,234.50"),
     (0.86, "0.860"), (0.0434, "0.0434"), (0.000324, "0.000324")],
)  # fmt: skip
def test_costs_are_shown_to_three_significant_digits_below_one(
    cost: float | None, shown: str
) -> None:
    assert format_cost(cost) == shown


# --- the notebook as committed ----------------------------------------------------------


def test_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK_PATH, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert dirty == [], (
        f"cells {dirty} of {NOTEBOOK_PATH.name} hold outputs: clear them before committing "
        "(e.g. `jupyter nbconvert --clear-output --inplace notebooks/model_performance.ipynb`)"
    )


def test_notebook_has_a_papermill_parameters_cell() -> None:
    notebook = nbformat.read(NOTEBOOK_PATH, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = set(re.findall(r"^(\w+) =", tagged[0].source, re.M))
    assert {"db_path", "dataset", "start_date", "end_date", "models"} <= names


def test_notebook_reads_views_only() -> None:
    """No raw table (executions, step_outputs, step_params, fetch_errors) is ever read."""
    notebook = nbformat.read(NOTEBOOK_PATH, as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for table in ("executions", "step_outputs", "step_params", "fetch_errors"):
        assert not re.search(rf"\{{schema\}}\.{table}\b", code), f"the notebook reads {table}"
    assert "duckdb.connect" not in code, "the notebook opens DuckDB only through read_frames"


# --- end to end -------------------------------------------------------------------------


# Loading and rendering take a few seconds, so they run once and the tests share the result.
@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Any]:
    """300 simulated executions loaded through the CLI, then `report --out` on them (once for
    the whole run: see `once_per_run`)."""

    def build(root: Path) -> dict[str, Any]:
        workspace = make_workspace(root)
        simulator = start_simulator(executions=300, seed=42)
        try:
            loaded = workspace.load(simulator, *simulator.execution_ids, extra=["--quiet"])
        finally:
            simulator.stop()
        assert loaded.returncode == 0, loaded.stderr
        result = workspace.run(
            "report", "--db", str(workspace.db_path), "--out", str(workspace.root / "reports"),
            env={"JUPYTER_RUNTIME_DIR": str(workspace.root / "jupyter-runtime")},
        )  # fmt: skip
        assert result.returncode == 0, f"report failed:\n{result.stdout}\n{result.stderr}"
        return asdict(result)

    root, result = once_per_run(tmp_path_factory, worker_id, "rendered", build)
    work = root / "work"
    return {"db": work / "test.duckdb", "out": work / "reports", "result": CliResult(**result)}


def test_report_executes_the_notebook_without_errors(rendered: dict[str, Any]) -> None:
    notebook = nbformat.read(rendered["out"] / "model_performance.ipynb", as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code_cells)
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert errors == []
    warnings = [
        o.text for c in code_cells for o in c.outputs if o.get("name") == "stderr"
    ]  # e.g. pandas or matplotlib warnings: a sign of a chart drawn wrong
    assert warnings == []
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and str(rendered["db"].resolve()) in injected[0].source
    assert "Traceback" not in rendered["result"].stderr


def test_report_says_what_it_is_doing_while_the_notebook_runs(rendered: dict[str, Any]) -> None:
    """`make report` prints a line per section instead of nothing for half a minute."""
    notebook = nbformat.read(NOTEBOOK_PATH, as_version=4)
    headings = [
        match.group(1)
        for cell in notebook.cells
        if cell.cell_type == "markdown"
        for match in re.finditer(r"^## (.+)$", cell.source, re.M)
    ]
    lines = [
        line.split(" report: ", 1)[1]
        for line in rendered["result"].stderr.splitlines()
        if " report: " in line
    ]
    sections = ["Reading the views", *headings]
    assert lines == [
        "starting the notebook's kernel",
        *(f"section {n} of {len(sections)}: {name}" for n, name in enumerate(sections, 1)),
        f"writing the HTML page and {len(FIGURES)} PNG files to {rendered['out']}",
    ]


def test_report_page_names_the_file_not_its_absolute_path(rendered: dict[str, Any]) -> None:
    html = (rendered["out"] / "model_performance.html").read_text(encoding="utf-8")
    assert str(rendered["db"].resolve()) not in html
    assert f"Data: <code>{rendered['db'].name}</code>, schema <code>eachlabs</code>" in html
    # The parameters cell is not in the page, so the page says how to pass parameters.
    assert "change the parameters below" not in html
    assert "-p models=" in html and "-p start_date=" in html


def test_report_writes_every_figure_as_png_and_in_the_html(rendered: dict[str, Any]) -> None:
    out: Path = rendered["out"]
    notebook = nbformat.read(out / "model_performance.ipynb", as_version=4)
    shown = figure_outputs(notebook)
    assert list(shown) == list(FIGURES)
    for name in FIGURES:
        data = (out / f"{name}.png").read_bytes()
        assert data == shown[name]
        width, height = png_size(data)
        assert width >= 600 and height >= 250, f"{name}.png is {width}x{height}"
    html = (out / "model_performance.html").read_text(encoding="utf-8")
    images = re.findall(r'<img[^>]*src="data:image/png;base64,[^"]+"[^>]*>', html)
    assert len(images) == len(FIGURES)
    assert all(re.search(r'alt="Chart: [^"]+"', image) for image in images)
    assert not re.search(r"<script[^>]*src=", html), "the HTML must open offline"
    assert "What got worse" in html and "How to read this" in html
    assert f"report written to {out / 'model_performance.html'}" in rendered["result"].stdout


@pytest.mark.parametrize(
    ("figure", "column"), [("daily_failure_rate", "failure_rate"), ("daily_p95", "p95_seconds")]
)
def test_daily_charts_draw_the_trailing_week(
    rendered: dict[str, Any], figure: str, column: str
) -> None:
    """The daily panels plot model_trailing_performance (the 7 days ending each day), not a
    single day's handful of steps; the PNG carries the figures it plots."""
    from PIL import Image

    with Image.open(rendered["out"] / f"{figure}.png") as image:
        plotted = json.loads(image.text["Data"])
    from_view = {
        (str(row["started_date"]), row["model"]): row
        for row in view_rows(
            rendered["db"],
            "select * from eachlabs.model_trailing_performance where step_type = 'model'",
        )
    }
    assert {(row["started_date"][:10], row["model"]) for row in plotted} == set(from_view)
    for row in plotted:
        expected = from_view[(row["started_date"][:10], row["model"])]
        assert same_number(row[column], expected[column]), row
        low = "is_low_sample" if column == "failure_rate" else "is_low_latency_sample"
        assert row[low] == expected[low]


HEADLINE_FROM_VIEWS = """
    select f.step_type, f.model, f.finished_steps, f.failed_steps, f.failure_rate,
        f.failure_rate_low, f.failure_rate_high, f.is_low_sample,
        l.completed_steps as timed_steps, l.p50_seconds, l.p95_seconds
    from eachlabs.model_failure_rates f
    join eachlabs.step_latency_by_model l
        on f.step_type is not distinct from l.step_type and f.model is not distinct from l.model
"""


def test_headline_table_numbers_equal_the_views(rendered: dict[str, Any]) -> None:
    notebook = nbformat.read(rendered["out"] / "model_performance.ipynb", as_version=4)
    tables = table_outputs(notebook)
    from_views = {key(row): row for row in view_rows(rendered["db"], HEADLINE_FROM_VIEWS)}
    shown = {key(row): row for row in tables["headline"]}
    assert set(shown) == set(from_views)
    assert len(from_views) >= 10  # nine models plus http / python / no-metadata steps
    for group, row in from_views.items():
        for column, value in row.items():
            assert same_number(shown[group][column], value), (group, column)


def test_recent_changes_table_equals_the_view(rendered: dict[str, Any]) -> None:
    notebook = nbformat.read(rendered["out"] / "model_performance.ipynb", as_version=4)
    shown = {key(row): row for row in table_outputs(notebook)["recent_changes"]}
    from_view = view_rows(
        rendered["db"],
        "select * exclude (window_end_at, recent_from_at, earlier_from_at) "
        "from eachlabs.model_recent_changes",
    )
    assert {key(row) for row in from_view} == set(shown)
    for row in from_view:
        for column, value in row.items():
            assert same_number(shown[key(row)][column], value), (key(row), column)


def test_report_command_prints_the_headline_numbers(rendered: dict[str, Any]) -> None:
    stdout = rendered["result"].stdout
    assert stdout.startswith("Model performance (views in schema eachlabs of ")
    headline = stdout.split("What got worse:")[0]
    lines = {line.split()[0]: line for line in headline.splitlines() if line.strip()}
    for row in view_rows(rendered["db"], HEADLINE_FROM_VIEWS + " where f.model is not null"):
        line = lines[row["model"]]
        assert line.split()[1:3] == [str(row["finished_steps"]), str(row["failed_steps"])]
        assert f"{row['p50_seconds']:.1f}" in line and f"{row['p95_seconds']:.1f}" in line
        assert f"{100 * row['failure_rate']:.1f}%" in line
    assert "What got worse:" in stdout


def test_notebook_filters_models_and_days(rendered: dict[str, Any], tmp_path: Path) -> None:
    """Parameters go through the command line (`-p NAME=VALUE`, the value read as JSON, else
    as text; one model name is a list of one)."""
    [(first_day, last_day)] = (
        duckdb.connect(str(rendered["db"]), read_only=True)
        .execute("select min(started_date) + 3, max(started_date) - 3 from eachlabs.step_runs")
        .fetchall()
    )
    workspace = make_workspace(tmp_path)
    out = tmp_path / "filtered"
    result = workspace.run(
        "report", "--db", str(rendered["db"]), "--out", str(out),
        "-p", "models=flux-1-1-pro", "-p", f"start_date={first_day}",  # one name: a list of one
        "--param", f"end_date={last_day}", "-p", "top_n=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notebook = nbformat.read(out / "model_performance.ipynb", as_version=4)
    tables = table_outputs(notebook)
    assert {row["model"] for row in tables["headline"]} == {"flux-1-1-pro"}
    assert {row["model"] for row in tables["recent_changes"]} == {"flux-1-1-pro"}
    assert {row["model"] for row in tables["error_causes"]} <= {"flux-1-1-pro"}
    assert len(tables["slowest_workflows"]) == 2
    assert sorted(path.name for path in out.glob("*.png")) == sorted(f"{n}.png" for n in FIGURES)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "top_n=2"], "-p/--param sets a parameter of the notebook report: add --out DIR"),
        (["--out", "r", "-p", "colour=red"], "the notebook has no parameter colour; its "),
        (["--out", "r", "-p", "top_n"], "'top_n' is not NAME=VALUE"),
        (["--out", "r", "-p", "models=[1, 2]"], "models must be a list of model names"),
    ],
)
def test_bad_report_parameters_are_one_clear_line(
    rendered: dict[str, Any], workspace, args: list[str], message: str
) -> None:
    result = workspace.run("report", "--db", str(rendered["db"]), *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""  # refused before the terminal report is printed
    assert not (workspace.root / "r").exists()


def test_notebook_draws_every_figure_when_nothing_matches(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    from pipelines.notebook import render_report

    files = render_report(rendered["db"], "eachlabs", tmp_path, {"models": ["no-such-model"]})
    notebook = nbformat.read(files.notebook, as_version=4)
    tables = table_outputs(notebook)
    assert tables["headline"] == [] and tables["recent_changes"] == []
    assert list(figure_outputs(notebook)) == list(FIGURES)


def test_a_failing_notebook_is_one_clear_error(rendered: dict[str, Any], tmp_path: Path) -> None:
    from pipelines.notebook import NotebookError, render_report

    with pytest.raises(NotebookError) as error:
        render_report(rendered["db"], "eachlabs", tmp_path / "r", {"start_date": "2026-13-01"})
    assert str(error.value) == ("the notebook failed: ValueError: month must be in 1..12")
    assert not (tmp_path / "r").exists()


def test_workflows_loaded_by_id_only_are_shown_by_short_id(rendered: dict[str, Any]) -> None:
    """Executions loaded by ID were never listed: no flow_name, so the first 8 characters of
    the workflow's ID stand for it, in the tables and in the chart."""
    notebook = nbformat.read(rendered["out"] / "model_performance.ipynb", as_version=4)
    tables = table_outputs(notebook)
    names = {
        row["workflow_id"]: row["flow_name"]
        for row in view_rows(rendered["db"], "select * from eachlabs.workflow_performance")
    }
    assert names and set(names.values()) == {None}
    shown = [*tables["slowest_workflows"], *tables["workflow_cost"], *plotted(
        rendered["out"], "workflows")]  # fmt: skip
    assert shown
    for row in shown:
        assert row["workflow"] == row["workflow_id"][:8], row
    assert {row["workflow_id"] for row in tables["workflow_cost"]} == set(names)


def test_a_file_loaded_by_id_says_nothing_was_left_out_and_no_cost_is_known(
    rendered: dict[str, Any],
) -> None:
    html = (rendered["out"] / "model_performance.html").read_text(encoding="utf-8")
    assert "as in the views: 0 of 300 executions (0 dry runs, 0 soft-deleted)." in html
    assert "No execution has a known cost" in html
    assert "as in the views: 0 of 300 executions" in rendered["result"].stdout
    assert "no execution with a known cost" in rendered["result"].stdout


# --- the report on `make demo`'s file: loaded by workflow, with names, costs, dry runs ---------


@pytest.fixture(scope="session")
def rendered_demo(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, demo_run
) -> dict[str, Any]:
    """`report --out` on the demo's file (what `make demo && make report` do), once per run."""

    def build(root: Path) -> dict[str, Any]:
        workspace = make_workspace(root)
        result = workspace.run(
            "report", "--db", str(demo_run.db_path), "--out", str(workspace.root / "reports"),
            env={"JUPYTER_RUNTIME_DIR": str(workspace.root / "jupyter-runtime")},
        )  # fmt: skip
        assert result.returncode == 0, f"report failed:\n{result.stdout}\n{result.stderr}"
        return asdict(result)

    root, result = once_per_run(tmp_path_factory, worker_id, "rendered-demo", build)
    out = root / "work" / "reports"
    notebook = nbformat.read(out / "model_performance.ipynb", as_version=4)
    return {
        "db": demo_run.db_path,
        "out": out,
        "result": CliResult(**result),
        "tables": table_outputs(notebook),
    }


DEMO_WORKFLOWS = {
    "Cinematic Trailer", "Content Moderation Check", "Image Variations", "Podcast Voiceover",
    "Product Shot Studio", "Quick Caption", "Story to Video", "Text to Image Generator",
}  # fmt: skip


def test_demo_report_names_workflows_not_ids(rendered_demo: dict[str, Any]) -> None:
    """The demo loads by workflow, so every workflow has its flow_name, and the report shows
    it wherever it shows a workflow: tables, charts and the terminal's cost table."""
    names = {
        row["workflow_id"]: row["flow_name"]
        for row in view_rows(rendered_demo["db"], "select * from eachlabs.workflow_performance")
    }
    assert set(names.values()) == DEMO_WORKFLOWS
    tables, out = rendered_demo["tables"], rendered_demo["out"]
    for source, rows in [
        *((name, tables[name]) for name in (
            "slowest_workflows", "least_reliable_workflows", "workflow_cost",
            "workflow_version_cost")),
        *((figure, plotted(out, figure)) for figure in (
            "workflows", "cost_by_version", "daily_cost")),
    ]:  # fmt: skip
        assert rows, source
        for row in rows:
            assert row["workflow"] == names[row["workflow_id"]], (source, row)
    assert {row["workflow"] for row in tables["slowest_workflows"]} == DEMO_WORKFLOWS
    html = (out / "model_performance.html").read_text(encoding="utf-8")
    assert all(name in html for name in DEMO_WORKFLOWS)
    cost_lines = rendered_demo["result"].stdout.split("Cost per workflow")[1]
    cost_lines = cost_lines.split("What got worse:")[0]
    assert all(name in cost_lines for name in DEMO_WORKFLOWS)
    assert not any(workflow_id[:8] in cost_lines for workflow_id in names)


WORKFLOW_COST_FROM_VIEW = """
    select workflow_id, any_value(flow_name) as flow_name,
        sum(executions) as executions, sum(executions_with_cost) as executions_with_cost,
        sum(total_cost) as total_cost, sum(completed_executions) as completed_executions
    from eachlabs.workflow_version_cost
    group by workflow_id
"""


def test_demo_cost_per_workflow_is_the_sum_of_its_versions(rendered_demo: dict[str, Any]) -> None:
    shown = {row["workflow_id"]: row for row in rendered_demo["tables"]["workflow_cost"]}
    from_view = view_rows(rendered_demo["db"], WORKFLOW_COST_FROM_VIEW)
    assert set(shown) == {row["workflow_id"] for row in from_view} and len(shown) == 8
    for row in from_view:
        table = shown[row["workflow_id"]]
        for column in ("executions", "executions_with_cost", "completed_executions"):
            assert table[column] == row[column], (row["flow_name"], column)
        assert same_cost(table["total_cost"], row["total_cost"]), row["flow_name"]
        assert same_cost(
            table["cost_per_completed_execution"], row["total_cost"] / row["completed_executions"]
        ), row["flow_name"]
        assert table["cost_known_share"] == pytest.approx(
            row["executions_with_cost"] / row["executions"], rel=1e-12
        )
    # Costliest first: the video workflows, at about $1.6 and $0.9 per result.
    costliest = rendered_demo["tables"]["workflow_cost"][:2]
    assert [row["workflow"] for row in costliest] == ["Cinematic Trailer", "Story to Video"]
    assert costliest[0]["executions_with_cost"] == 48 and costliest[0]["executions"] == 53
    assert costliest[0]["cost_per_completed_execution"] == pytest.approx(1.606, abs=5e-4)
    assert costliest[1]["cost_per_completed_execution"] == pytest.approx(0.864, abs=5e-4)
    terminal = rendered_demo["result"].stdout.split("Cost per workflow")[1]
    for row in costliest:
        [line] = [
            line for line in terminal.splitlines() if line.strip().startswith(row["workflow"])
        ]
        assert line.split()[-1] == format_cost(row["cost_per_completed_execution"])


VERSION_COLUMNS = [
    "workflow_id", "version_id", "flow_name", "executions", "executions_with_cost",
    "total_cost", "completed_executions", "cost_per_completed_execution",
    "p50_latency_seconds", "p95_latency_seconds",
]  # fmt: skip
COSTS = ("total_cost", "cost_per_completed_execution")


def test_demo_version_comparison_equals_the_view(rendered_demo: dict[str, Any]) -> None:
    """The table and the chart of cost and latency per workflow version hold
    workflow_version_cost's rows, every version of every workflow (top_n = 10 > 8)."""
    from_view = {
        (row["workflow_id"], row["version_id"]): row
        for row in view_rows(
            rendered_demo["db"],
            f"select {', '.join(VERSION_COLUMNS)} from eachlabs.workflow_version_cost",
        )
    }
    assert len(from_view) == 14  # 8 workflows, 1 to 3 versions each
    table = rendered_demo["tables"]["workflow_version_cost"]
    chart = plotted(rendered_demo["out"], "cost_by_version")
    for shown in (table, chart):
        assert {(row["workflow_id"], row["version_id"]) for row in shown} == set(from_view)
        for row in shown:
            expected = from_view[(row["workflow_id"], row["version_id"])]
            for column in set(VERSION_COLUMNS) & set(row):
                same = same_cost if column in COSTS else same_number
                assert same(row[column], expected[column]), (row["workflow"], column)
    # A workflow's versions stand next to each other, in the cost table's order.
    order = [row["workflow_id"] for row in rendered_demo["tables"]["workflow_cost"]]
    assert [row["workflow_id"] for row in table] == sorted(
        (row["workflow_id"] for row in table), key=order.index
    )


def test_demo_daily_cost_chart_draws_the_view(rendered_demo: dict[str, Any]) -> None:
    from_view = {
        (str(row["started_date"]), row["workflow_id"]): row
        for row in view_rows(
            rendered_demo["db"],
            "select * from eachlabs.workflow_cost_daily where started_date is not null",
        )
    }
    chart = plotted(rendered_demo["out"], "daily_cost")
    assert {(row["started_date"][:10], row["workflow_id"]) for row in chart} == set(from_view)
    for row in chart:
        expected = from_view[(row["started_date"][:10], row["workflow_id"])]
        assert row["series"] == row["workflow"] == expected["flow_name"]
        assert row["executions_with_cost"] == expected["executions_with_cost"]
        assert same_cost(row["total_cost"], expected["total_cost"])


LEFT_OUT_FROM_VIEW = """
    select count(*) filter (where is_dry_run or is_deleted) as left_out,
        count(*) filter (where is_dry_run) as dry_runs,
        count(*) filter (where is_deleted) as deleted,
        count(*) filter (where is_dry_run and is_deleted) as both_
    from eachlabs.execution_runs
"""
TIMED_MODEL_STEPS = """
    select model, count(*) as steps
    from eachlabs.step_runs
    where step_type = 'model' and status = 'completed' and latency_seconds >= 0 {condition}
    group by model
"""


def test_demo_report_leaves_dry_runs_and_deleted_executions_out(
    rendered_demo: dict[str, Any],
) -> None:
    """The demo holds dry runs and soft-deleted executions; the report's own step-level
    queries leave them out like the views do, and the page and the terminal say how many."""
    [counts] = view_rows(rendered_demo["db"], LEFT_OUT_FROM_VIEW)
    assert counts == {"left_out": 29, "dry_runs": 14, "deleted": 16, "both_": 1}
    sentence = (
        "Dry runs and soft-deleted executions are left out of every figure, as in the views: "
        "29 of 1,000 executions (14 dry runs, 16 soft-deleted; 1 both)."
    )
    html = (rendered_demo["out"] / "model_performance.html").read_text(encoding="utf-8")
    assert sentence in html and sentence in rendered_demo["result"].stdout
    # The latency distribution reads step_runs directly: its n per model is the views' count
    # of timed steps (step_latency_by_model), not step_runs' count with the dry runs.
    shown = {
        row["model"]: row["timed_steps"]
        for row in plotted(rendered_demo["out"], "latency_distribution")
    }
    from_view = {
        row["model"]: row["completed_steps"]
        for row in view_rows(
            rendered_demo["db"],
            "select model, completed_steps from eachlabs.step_latency_by_model "
            "where step_type = 'model'",
        )
    }
    kept = {
        row["model"]: row["steps"]
        for row in view_rows(
            rendered_demo["db"],
            TIMED_MODEL_STEPS.format(condition="and not is_dry_run and not is_deleted"),
        )
    }
    every = {
        row["model"]: row["steps"]
        for row in view_rows(rendered_demo["db"], TIMED_MODEL_STEPS.format(condition=""))
    }
    assert shown == from_view == kept
    assert sum(shown.values()) == 1115 and sum(every.values()) == 1146


# --- the demo data and bad input ----------------------------------------------------------


def test_demo_data_shows_what_got_worse(demo_run, workspace) -> None:
    """`make demo`'s data (1,000 executions, seed 42): flux-1-1-pro started failing more and
    nano-banana-pro got slower in their last week, and the terminal report says so."""
    db, result = demo_run.db_path, demo_run.result
    flagged = view_rows(
        db,
        "select model, latency_regressed, failures_regressed from eachlabs.model_recent_changes "
        "where latency_regressed or failures_regressed order by model",
    )
    assert flagged == [
        {"model": "flux-1-1-pro", "latency_regressed": False, "failures_regressed": True},
        {"model": "nano-banana-pro", "latency_regressed": True, "failures_regressed": False},
    ]
    worse = result.stdout.split("What got worse:")[1]
    assert re.search(r"^\s*flux-1-1-pro\s+failures\s", worse, re.M)
    assert re.search(r"^\s*nano-banana-pro\s+latency\s", worse, re.M)
    report = workspace.run("report", "--db", str(db))
    assert report.returncode == 0, report.stderr
    assert report.stdout.split("What got worse:")[1] == worse


def test_report_without_a_file_is_one_clear_line(workspace) -> None:
    missing = workspace.root / "missing.duckdb"
    result = workspace.run("report", "--db", str(missing), "--out", str(workspace.root / "r"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"eachlabs-pipeline: no DuckDB file at {missing}: run `make demo` or "
        f"`eachlabs-pipeline load --db {missing}` first"
    ]
    assert not (workspace.root / "r").exists()


def test_report_without_the_views_is_one_clear_line(workspace) -> None:
    db = workspace.root / "old.duckdb"
    with duckdb.connect(str(db)) as connection:
        connection.execute("create schema eachlabs; create table eachlabs.executions (id int)")
    result = workspace.run("report", "--db", str(db), "--out", str(workspace.root / "r"))
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "lacks the views execution_runs, step_runs, " in line
    assert "model_recent_changes" in line and "workflow_version_cost" in line
    assert f"run `eachlabs-pipeline views --db {db} --dataset eachlabs`" in line
    assert not (workspace.root / "r").exists()


def test_reports_folder_is_ignored_by_git() -> None:
    assert "reports/" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
