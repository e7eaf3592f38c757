"""Helpers of the `load --workflow` tests: hand-made executions and the request log."""

from __future__ import annotations

from typing import Any

from payloads import one_step_execution
from workspace import Workspace

from pipelines.simulator import Simulator

#: The hand-made executions' workflow.
WF = "wf-paging"


def list_requests(simulator: Simulator) -> list[dict[str, str]]:
    return [r.query for r in simulator.request_log if "/workflows/" in r.path]


def detail_requests(simulator: Simulator) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in simulator.request_log if "/executions/" in r.path
            and "/workflows/" not in r.path]  # fmt: skip


def minute(n: int) -> str:
    return f"2026-01-01T{n // 60:02d}:{n % 60:02d}:00Z"


def put_executions(
    simulator: Simulator, count: int, workflow_id: str = WF, prefix: str = "x"
) -> list[str]:
    """`count` finished one-step executions of `workflow_id`, put oldest first (so the list,
    newest put first, is newest-first by created_at). Returns their IDs, oldest first."""
    ids = []
    for n in range(count):
        execution_id = f"{prefix}-{n:04d}"
        started = minute(n % 1440)
        payload = one_step_execution(
            execution_id, workflow_id=workflow_id, started_at=started, completed_at=started
        )
        simulator.put_execution(payload, {"created_at": started, "updated_at": started})
        ids.append(execution_id)
    return ids


def load(ws: Workspace, simulator: Simulator, *args: str) -> Any:
    return ws.load(simulator, extra=[*args, "--quiet"])


def hand_made(simulator: Simulator, execution_id: str) -> tuple[dict, dict]:
    """The payload and summary `put_executions` gave `execution_id` (n from its name)."""
    n = int(execution_id.rsplit("-", 1)[1])
    started = minute(n % 1440)
    payload = one_step_execution(
        execution_id, workflow_id=WF, started_at=started, completed_at=started
    )
    return payload, {"created_at": started, "updated_at": started}
