"""Hand-made API payloads (ExecutionDetails) for tests: small builders with sane defaults."""

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
