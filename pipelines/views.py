"""Apply the analytics views in `sql/` to a dataset's schema in DuckDB.

Each `sql/<name>.sql` (package data `pipelines.sql`, so any install finds it) holds one
`select` (no `create` statement) that becomes the view `<dataset>.<name>`. Files name the
loader's tables and other views without a schema: DuckDB binds the names inside a view to
the view's own schema first, so the views read the dataset they live in whatever the
caller's search path is. The one way that could go wrong
is a table missing from the dataset but present elsewhere in the database (DuckDB would
fall back to it), so `apply_views` refuses that case.

Formulas several views share (the Wilson bounds, the latency-sample rule, the latency
statistics behind the two latency views) are defined once, as macros in
`sql/macros/duckdb.sql` (the same as PostgreSQL functions in `sql/macros/postgres.sql`).
`apply_views` creates the macros in the dataset's schema before the views; the views call
them by their unqualified names, which DuckDB binds in the view's schema like table names.

Dependencies between views are found by looking for other views' names in each file (and in
the macros it calls: a view calling a table macro that reads `step_runs` comes after
`step_runs`), then the macros and the views are created in topological order, all in one
transaction.
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import duckdb

from pipelines.eachlabs.errors import ViewError

#: The view files: the repository's `sql/` folder, shipped in the package as `pipelines.sql`.
SQL_PACKAGE = "pipelines.sql"
#: The shared formulas: `<sql dir>/macros/<dialect>.sql`; not a view file.
MACROS_FOLDER = "macros"
DIALECTS = ("duckdb", "postgres")

_VIEW_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_BASE_VIEW_HEAD = re.compile(r"\A--\s*[a-z_][a-z0-9_]*\s*\(base view\)")
#: The loader's tables, which views read.
LOADER_TABLES = ("executions", "step_outputs", "step_params", "fetch_errors")
# Comments and quoted strings are removed before looking for names, so that a header
# comment mentioning another view does not create a dependency.
_COMMENTS_AND_STRINGS = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)
_IDENTIFIER = re.compile(r'"((?:[^"]|"")+)"|\b([A-Za-z_][A-Za-z0-9_$]*)\b')
# A macro file's statement: `create or replace macro|function <name>(` (name unqualified).
_MACRO_HEAD = re.compile(
    r"\A\s*create\s+or\s+replace\s+(macro|function)\s+([a-z_][a-z0-9_]*)\s*\(", re.IGNORECASE
)
# A statement ends with a semicolon at the end of a line followed by a blank line or the end
# of the file (a `begin atomic ... end` body holds semicolons of its own).
_STATEMENT_END = re.compile(r";[ \t]*(?:\n[ \t]*\n|\n?[ \t]*\Z)")


class ViewDefinitionError(ViewError):
    """A view file is unusable as it stands (bad name, empty, ...)."""


class ViewCycleError(ViewError):
    """The view files depend on each other in a circle."""


class ViewApplyError(ViewError):
    """DuckDB rejected a view, or the dataset is not ready for the views."""


@dataclass(frozen=True)
class ViewFile:
    """One `sql/<name>.sql` file.

    Attributes:
        name: view name (the file name without `.sql`).
        path: the file.
        sql: the `select` statement, without a trailing semicolon.
        dependencies: names of the other views this one reads, sorted.
        tables: names of the loader's tables this one reads itself (not through other
            views), sorted.
        kind: "base" or "reporting", from the file's first line (`-- <name> (base view)`);
            "reporting" when the line says neither.
    """

    name: str
    path: Traversable
    sql: str
    dependencies: tuple[str, ...]
    tables: tuple[str, ...] = ()
    kind: str = "reporting"


@dataclass(frozen=True)
class MacroDefinition:
    """One `create or replace macro|function` statement of a macro file.

    Attributes:
        name: macro name (unqualified).
        sql: the statement, without the trailing semicolon; the name is unqualified.
        references: lower-cased identifiers the statement uses (to find the views it reads).
        path: the macro file.
    """

    name: str
    sql: str
    references: frozenset[str]
    path: Traversable

    def qualified(self, schema: str) -> str:
        """The statement with the macro's name qualified by `schema`."""
        head = _MACRO_HEAD.match(self.sql)
        assert head is not None  # checked by discover_macros
        return (
            self.sql[: head.start(2)] + f"{quote(schema)}.{head.group(2)}" + self.sql[head.end(2) :]
        )


def _referenced_names(sql: str) -> set[str]:
    """Lower-cased identifiers in `sql`, ignoring comments and string literals."""
    code = _COMMENTS_AND_STRINGS.sub(" ", sql)
    return {
        (quoted.replace('""', '"') if quoted else bare).lower()
        for quoted, bare in _IDENTIFIER.findall(code)
    }


def discover_macros(
    sql_dir: Path | Traversable | None = None, dialect: str = "duckdb"
) -> list[MacroDefinition]:
    """Read `<sql_dir>/macros/<dialect>.sql`: the formulas the views share, in file order.

    Args:
        sql_dir: folder of view files (default: the views shipped in the package).
        dialect: `duckdb` (what `apply_views` uses) or `postgres`.

    Returns:
        The macros in the file's order (a macro may call the ones before it); an empty list
        when the folder has no macro file for `dialect`.

    Raises:
        ViewDefinitionError: unknown dialect, or a statement that is not
            `create or replace macro|function <name>(...)` with an unqualified name.
    """
    if dialect not in DIALECTS:
        raise ViewDefinitionError(f"unknown SQL dialect {dialect!r}: use one of {DIALECTS}")
    sql_dir = files(SQL_PACKAGE) if sql_dir is None else sql_dir
    path = sql_dir / MACROS_FOLDER / f"{dialect}.sql"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    macros = []
    for statement in _STATEMENT_END.split(text):
        # Leading comment lines belong to no statement; drop them, keep the body's own.
        code = _COMMENTS_AND_STRINGS.sub(" ", statement).strip()
        if not code:
            continue
        lines = statement.splitlines()
        while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
            lines.pop(0)
        sql = "\n".join(lines).strip()
        head = _MACRO_HEAD.match(sql)
        if head is None:
            raise ViewDefinitionError(
                f"{path}: every statement must be `create or replace macro|function <name>(...)`"
                f" with an unqualified lower-case name; found: {sql.splitlines()[0]!r}"
            )
        macros.append(
            MacroDefinition(
                name=head.group(2).lower(),
                sql=sql,
                references=frozenset(_referenced_names(sql)),
                path=path,
            )
        )
    return macros


def _macro_reads(macros: list[MacroDefinition], view_names: set[str]) -> dict[str, set[str]]:
    """The views each macro reads, itself or through the macros it calls (earlier in its file)."""
    reads: dict[str, set[str]] = {}
    for macro in macros:
        reads[macro.name] = set(macro.references & view_names).union(
            *(reads[called] for called in macro.references & reads.keys())
        )
    return reads


def discover_views(sql_dir: Path | Traversable | None = None) -> list[ViewFile]:
    """Read every `*.sql` file in `sql_dir` (default: the views shipped in the package).

    Args:
        sql_dir: folder holding one `select` per file; the file name is the view name.

    Returns:
        The view files sorted by name, each with the names of the other views it reads.

    Raises:
        ViewDefinitionError: the folder is missing, a file name is not a plain lower-case
            identifier, or a file is empty.
    """
    sql_dir = files(SQL_PACKAGE) if sql_dir is None else sql_dir
    if not sql_dir.is_dir():
        raise ViewDefinitionError(f"{sql_dir}: no such folder of view files")
    paths = sorted(
        (path for path in sql_dir.iterdir() if path.name.endswith(".sql")),
        key=lambda path: path.name,
    )
    names = {path.name.removesuffix(".sql") for path in paths}
    macro_reads = _macro_reads(discover_macros(sql_dir), names)
    views = []
    for path in paths:
        name = path.name.removesuffix(".sql")
        if not _VIEW_NAME.fullmatch(name):
            raise ViewDefinitionError(
                f"{path}: view file names must be lower-case identifiers ([a-z_][a-z0-9_]*)"
            )
        sql = path.read_text(encoding="utf-8").strip().rstrip(";").rstrip()
        if not _COMMENTS_AND_STRINGS.sub("", sql).strip():
            raise ViewDefinitionError(f"{path}: the file holds no SQL")
        referenced = _referenced_names(sql)
        through_macros = set().union(*(macro_reads[m] for m in referenced & macro_reads.keys()))
        dependencies = tuple(sorted(((referenced & names) | through_macros) - {name}))
        tables = tuple(sorted(referenced & set(LOADER_TABLES)))
        kind = "base" if _BASE_VIEW_HEAD.match(sql) else "reporting"
        views.append(
            ViewFile(
                name=name, path=path, sql=sql, dependencies=dependencies, tables=tables, kind=kind
            )
        )
    return views


def order_views(views: list[ViewFile]) -> list[ViewFile]:
    """Sort views so that every view comes after the views it reads.

    The order is deterministic: views whose dependencies are all met are taken in
    alphabetical order, layer by layer.

    Raises:
        ViewCycleError: the dependencies form a cycle; the message names the views and files.
    """
    by_name = {view.name: view for view in views}
    sorter = graphlib.TopologicalSorter({view.name: view.dependencies for view in views})
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        cycle = error.args[1]
        path = " -> ".join(cycle)
        files = ", ".join(sorted({str(by_name[name].path) for name in cycle}))
        raise ViewCycleError(f"views depend on each other in a cycle: {path} ({files})") from None
    ordered = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered.extend(by_name[name] for name in ready)
        sorter.done(*ready)
    return ordered


def quote(identifier: str) -> str:
    """An SQL identifier, double-quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def _check_dataset(
    connection: duckdb.DuckDBPyConnection, dataset: str, views: list[ViewFile]
) -> None:
    """Refuse to build views that would read tables from outside the dataset's schema."""
    (has_schema,) = connection.execute(
        """
        select count(*) > 0
        from information_schema.schemata
        where catalog_name = current_database() and schema_name = ?
        """,
        [dataset],
    ).fetchone()
    if not has_schema:
        raise ViewApplyError(f"schema {dataset!r} does not exist: load the dataset first")
    tables = connection.execute(
        """
        select table_schema, table_name
        from information_schema.tables
        where table_catalog = current_database() and table_type = 'BASE TABLE'
        """
    ).fetchall()
    in_dataset = {name.lower() for schema, name in tables if schema == dataset}
    elsewhere: dict[str, str] = {}
    for schema, name in tables:
        if schema != dataset:
            elsewhere.setdefault(name.lower(), f"{schema}.{name}")
    view_names = {view.name for view in views}
    for view in views:
        for name in sorted(_referenced_names(view.sql) - in_dataset - view_names):
            if name in elsewhere:
                raise ViewApplyError(
                    f"{view.path}: view {view.name} reads {name}, which is missing from schema "
                    f"{dataset!r} (only {elsewhere[name]} exists); load the dataset first"
                )


@dataclass(frozen=True)
class Statement:
    """One `create or replace` statement of a view set, as `apply_views` runs them.

    Attributes:
        sql: the statement, every name it creates qualified by the dataset's schema.
        path: the file it comes from.
        what: `view <name>` or `macro <name>`, for error messages.
    """

    sql: str
    path: Traversable
    what: str


def view_statements(
    dataset: str, sql_dir: Path | Traversable | None = None, dialect: str = "duckdb"
) -> list[Statement]:
    """The statements that create the macros and views of `sql_dir` in schema `dataset`.

    Order: the macros that read no view first, in their file's order; then the views in
    dependency order, each preceded by the macros it calls that read views (a table macro
    is bound when it is created, so the views it reads must exist by then). Run them with
    `dataset` first on the search path: a macro calling another macro binds it through the
    search path when it is created.

    Args:
        dataset: the schema holding the loader's tables.
        sql_dir: folder of view files; default the views shipped in the package.
        dialect: whose macro file to use: `duckdb` or `postgres` (the view files serve both).

    Raises:
        ViewDefinitionError, ViewCycleError: the view or macro files are unusable.
    """
    views = order_views(discover_views(sql_dir))
    macros = discover_macros(sql_dir, dialect)
    macro_reads = _macro_reads(macros, {view.name for view in views})
    statements = [
        Statement(macro.qualified(dataset), macro.path, f"macro {macro.name}")
        for macro in macros
        if not macro_reads[macro.name]
    ]
    pending = [macro for macro in macros if macro_reads[macro.name]]
    for view in views:
        used = _referenced_names(view.sql)
        for macro in [macro for macro in pending if macro.name in used]:
            statements.append(
                Statement(macro.qualified(dataset), macro.path, f"macro {macro.name}")
            )
            pending.remove(macro)
        statements.append(
            Statement(
                f"create or replace view {quote(dataset)}.{quote(view.name)} as\n{view.sql}\n",
                view.path,
                f"view {view.name}",
            )
        )
    return statements


def apply_views(
    connection: duckdb.DuckDBPyConnection,
    dataset: str,
    sql_dir: Path | Traversable | None = None,
) -> list[str]:
    """Create or replace every view of `sql_dir` in schema `dataset`, in dependency order.

    The macros of `sql_dir/macros/duckdb.sql` are created (or replaced) in the same schema
    before the views that call them (see `view_statements`). All macros and views are applied
    in one transaction: if one fails, none changes and the views from the previous run stay
    as they were.

    Args:
        connection: an open DuckDB connection, not inside a transaction.
        dataset: the dlt dataset name, i.e. the schema holding the loader's tables.
        sql_dir: folder of view files; default the views shipped in the package.

    Returns:
        The view names in the order they were applied.

    Raises:
        ViewDefinitionError, ViewCycleError: the view or macro files are unusable.
        ViewApplyError: the dataset is missing, or DuckDB rejected a view or a macro (the
            message names the file).
    """
    views = order_views(discover_views(sql_dir))
    statements = view_statements(dataset, sql_dir)
    _check_dataset(connection, dataset, views)
    # DuckDB binds the names inside a macro when it is created, through the search path
    # (inside a view, the view's schema comes first): the dataset's schema goes on the search
    # path while the macros and views are created, and the caller's is restored afterwards.
    (saved_search_path,) = connection.execute("select current_setting('search_path')").fetchone()
    connection.begin()
    try:
        connection.execute(f"set search_path = {literal(quote(dataset))}")
        for statement in statements:
            _create(connection, statement)
    except BaseException:
        connection.rollback()
        raise
    finally:
        if saved_search_path:
            connection.execute(f"set search_path = {literal(saved_search_path)}")
        else:
            connection.execute("reset search_path")
    connection.commit()
    return [view.name for view in views]


def literal(text: str) -> str:
    """An SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _create(connection: duckdb.DuckDBPyConnection, statement: Statement) -> None:
    """Run one `create or replace` statement; a failure names the file and the object."""
    try:
        connection.execute(statement.sql)
    except duckdb.Error as error:
        hint = ""
        if isinstance(error, duckdb.BinderException) and "not found" in str(error):
            hint = (
                ". If an older eachlabs-pipeline wrote this file, run "
                "`eachlabs-pipeline load` once: it adds the columns the views read"
            )
        raise ViewApplyError(f"{statement.path}: {statement.what} failed: {error}{hint}") from error
