"""The README and docs/ match the code: their commands paste and run, their SQL returns rows on
the demo file, their flags, settings, tables and columns exist, and everything that exists is
documented."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pipelines.cli import build_parser
from pipelines.eachlabs.settings import DEFAULTS, SECRETS, SETTING_NAMES

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = {
    path.name: path.read_text(encoding="utf-8") for path in sorted((REPO / "docs").glob("*.md"))
}
ALL_TEXTS = {"README.md": README, **{f"docs/{name}": text for name, text in DOCS.items()}}
TABLES_DOC = DOCS["tables.md"]

#: How a pasted command line may start: the Makefile, the installed tools, or plain shell.
COMMAND_STARTS = (
    "make ", ".venv/bin/", "export ", "kill ", "cp ", "sed ", "EACHLABS_API_SPEC=",
)  # fmt: skip


def section(heading: str, text: str = README) -> str:
    match = re.search(rf"^#+ {re.escape(heading)}\s*$(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def code_blocks(text: str, *languages: str) -> list[str]:
    return [
        block
        for language, block in re.findall(r"```([a-z]*)\n(.*?)```", text, re.S)
        if language in languages
    ]


def shell_commands(text: str) -> list[str]:
    """Command lines of the ```sh blocks, comments and continuation lines joined."""
    commands = []
    for block in code_blocks(text, "sh", "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block, "README.md has no shell block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands[:2] == ["make demo", "make test"]


@pytest.mark.parametrize("document", sorted(ALL_TEXTS))
def test_every_shell_command_can_be_pasted_as_is(document: str) -> None:
    """No bare `eachlabs-pipeline` or `python`: they are only on PATH in an active venv."""
    for command in shell_commands(ALL_TEXTS[document]):
        assert command.startswith(COMMAND_STARTS), f"{document}: {command!r}"


def test_every_docs_page_is_linked_from_the_readme_and_every_link_exists() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)\)", README))
    assert linked == {f"docs/{name}" for name in DOCS}


def all_flags() -> set[str]:
    """Every option of every subcommand."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return {
        flag
        for command in subparsers.choices.values()
        for action in command._actions
        for flag in action.option_strings
    } | {flag for action in parser._actions for flag in action.option_strings}


def test_every_flag_the_docs_name_exists() -> None:
    named: set[str] = set()
    for text in ALL_TEXTS.values():
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        ours = [
            span
            for span in re.findall(r"`([^`\n]+)`", prose)
            if span.startswith("--") or "eachlabs-pipeline" in span
        ]  # not other tools' flags (jupyter's, pip's)
        named |= {flag for span in ours for flag in re.findall(r"(--[a-z][a-z-]*)", span)}
        tool_lines = [c for c in shell_commands(text) if "eachlabs-pipeline" in c]
        named |= {flag for line in tool_lines for flag in re.findall(r"(--[a-z][a-z-]*)", line)}
    assert {
        "--ids-file",
        "--refresh-all",
        "--db",
        "--dataset",
        "--latency-ms",
        "--version",
    } <= named
    bench_flags = {
        flag
        for script in (REPO / "bench").glob("*.py")
        for flag in re.findall(r"add_argument\(\s*\"(--[a-z][a-z-]*)\"", script.read_text())
    }
    missing = named - all_flags() - bench_flags
    assert not missing, f"the docs name flags no command has: {sorted(missing)}"


SETTINGS = [name for name in SETTING_NAMES if name not in SECRETS]  # secrets: not in config


def test_config_toml_lists_exactly_the_settings_with_their_defaults() -> None:
    config = tomllib.loads((REPO / ".dlt" / "config.toml").read_text(encoding="utf-8"))
    assert config["sources"]["eachlabs"] == {name: getattr(DEFAULTS, name) for name in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_setting_is_in_the_readme_and_config_toml(setting: str) -> None:
    config = tomllib.loads((REPO / ".dlt" / "config.toml").read_text(encoding="utf-8"))
    assert setting in config["sources"]["eachlabs"]
    assert f"`{setting}`" in section("Configuration")
    from pipelines.eachlabs import eachlabs_source

    # The source takes the setting by name (it would refuse an unknown one).
    default = getattr(DEFAULTS, setting)
    source = eachlabs_source(api_key="k", **{setting: default})
    assert sorted(source.resources) == sorted(TABLES)


def test_the_readme_names_the_secret_setting() -> None:
    assert "`api_key` (secret)" in section("Configuration")
    assert "`webhook_token` (secret)" in section("Configuration")


TABLES = ["executions", "step_outputs", "step_params", "fetch_errors"]


def test_the_readme_lists_every_table() -> None:
    listed = re.findall(r"^\| `([a-z_]+)` \|", section("Tables"), re.M)
    assert listed == TABLES


@pytest.mark.parametrize("table", TABLES)
def test_every_column_is_in_the_data_dictionary_and_every_documented_column_exists(
    table: str,
) -> None:
    from pipelines.eachlabs.tables import SCHEMAS

    schema = SCHEMAS[table]
    match = re.search(rf"^## `{table}`.*?$(.*?)(?=^#+ )", TABLES_DOC, re.M | re.S)
    assert match, f"docs/tables.md has no data dictionary section for {table}"
    rows = re.findall(r"^\| (.*?) \|", match.group(1), re.M)
    documented = {name for cell in rows for name in re.findall(r"`([a-z_]+)`", cell)}
    missing = set(schema.names) - documented
    assert not missing, f"docs/tables.md does not describe {table} columns {sorted(missing)}"
    unknown = documented - set(schema.names)
    assert not unknown, f"docs/tables.md describes {table} columns that do not exist: {unknown}"


# --- what the docs show runs on the demo's file ---------------------------------------------


@pytest.fixture
def demo_dir(demo_run) -> Path:
    """A folder holding `eachlabs_demo.duckdb` as `make demo` writes it."""
    return demo_run.root


def sql_examples() -> list[tuple[str, str]]:
    return [
        (document, statement.strip())
        for document, text in ALL_TEXTS.items()
        for block in code_blocks(text, "sql")
        for statement in block.split(";")
        if re.sub(r"--[^\n]*", "", statement).strip()
    ]


def test_every_sql_example_returns_rows_on_the_demo_file(demo_dir: Path) -> None:
    import duckdb

    examples = sql_examples()
    assert len(examples) >= 12
    with duckdb.connect(str(demo_dir / "eachlabs_demo.duckdb"), read_only=True) as connection:
        for document, statement in examples:
            result = connection.sql(statement)
            rows = result.fetchall()
            assert rows, f"{document}: example returns no rows on the demo file:\n{statement}"
            # Readable as printed: rows without a model (http, python and no-metadata steps)
            # come with step_type saying which, and no float runs to 15 digits.
            if "model" in result.columns:
                models = [row[result.columns.index("model")] for row in rows]
                if None in models:
                    assert "step_type" in result.columns, f"{document}: {statement}"
            if document == "README.md":  # more than microseconds: float noise, not data
                long_floats = [
                    v for row in rows for v in row
                    if isinstance(v, float) and len(repr(v).split(".")[-1]) > 6
                ]  # fmt: skip
                assert not long_floats, f"{document}: round the floats of {statement}"


@pytest.mark.parametrize("name", ["ids.txt", "local.duckdb", "eachlabs_demo.duckdb.lock"])
def test_files_the_readme_commands_write_are_git_ignored(name: str) -> None:
    import fnmatch

    patterns = [
        line.strip().rstrip("/")
        for line in (REPO / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_the_readme_python_snippet_runs_on_the_demo_file(demo_dir: Path) -> None:
    [snippet] = code_blocks(README, "python")
    completed = subprocess.run(
        [sys.executable, "-c", snippet], cwd=demo_dir, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert "failure_rate_low" in completed.stdout and "flux-1-1-pro" in completed.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_try_it_locally_runs_as_written(tmp_path: Path) -> None:
    [block] = code_blocks(section("Try it locally"), "sh")
    port = str(_free_port())
    # Another port, the test's own venv, and 300 executions instead of 2,000 (the commands
    # are the same; only the size of the data set changes).
    script = (
        block.replace("8080", port)
        .replace(".venv/bin/", f"{Path(sys.executable).parent}/")
        .replace("--executions 2000", "--executions 300")
    )
    assert "--executions 300" in script
    env = {key: value for key, value in os.environ.items() if not key.startswith("SOURCES__")} | {
        "DLT_DATA_DIR": str(tmp_path / "dlt-data"),
        "RUNTIME__DLTHUB_TELEMETRY": "0",
    }
    completed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "requested 300, loaded 300" in completed.stdout
    assert "p95_seconds" in completed.stdout and "veo-3" in completed.stdout
    assert "local-key" not in completed.stdout + completed.stderr
