"""`load --workflow` against hostile list pages: the listing follows the detail fetch's rules
(retries, redirects never followed, bodies trusted no further than a payload) and records a
failed workflow in fetch_errors instead of stopping the run.

Every test runs the real CLI against the hostile server (tests/hostile.py) on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.load import run_load
from tests.hostile import (
    HostileServer,
    redirect,
    send,
    serve_json,
    serve_payload,
    throttle,
)
from tests.workspace import isolated_process_state

FAST = {"SOURCES__EACHLABS__BACKOFF_BASE_S": "0.01", "SOURCES__EACHLABS__MAX_ATTEMPTS": "3"}


def page(*ids: str, offset: Any = None, total: Any = None) -> dict[str, Any]:
    """A list page of summaries of `ids`, newest first."""
    executions = [
        {"execution_id": execution_id, "flow_id": "wf", "flow_name": "F", "version_id": "v1",
         "status": "completed", "created_at": f"2026-01-01T00:{59 - n:02d}:00Z",
         "updated_at": f"2026-01-01T00:{59 - n:02d}:00Z"}
        for n, execution_id in enumerate(ids)
    ]  # fmt: skip
    return {"executions": executions, "offset": offset, "total_count": total or len(ids)}


def route(workflow_id: str) -> str:
    return f"workflows/{workflow_id}/executions"


def listing_errors(workspace) -> dict[str, tuple]:
    rows = workspace.query(
        "select workflow_id, http_status, attempts, error from eachlabs.fetch_errors "
        "where execution_id is null"
    )
    return {row[0]: row[1:] for row in rows}


def loaded(workspace) -> set[str]:
    return {row[0] for row in workspace.query("select execution_id from eachlabs.executions")}


def test_no_hostile_list_page_stops_the_run(workspace) -> None:
    nan = b'{"executions": [], "offset": NaN, "total_count": 1}'
    with HostileServer(require_key=False) as elsewhere:
        routes = {
            route("wf-ok"): serve_json(page("a", "b")),
            route("wf-throttled"): throttle("0", serve_json(page("c")), times=2),
            route("wf-503"): serve_json({"error": "upstream down"}, status=503),
            route("wf-array"): serve_json([page("x")]),
            route("wf-no-list"): serve_json({"executions": "none", "total_count": 0}),
            route("wf-nan"): serve_json(nan),
            route("wf-redirect"): redirect(f"{elsewhere.base_url}/{route('wf-redirect')}"),
            route("wf-stuck"): serve_json(page("d", offset=0)),
            route("wf-bad-items"): serve_json(
                {
                    "executions": [
                        5,
                        None,
                        {"execution_id": "../x"},
                        {"execution_id": 7},
                        page("e")["executions"][0],
                    ],
                    "offset": None,
                    "total_count": 99,
                }  # fmt: skip
            ),
            **{i: serve_payload(i) for i in "abcde"},
        }
        with HostileServer(routes) as server:
            workflows = [part.split("/")[1] for part in routes if part.startswith("workflows/")]
            extra = [arg for wf in workflows for arg in ("--workflow", wf)]
            result = workspace.load(server, extra=[*extra, "--quiet"], env=FAST)
        assert elsewhere.hits == []  # the redirect was never followed, with or without key
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert loaded(workspace) == {"a", "b", "c", "d", "e"}
    found = listing_errors(workspace)
    assert {k: v[:2] for k, v in found.items()} == {
        "wf-503": (503, 3),
        "wf-array": (200, 3),
        "wf-no-list": (200, 3),
        "wf-nan": (200, 1),
        "wf-redirect": (302, 1),
        "wf-stuck": (200, 1),
    }
    assert "expected a list page" in found["wf-array"][2]
    assert "NaN" in found["wf-nan"][2]
    assert "redirect" in found["wf-redirect"][2] and "not followed" in found["wf-redirect"][2]
    assert "does not move forward" in found["wf-stuck"][2]
    marks = {row[0] for row in workspace.query("select workflow_id from eachlabs.listing_marks")}
    assert marks == {"wf-ok", "wf-throttled", "wf-bad-items"}  # complete listings only


def test_items_without_a_usable_id_are_counted_not_loaded(workspace) -> None:
    routes = {
        route("wf"): serve_json(
            {
                "executions": [5, {"execution_id": "../x"}, page("e")["executions"][0]],
                "offset": None,
                "total_count": 3,
            }  # fmt: skip
        ),
        "e": serve_payload("e"),
    }
    with HostileServer(routes) as server:
        result = workspace.load(server, extra=["--workflow", "wf"], env=FAST)
        sent = [hit.path for hit in server.hits]
    assert result.returncode == 0, result.stderr
    assert "1 executions in 1 pages (listed fully; 2 items without a usable execution_id" in (
        result.stderr
    )
    assert sent == ["/api/v1/workflows/wf/executions", "/api/v1/executions/e"]


def test_a_refused_key_on_a_list_page_is_fatal_and_changes_nothing(workspace) -> None:
    routes = {route("wf"): serve_json(page("a")), "a": serve_payload("a")}
    with HostileServer(routes) as server:
        assert workspace.load(server, extra=["--workflow", "wf", "--quiet"]).returncode == 0
        before = workspace.query("select * from eachlabs.executions order by all")
        server.key_revoked.set()
        result = workspace.load(server, extra=["--workflow", "wf", "--quiet"], env=FAST)
    assert result.returncode == 1
    assert "API key was refused" in result.stderr
    assert workspace.query("select * from eachlabs.executions order by all") == before


def test_an_unreachable_api_exits_1_naming_it(workspace) -> None:
    with HostileServer() as server:
        base_url = server.base_url
    # Closed: nothing listens on that port any more.
    result = workspace.run(
        "load", "--workflow", "wf", "--db", str(workspace.db_path), "--base-url", base_url,
        "--quiet", env={"SOURCES__EACHLABS__API_KEY": "k", **FAST},
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot reach {base_url}" in result.stderr
    assert not workspace.db_path.exists()


@pytest.mark.parametrize(
    "text", ["no such page", "Cannot GET /api/v1/workflows/wf/executions", "not found"]
)
def test_a_404_that_is_not_the_apis_means_a_wrong_base_url(workspace, text: str) -> None:
    def not_the_api(handler) -> None:
        send(handler, 404, json.dumps({"error": text}).encode())

    with HostileServer({route("wf"): not_the_api}) as server:
        result = workspace.load(server, extra=["--workflow", "wf", "--quiet"], env=FAST)
    assert result.returncode == 1
    assert f"answered 404 ({text}), not the API's 'workflow not found'" in result.stderr
    assert "check base_url" in result.stderr


def test_a_changing_or_lying_total_count_does_not_end_the_paging(workspace) -> None:
    def pages(handler) -> None:
        offset = int(handler.path.split("offset=")[1].split("&")[0])
        body = page("p1", offset=1, total=1) if offset == 0 else page("p2", total=500)
        body["executions"][0]["created_at"] = f"2026-01-01T00:0{5 - offset}:00Z"
        send(handler, 200, json.dumps(body).encode())

    with HostileServer({route("wf"): pages, "p1": serve_payload("p1"),
                        "p2": serve_payload("p2")}) as server:  # fmt: skip
        result = workspace.load(server, extra=["--workflow", "wf", "--quiet"], env=FAST)
    assert result.returncode == 0, result.stderr
    assert loaded(workspace) == {"p1", "p2"}


def test_a_listed_execution_the_api_does_not_know_does_not_hold_the_mark_back(
    workspace,
) -> None:
    routes = {route("wf"): serve_json(page("a", "gone")), "a": serve_payload("a")}
    with HostileServer(routes) as server:
        result = workspace.load(server, extra=["--workflow", "wf", "--quiet"], env=FAST)
        again = workspace.load(server, extra=["--workflow", "wf", "--quiet"], env=FAST)
        hits = [hit.path for hit in server.hits]
    assert result.returncode == 0, result.stderr  # a 404 counts as done
    marks = workspace.query("select created_at_mark::varchar from eachlabs.listing_marks")
    assert marks == [("2026-01-01 00:59:00+00",)]  # a's, the newest; not gone's (00:58)
    assert again.returncode == 0, again.stderr
    assert hits.count("/api/v1/executions/gone") == 2  # asked again: it may appear later


def test_a_run_that_fails_after_listing_leaves_the_marks_as_they_were(workspace) -> None:
    listed = {"pages": page("a")}
    routes = {
        route("wf"): lambda handler: serve_json(listed["pages"])(handler),
        "a": serve_payload("a"),
        "b": lambda handler: send(handler, 401, b'{"error":"invalid api key"}'),
    }
    with HostileServer(routes) as server:
        assert workspace.load(server, extra=["--workflow", "wf", "--quiet"]).returncode == 0
        before = workspace.query("select * from eachlabs.listing_marks")
        listed["pages"] = page("b", "a")  # b is newer; fetching it is refused
        result = workspace.load(server, extra=["--workflow", "wf", "--quiet"], env=FAST)
    assert result.returncode == 1
    assert workspace.query("select * from eachlabs.listing_marks") == before


def test_an_api_that_answered_then_went_away_fails_listings_not_the_run(
    workspace, simulator_factory
) -> None:
    """The first workflow is unknown (the API's 404: an answer), then the API stops: the
    second listing's connection failure is that workflow's error, recorded; the run is not
    "cannot reach the API" (it was reached)."""
    simulator = simulator_factory(executions=20)
    options = {"base_url": simulator.base_url, "api_key": simulator.api_key}
    with isolated_process_state(workspace.root, {**workspace.env, **FAST}, None):
        summary = run_load(
            workflows=["wf-unknown", simulator.workflow_ids[0]],
            on_listed=lambda listing: simulator.stop(),
            db_path=Path(workspace.db_path),
            source_options=options,
        )
    assert [listing.error is not None for listing in summary.listings] == [True, True]
    assert summary.exit_code == 2
    errors = workspace.query("select workflow_id, http_status from eachlabs.fetch_errors")
    assert sorted(errors, key=str) == sorted(
        [("wf-unknown", 404), (simulator.workflow_ids[0], None)], key=str
    )
