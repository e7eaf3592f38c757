"""Hand-made API payloads (ExecutionDetails) for tests: the one home of the test builders.

Each family keeps the defaults the tests that use it assert against:
- `execution` / `model_step`: end-to-end loads (tests/test_load_e2e.py and others);
- `view_execution` / `view_step` / `timed` / `one_step_executions`: view figures worked out
  by hand (tests/test_views.py);
- `timed_execution`: execution-level view figures (tests/test_cost_views.py, the dry-run and
  deletion tests of tests/test_views.py);
- `normaliser_execution` / `normaliser_step`: rows of the normaliser (tests/test_normalise.py);
- `fault_execution` / `fault_step`: hostile and drifting payloads (tests/test_faults_payloads.py);
- `status_only_execution`: the least a client accepts (tests/test_client.py);
- `one_step_execution`: what the hostile servers answer (tests/hostile.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def model_step(step_id: str, model: str, params: dict[str, Any] | None = None, **kw: Any) -> dict:
    step = {
        "step_id": step_id,
        "status": "completed",
        "started_at": "2025-12-04T11:48:10Z",
        "completed_at": "2025-12-04T11:48:39.25Z",
        "output": "text",
        "primary": "text",
        "metadata": {"model": model, "version": "0.0.1", "params": params or {}},
    }
    step.update(kw)
    return step


def execution(execution_id: str, steps: dict[str, dict], **kw: Any) -> dict[str, Any]:
    payload = {
        "execution_id": execution_id,
        "workflow_id": "wf-1",
        "status": "completed",
        "started_at": "2025-12-04T11:48:10Z",
        "completed_at": "2025-12-04T11:50:53Z",
        "inputs": {"prompt": "A majestic mountain landscape"},
        "step_outputs": steps,
        "output": ["https://storage.example/image1.png"],
    }
    payload.update(kw)
    return payload


# --- views (tests/test_views.py) ----------------------------------------------------------


def view_step(
    step_id: str,
    status: str,
    *,
    model: str | None = None,
    version: str = "1.0",
    step_type: str | None = None,
    started_at: str | None = None,
    completed_at: str | None = None,
    error: str | None = None,
    error_cause: str | None = None,
) -> dict[str, Any]:
    """A StepOutput: a model step when `model` is given, an http/python step for
    `step_type`, a step without metadata when neither is."""
    payload: dict[str, Any] = {"step_id": step_id, "status": status}
    if started_at is not None:
        payload["started_at"] = started_at
    if completed_at is not None:
        payload["completed_at"] = completed_at
    if model is not None:
        payload["metadata"] = {"model": model, "version": version, "params": {"prompt": "x"}}
    elif step_type == "http":
        payload["metadata"] = {"type": "http", "method": "POST", "url": "https://example.com/h"}
    elif step_type == "python":
        payload["metadata"] = {"type": "python", "params": {"code": "x = 1"}}
    if status == "completed":
        payload["output"] = "ok"
        payload["primary"] = "ok"
    if error is not None:
        payload["error"] = error
        payload["error_cause"] = error_cause
    return payload


def view_execution(
    execution_id: str,
    steps: list[dict[str, Any]],
    *,
    workflow_id: str = "wf-models",
    status: str = "completed",
    started_at: str = "2025-12-04T09:00:00Z",
    completed_at: str | None = "2025-12-04T11:00:00Z",
) -> dict[str, Any]:
    """An ExecutionDetails payload holding `steps` (in order)."""
    payload: dict[str, Any] = {
        "execution_id": execution_id,
        "workflow_id": workflow_id,
        "status": status,
        "started_at": started_at,
        "inputs": {"prompt": "test"},
        "step_outputs": {s["step_id"]: s for s in steps},
        "output": "ok" if status == "completed" else None,
    }
    if completed_at is not None and status != "running":
        payload["completed_at"] = completed_at
    if status == "failed":
        payload["error"] = "ExecutionFailed"
        payload["error_cause"] = "a step failed"
    return payload


def timed(start: str, seconds: float) -> dict[str, str]:
    """started_at / completed_at `seconds` apart, starting at `start` (RFC 3339)."""
    started = datetime.fromisoformat(start)
    completed = datetime.fromtimestamp(started.timestamp() + seconds, tz=UTC)
    return {"started_at": start, "completed_at": completed.isoformat().replace("+00:00", "Z")}


def one_step_executions(
    prefix: str, model: str, status: str, latencies: list[float], **step_kw: Any
) -> list[dict[str, Any]]:
    """One execution per latency, each with a single step of `model`, an hour apart."""
    execution_status = {"completed": "completed", "failed": "failed"}[status]
    return [
        view_execution(
            f"{prefix}-{i}",
            [
                view_step(
                    "s1",
                    status,
                    model=model,
                    **timed(f"2025-12-04T{10 + i:02d}:00:00Z", seconds),
                    **step_kw,
                )
            ],
            status=execution_status,
        )
        for i, seconds in enumerate(latencies)
    ]


def timed_execution(
    execution_id: str,
    workflow_id: str,
    status: str,
    start: str,
    seconds: float,
    model: str = "m-cost",
    extra_steps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An execution of `workflow_id` lasting `seconds` from `start`, whose first step (a
    `model` step, completed or failed with error "E" as the execution) lasts as long;
    `extra_steps` follow it. For the execution-level views (cost, workflow figures)."""
    times = timed(start, seconds)
    error = {"error": "E", "error_cause": "a model error"} if status == "failed" else {}
    first = view_step("s1", status, model=model, **times, **error)
    return view_execution(
        execution_id,
        [first, *(extra_steps or [])],
        workflow_id=workflow_id,
        status=status,
        started_at=times["started_at"],
        completed_at=times["completed_at"],
    )


# --- normaliser rows (tests/test_normalise.py) --------------------------------------------


def normaliser_execution(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "execution_id": "exec-1",
        "workflow_id": "wf-1",
        "status": "completed",
        "started_at": "2025-12-04T11:48:10Z",
        "completed_at": "2025-12-04T11:50:53Z",
        "inputs": {"prompt": "A mountain"},
        "step_outputs": {},
        "output": "done",
    }
    payload.update(overrides)
    return payload


def normaliser_step(step_id: str = "step1", **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "step_id": step_id,
        "status": "completed",
        "started_at": "2025-12-04T11:48:10Z",
        "completed_at": "2025-12-04T11:48:39Z",
        "metadata": {"model": "openai-chatgpt-5", "version": "0.0.1"},
    }
    payload.update(overrides)
    return payload


# --- fault payloads (tests/test_faults_payloads.py) ---------------------------------------


def fault_step(step_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "status": "completed",
        "started_at": "2025-01-01T00:00:01Z",
        "completed_at": "2025-01-01T00:00:03Z",
        "output": "o",
        "metadata": {"model": "m", "params": {"a": 1}},
        **fields,
    }


def fault_execution(execution_id: str = "e1", **fields: Any) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "workflow_id": "wf",
        "status": "completed",
        "started_at": "2025-01-01T00:00:00Z",
        "completed_at": "2025-01-01T00:00:05Z",
        "step_outputs": {"s1": fault_step("s1")},
        **fields,
    }


# --- client (tests/test_client.py) --------------------------------------------------------


def status_only_execution(execution_id: str) -> dict:
    return {"execution_id": execution_id, "workflow_id": "wf", "status": "completed"}


# --- hostile servers (tests/hostile.py) ---------------------------------------------------


def one_step_execution(execution_id: str, **fields: Any) -> dict[str, Any]:
    """A small valid completed execution with one model step."""
    body: dict[str, Any] = {
        "execution_id": execution_id,
        "workflow_id": "wf-1",
        "status": "completed",
        "started_at": "2025-01-01T00:00:00Z",
        "completed_at": "2025-01-01T00:00:05Z",
        "inputs": {"prompt": "p"},
        "output": {"url": "u"},
        "step_outputs": {
            "s1": {
                "step_id": "s1",
                "status": "completed",
                "started_at": "2025-01-01T00:00:01Z",
                "completed_at": "2025-01-01T00:00:04Z",
                "output": "o",
                "metadata": {"model": "m", "version": "1", "params": {"a": 1}},
            }
        },
    }
    body.update(fields)
    return body
