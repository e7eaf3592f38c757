"""A built wheel works anywhere: installed (not editable) into a fresh virtualenv outside the
checkout, run from another directory, it finds its SQL views and imports no dev-only package.

The fresh virtualenv gets the project's runtime dependencies by pointing at this test
environment's site-packages (a `.pth` line), so the test needs no network; the project itself
comes only from the wheel (the editable install's finder is not active there).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parent.parent
DEV_ONLY = ["pytest", "jsonschema", "hypothesis", "tests", "payloads", "simulator_fixtures"]


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=240
    )
    if completed.returncode != 0:
        pytest.fail(
            f"{args} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
        )
    return completed


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin` folder of a fresh virtualenv with the project installed from its wheel."""
    root = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools reuses a `build/` folder left in the source tree, stale
    # files included.
    source = root / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "*.duckdb*"),
    )
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", root / "dist", source, cwd=root,
    )  # fmt: skip
    (root / "build.log").write_text(built.stdout + built.stderr)
    [wheel] = (root / "dist").glob("eachlabs_pipeline-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    [site_packages] = env_dir.glob("lib/python*/site-packages")
    (site_packages / "runtime_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = env_dir / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel,
        cwd=root,
    )  # fmt: skip
    return env_dir / "bin"


def test_wheel_demo_from_another_directory_creates_the_views(
    installed_wheel: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run(
        installed_wheel / "eachlabs-pipeline", "demo", "--executions", "40", "--db", "d.duckdb",
        cwd=elsewhere,
    )  # fmt: skip
    assert "requested 40, loaded 40" in result.stdout
    with duckdb.connect(str(elsewhere / "d.duckdb"), read_only=True) as connection:
        views = connection.execute(
            "select view_name from duckdb_views() where schema_name = 'eachlabs' order by 1"
        ).fetchall()
        [(step_runs, steps)] = connection.execute(
            "select (select count(*) from eachlabs.step_runs),"
            " (select count(*) from eachlabs.step_outputs)"
        ).fetchall()
    expected = sorted(path.stem for path in (REPO / "sql").glob("*.sql"))
    assert [name for (name,) in views] == expected
    assert step_runs == steps > 40


def test_installed_package_comes_from_the_wheel_and_imports_no_dev_package(
    installed_wheel: Path, tmp_path: Path
) -> None:
    probe = (
        "import importlib, pkgutil, sys, pipelines\n"
        "for module in pkgutil.walk_packages(pipelines.__path__, 'pipelines.'):\n"
        "    importlib.import_module(module.name)\n"
        "print(pipelines.__file__)\n"
        f"print(sorted(name for name in {DEV_ONLY!r} if name in sys.modules))\n"
    )
    result = _run(installed_wheel / "python", "-c", probe, cwd=tmp_path)
    location, dev_imports = result.stdout.splitlines()
    assert Path(location).is_relative_to(installed_wheel.parent)
    assert dev_imports == "[]"
    shipped = _run(
        installed_wheel / "python", "-c",
        "from pipelines.views import discover_views; print(len(discover_views()));"
        "from pipelines.notebook import NOTEBOOK_PATH as nb; print(nb.is_file(), nb)",
        cwd=tmp_path,
    )  # fmt: skip
    views, notebook = shipped.stdout.splitlines()
    assert int(views) == len(list((REPO / "sql").glob("*.sql")))
    is_file, notebook_path = notebook.split(" ", 1)
    assert is_file == "True" and Path(notebook_path).is_relative_to(installed_wheel.parent)


def _warnings(log: str) -> list[str]:
    """Lines of a pip log that carry a build warning (not pip's own notes about the machine's
    package index locations, which are not the project's)."""
    return [line for line in log.splitlines() if "Warning" in line or "!!" in line]


def test_building_the_wheel_prints_no_setuptools_warning(installed_wheel: Path) -> None:
    log = (installed_wheel.parent.parent / "build.log").read_text()
    assert not _warnings(log), log


def test_the_makefiles_editable_install_prints_no_setuptools_warning(tmp_path: Path) -> None:
    """`make install`'s pip line, minus the dependencies (no network): no BuildBackendWarning."""
    makefile = (REPO / "Makefile").read_text()
    notice_off = re.search(r"^EDITABLE_NOTICE_OFF := (\w+)=\"([^\"]*)\"$", makefile, re.M)
    assert notice_off and "$(EDITABLE_NOTICE_OFF) $(BIN)/python -m pip install" in makefile
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-*"))
    venv.create(tmp_path / "venv", with_pip=False)
    [site_packages] = (tmp_path / "venv").glob("lib/python*/site-packages")
    # setuptools and wheel from this environment (no build isolation: no network)
    (site_packages / "build_tools.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(tmp_path / "venv" / "bin" / "python"),
         "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(source)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
        env={**os.environ, notice_off.group(1): notice_off.group(2)},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert not _warnings(completed.stdout + completed.stderr), completed.stderr
