"""The README matches the code: its example SQL runs, its flags and settings exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from pipelines.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def section(heading: str) -> str:
    match = re.search(rf"^#+ {re.escape(heading)}\s*$(.*?)(?=^#+ |\Z)", README, re.M | re.S)
    assert match, f"README.md has no section {heading!r}"
    return match.group(1)


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block, "README.md has no shell block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands[:2] == ["make demo", "make test"]


def test_example_sql_runs_on_a_loaded_database(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=120, seed=9)
    result = workspace.load(simulator, *simulator.execution_ids, extra=["--quiet"])
    assert result.returncode == 0, result.stderr
    statements = [
        statement
        for block in re.findall(r"```sql\n(.*?)```", section("Example SQL"), re.S)
        for statement in block.split(";")
        if statement.strip()
    ]
    assert len(statements) >= 4
    answers = [workspace.query(statement) for statement in statements]
    assert len(answers[0]) > 0, "the slowest-models example returned nothing"


def all_flags() -> set[str]:
    """Every option of every subcommand."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return {
        flag
        for command in subparsers.choices.values()
        for action in command._actions
        for flag in action.option_strings
    }


def test_every_flag_the_readme_names_exists() -> None:
    prose = re.sub(r"```.*?```", "", README, flags=re.S)  # code blocks also show bench scripts
    named = set(re.findall(r"`[^`\n]*?(--[a-z][a-z-]*)", prose))
    assert {"--ids-file", "--refresh-all", "--db", "--dataset", "--latency-ms"} <= named
    missing = named - all_flags()
    assert not missing, f"README.md names flags no command has: {sorted(missing)}"


SETTINGS = ["base_url", "concurrency", "long_poll_timeout_s", "request_timeout_s",
            "max_attempts", "backoff_base_s", "max_retry_delay_s", "batch_size"]  # fmt: skip


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_setting_is_in_the_readme_and_config_toml(setting: str) -> None:
    config = tomllib.loads((REPO / ".dlt" / "config.toml").read_text(encoding="utf-8"))
    assert setting in config["sources"]["eachlabs"]
    assert f"`{setting}`" in section("Configuration")
    import inspect

    from pipelines.eachlabs import eachlabs_source

    assert setting in inspect.signature(eachlabs_source).parameters


@pytest.mark.parametrize("table", ["executions", "step_outputs", "step_params", "fetch_errors"])
def test_every_column_is_in_the_data_dictionary(table: str) -> None:
    from pipelines.eachlabs import normalise

    schema = getattr(normalise, f"{table.upper()}_SCHEMA")
    match = re.search(rf"^### `{table}`.*?$(.*?)(?=^#+ )", README, re.M | re.S)
    assert match, f"README.md has no data dictionary section for {table}"
    documented = set(re.findall(r"`([a-z_]+)`", match.group(1)))
    missing = set(schema.names) - documented
    assert not missing, f"README.md does not describe {table} columns {sorted(missing)}"
