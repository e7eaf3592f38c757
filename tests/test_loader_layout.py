"""The loader's layout (#10): payload errors know nothing of HTTP, the fetch layer records them
with status and attempts, settings come from one object, the dlt log filter is the CLI's."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from pipelines.eachlabs.client import FetchResult
from pipelines.eachlabs.errors import FetchError, PayloadError, UnusableBodyError
from pipelines.eachlabs.helpers import FetchReport, add_result
from pipelines.eachlabs.normalise import ExecutionBatch, execution_to_rows
from pipelines.eachlabs.settings import DEFAULTS, SETTING_NAMES, resolve_settings


def test_the_normaliser_raises_a_payload_error_without_http_details() -> None:
    with pytest.raises(PayloadError) as caught:
        execution_to_rows({"status": "completed"}, 0)
    assert not isinstance(caught.value, FetchError)
    assert not hasattr(caught.value, "http_status")
    assert not hasattr(caught.value, "attempts")


def test_the_fetch_layer_records_a_payload_error_with_status_and_attempts() -> None:
    batch, report = ExecutionBatch(), FetchReport()
    result = FetchResult("e1", {"execution_id": "e1", "started_at": 5}, None, 3, 1.5)
    add_result(batch, result, report)
    assert (len(batch), report.loaded, report.failed) == (1, 1, 0)  # type drift still loads
    add_result(batch, FetchResult("e2", {"no": "id"}, None, 3, 2.0), report)
    assert (len(batch), report.failed) == (1, 1)
    assert report.errors == [
        {
            "workflow_id": None,
            "execution_id": "e2",
            "http_status": 200,
            "error": "payload has no execution_id string",
            "attempts": 3,
            "last_attempt_at": 2_000_000,
        }
    ]


def test_an_unusable_body_is_both_a_fetch_and_a_payload_error() -> None:
    error = UnusableBodyError("invalid JSON body", 200, 2)
    assert isinstance(error, FetchError) and isinstance(error, PayloadError)
    assert (error.http_status, error.attempts) == (200, 2)


def test_explicit_settings_beat_config_and_are_checked(monkeypatch) -> None:
    monkeypatch.setenv("SOURCES__EACHLABS__API_KEY", "k")
    monkeypatch.setenv("SOURCES__EACHLABS__CONCURRENCY", "7")
    assert resolve_settings().concurrency == 7
    assert resolve_settings({"concurrency": 3}).concurrency == 3
    assert resolve_settings().batch_size == DEFAULTS.batch_size == 2000
    monkeypatch.setenv("SOURCES__EACHLABS__REQUEST_TIMEOUT_S", "4")
    with pytest.raises(Exception, match=r"request_timeout_s \(4\) must be at least"):
        resolve_settings()
    with pytest.raises(Exception, match="unknown settings"):
        resolve_settings({"concurency": 3})
    monkeypatch.delenv("SOURCES__EACHLABS__REQUEST_TIMEOUT_S")
    canary = resolve_settings({"api_key": "sk-canary-42"})
    assert canary.api_key == "sk-canary-42" and "api_key" in SETTING_NAMES
    assert "sk-canary" not in repr(canary)


def test_importing_the_source_installs_no_log_filter_the_cli_does() -> None:
    code = (
        "import logging, pipelines.eachlabs, pipelines.load\n"
        "print(len(logging.getLogger('dlt').filters))\n"
        "from pipelines import cli\n"
        "print(cli.main(['views', '--db', 'missing-folder/x.duckdb']))\n"
        "print(len(logging.getLogger('dlt').filters))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.split() == ["0", "1", "1"]  # main ran (exit 1), filter on
    record = logging.LogRecord(
        "dlt", logging.WARNING, "", 0, "several column hints were different", (), None
    )
    from pipelines.cli_io import JsonHintNoise as _JsonHintNoise

    assert not _JsonHintNoise().filter(record)
