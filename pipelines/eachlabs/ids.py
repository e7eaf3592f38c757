"""Reading and validating execution IDs before anything is sent."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipelines.eachlabs.errors import InvalidIdError

# A single path segment made of unreserved URL characters only: nothing that could climb
# out of `/executions/` (slashes, dots-only names) or need escaping (%, ?, #, spaces).
_SAFE_ID = re.compile(r"[A-Za-z0-9_~.-]{1,200}")


def validate_execution_id(execution_id: str, kind: str = "execution") -> str:
    """Return the ID unchanged if it is a single safe path segment, else raise InvalidIdError
    (`kind` names what it identifies in the message: execution, workflow, bulk)."""
    if (
        not isinstance(execution_id, str)
        or not _SAFE_ID.fullmatch(execution_id)
        or set(execution_id) == {"."}
    ):
        raise InvalidIdError(
            f"invalid {kind} id {str(execution_id)[:80]!r}: an ID must be 1-200 characters of "
            "letters, digits, '-', '_', '.', '~' and not only dots; it was not sent"
        )
    return execution_id


def parse_id_lines(lines: Iterable[str]) -> list[str]:
    """IDs from the lines of an IDs file: whitespace stripped, blanks and `#` comments skipped."""
    ids = []
    for line in lines:
        candidate = line.strip()
        if candidate and not candidate.startswith("#"):
            ids.append(candidate)
    return ids


@dataclass
class IdSelection:
    """The unique IDs of a run, split into those safe to send and those rejected."""

    valid: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0


def select_ids(ids: Iterable[str]) -> IdSelection:
    """Deduplicate IDs (keeping first-seen order) and split off the unsafe ones."""
    selection = IdSelection()
    seen: set[str] = set()
    for execution_id in ids:
        if execution_id in seen:
            selection.duplicates += 1
            continue
        seen.add(execution_id)
        try:
            selection.valid.append(validate_execution_id(execution_id))
        except InvalidIdError as exc:
            selection.rejected[execution_id] = str(exc)
    return selection
