"""Execute the model performance notebook headlessly and write it out as HTML and PNGs.

`make report` and `eachlabs-pipeline report --out DIR` call `render_report`. The notebook
(`notebooks/model_performance.ipynb`) follows papermill's convention: a cell tagged
`parameters` holds the defaults, and the values given here go into a cell tagged
`injected-parameters` right after it, so `papermill -p db_path FILE` works the same way.
The destination is a parameter too (`destination`); PostgreSQL's credentials never are: the
kernel gets the ones this process resolved in its environment, as dlt reads them.
Every figure the notebook shows carries its name in the output's metadata (`figure`), which
is how the PNGs get their file names.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from pipelines.eachlabs.errors import ConfigError
from pipelines.report import read_frames

#: The repository's notebooks/ folder, shipped in the package as `pipelines.notebooks`.
NOTEBOOK_PATH = Path(str(files("pipelines.notebooks") / "model_performance.ipynb"))

#: The figures the notebook draws, in order; each becomes `<name>.png`.
FIGURES = (
    "recent_changes",
    "latency_distribution",
    "latency_by_version",
    "failure_rates",
    "daily_p95",
    "daily_failure_rate",
    "error_causes",
    "workflows",
    "cost_by_version",
    "daily_cost",
)

#: The notebook's parameters besides `destination`, `db_path` and `dataset` (its cell tagged
#: `parameters`).
PARAMETERS = ("start_date", "end_date", "models", "top_n")

#: dlt's environment variable of the PostgreSQL destination's credentials.
CREDENTIALS_ENV = "DESTINATION__POSTGRES__CREDENTIALS"

REPORT_EXTRA_HINT = (
    "the notebook report needs the `report` extra: run `make report`, or "
    "`pip install -e '.[report]'`"
)


class NotebookError(ConfigError):
    """The notebook failed to run or did not produce what the report needs."""


@dataclass(frozen=True)
class ReportFiles:
    """What `render_report` wrote."""

    html: Path
    notebook: Path
    figures: tuple[Path, ...]


def check_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the notebook takes them (one model name becomes a list of one).

    Raises:
        ConfigError: a name the notebook does not have, or `models` that is not a list of
            names.
    """
    unknown = set(parameters) - set(PARAMETERS)
    if unknown:
        raise ConfigError(
            f"the notebook has no parameter {', '.join(sorted(unknown))}; "
            f"its parameters: {', '.join(PARAMETERS)}"
        )
    models = parameters.get("models")
    if isinstance(models, str):
        parameters = {**parameters, "models": [models]}
    elif models is not None and not (
        isinstance(models, list) and all(isinstance(m, str) for m in models)
    ):
        raise ConfigError(f"models must be a list of model names, not {models!r}")
    return parameters


def inject_parameters(notebook: Any, parameters: dict[str, Any]) -> None:
    """Insert a cell assigning `parameters` right after the cell tagged `parameters`."""
    import nbformat

    index = next(
        (
            i
            for i, cell in enumerate(notebook.cells)
            if "parameters" in cell.get("metadata", {}).get("tags", [])
        ),
        None,
    )
    if index is None:
        raise NotebookError("the notebook has no cell tagged `parameters`")
    source = "# Parameters given to this run\n" + "".join(
        f"{name} = {value!r}\n" for name, value in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, cell)


def figure_outputs(notebook: Any) -> dict[str, bytes]:
    """name -> PNG bytes of every output carrying a `figure` name in its metadata."""
    found: dict[str, bytes] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("figure")
            png = output.get("data", {}).get("image/png")
            if name and png:
                found[name] = base64.b64decode(png)
    return found


def table_outputs(notebook: Any) -> dict[str, list[dict[str, Any]]]:
    """name -> rows of every table the notebook showed (their exact values, as JSON)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            table = output.get("data", {}).get("application/json")
            if isinstance(table, dict) and "table" in table:
                found[table["table"]] = table["rows"]
    return found


def sections(notebook: Any) -> dict[int, str]:
    """Index of the first code cell under each `## ` heading -> that heading ("Reading the
    views" for the code before the first heading): where a progress line is due."""
    found: dict[int, str] = {}
    heading, is_announced = "Reading the views", False
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            match = re.search(r"^## (.+)$", cell.source, re.M)
            if match:
                heading, is_announced = match.group(1).strip(), False
        elif cell.cell_type == "code" and not is_announced:
            found[index] = heading
            is_announced = True
    return found


def execute_notebook(
    parameters: dict[str, Any],
    notebook_path: Path = NOTEBOOK_PATH,
    timeout_s: int = 600,
    on_progress: Callable[[str], None] | None = None,
    kernel_env: dict[str, str] | None = None,
) -> Any:
    """Run the notebook with `parameters` in a fresh kernel; returns the executed notebook.

    `on_progress` gets one line as the kernel starts and one per section of the notebook.
    `kernel_env` is the kernel's whole environment (default: this process's).

    Raises:
        NotebookError: the report extra is missing, or a cell raised (the message names the
            error, not the traceback).
    """
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        raise NotebookError(REPORT_EXTRA_HINT) from None
    if not notebook_path.is_file():
        raise NotebookError(f"no notebook at {notebook_path}: reinstall eachlabs-pipeline")
    notebook = nbformat.read(notebook_path, as_version=4)
    inject_parameters(notebook, parameters)
    due = sections(notebook)

    def announce(cell: Any, cell_index: int) -> None:
        if on_progress is not None and cell_index in due:
            number = list(due).index(cell_index) + 1
            on_progress(f"section {number} of {len(due)}: {due[cell_index]}")

    client = NotebookClient(
        notebook,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook_path.parent)}},
        on_cell_start=announce,
    )
    if on_progress is not None:
        on_progress("starting the notebook's kernel")
    try:
        # The kernel's own log lines (e.g. ipykernel's note that it talks TCP on loopback)
        # are not the report's business; errors in cells come back through the client.
        client.execute(
            stderr=subprocess.DEVNULL, **({} if kernel_env is None else {"env": kernel_env})
        )
    except CellExecutionError as exc:
        raise NotebookError(
            f"the notebook failed: {exc.ename}: {exc.evalue.splitlines()[0] if exc.evalue else ''}"
        ) from None
    return notebook


def notebook_to_html(notebook: Any) -> str:
    """A standalone HTML page of the executed notebook: outputs only, figures embedded.

    The classic template writes each figure's `alt` text; the scripts nbconvert links from a
    CDN (require.js, MathJax, mermaid) are dropped, as the report uses none of them, so the
    page opens offline and makes no request.
    """
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="classic", exclude_input=True, exclude_input_prompt=True)
    html, _ = exporter.from_notebook_node(notebook)
    soup = BeautifulSoup(html, features="html.parser")
    for script in soup.find_all("script"):
        if script.get("src") or "https://" in (script.string or ""):
            script.decompose()
    return str(soup)


def postgres_kernel_env(dataset: str) -> dict[str, str]:
    """This process's environment plus the PostgreSQL credentials it resolved (from its
    environment or .dlt/secrets.toml), in dlt's environment form: the kernel reads the same
    database even though it runs in the notebook's folder, and the password is never a
    parameter (so never in the executed notebook or the page)."""
    from pipelines.targets.postgres import PostgresTarget

    credentials = PostgresTarget(dataset).credentials()
    return {**os.environ, CREDENTIALS_ENV: credentials.to_native_representation()}


def render_report(
    db_path: Path,
    dataset: str,
    out_dir: Path,
    parameters: dict[str, Any] | None = None,
    on_progress: Callable[[str], None] | None = None,
    destination: str = "duckdb",
) -> ReportFiles:
    """Execute the notebook on the views and write HTML, the executed notebook and PNGs.

    Args:
        db_path: DuckDB file with the views applied (unused for PostgreSQL).
        dataset: schema of the views.
        out_dir: folder for `model_performance.html`, `model_performance.ipynb` and one
            `<figure>.png` per figure (created if missing).
        parameters: other notebook parameters (`start_date`, `end_date`, `models`, `top_n`).
        on_progress: gets a line as each part of the work starts (kernel, sections, files).
        destination: `duckdb` (the file `db_path`) or `postgres` (dlt's credentials).

    Raises:
        ConfigError: the file, the database or its views are missing (checked before any
            kernel starts).
        NotebookError: see `execute_notebook`, or a figure of `FIGURES` is missing.
    """
    # One clear line for a missing file, database, credentials or views.
    read_frames(db_path, dataset, {}, destination=destination)
    parameters = check_parameters(parameters or {})
    source: dict[str, Any] = {"destination": destination, "dataset": dataset}
    kernel_env = None
    if destination == "duckdb":
        source["db_path"] = str(Path(db_path).resolve())
    else:
        kernel_env = postgres_kernel_env(dataset)
    notebook = execute_notebook(
        {**source, **parameters}, on_progress=on_progress, kernel_env=kernel_env
    )
    figures = figure_outputs(notebook)
    missing = [name for name in FIGURES if name not in figures]
    if missing:
        raise NotebookError(f"the notebook drew no figure {', '.join(missing)}")

    import nbformat

    if on_progress is not None:
        on_progress(f"writing the HTML page and {len(FIGURES)} PNG files to {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "model_performance.html"
    html_path.write_text(notebook_to_html(notebook), encoding="utf-8")
    notebook_path = out_dir / "model_performance.ipynb"
    nbformat.write(notebook, notebook_path)
    written = []
    for name in FIGURES:
        path = out_dir / f"{name}.png"
        path.write_bytes(figures[name])
        written.append(path)
    return ReportFiles(html=html_path, notebook=notebook_path, figures=tuple(written))
