"""What the project knows of the Eachlabs Workflows API: the dlt source (`source.py`), the
client and its answers, the normaliser, the tables and the settings.

The source's names are exported lazily (PEP 562): importing `pipelines.eachlabs.settings` or
`.errors` does not import dlt, which takes about half a second, so the CLI's `--help` and
`--version` stay quick.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.eachlabs.helpers import FetchReport, TableBatch
    from pipelines.eachlabs.settings import EachlabsSettings
    from pipelines.eachlabs.source import eachlabs_source, table_resources

__all__ = ["EachlabsSettings", "FetchReport", "TableBatch", "eachlabs_source", "table_resources"]

_HOMES = {
    "EachlabsSettings": "pipelines.eachlabs.settings",
    "FetchReport": "pipelines.eachlabs.helpers",
    "TableBatch": "pipelines.eachlabs.helpers",
    "eachlabs_source": "pipelines.eachlabs.source",
    "table_resources": "pipelines.eachlabs.source",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
