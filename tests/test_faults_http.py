"""Fault suite, HTTP side: hostile answers, headers, redirects, hangs, TLS, a revoked key.

Every test runs the real CLI against a small hostile server (tests/hostile.py) on 127.0.0.1
and asserts the exact tables and exit code: nothing an API returns may stop the whole run.
"""

from __future__ import annotations

import json

import pytest

from tests.hostile import (
    HostileServer,
    drop_mid_body,
    hang,
    payload,
    redirect,
    self_signed_tls,
    serve_json,
    serve_payload,
    throttle,
    trickle,
)

FAST = {"SOURCES__EACHLABS__BACKOFF_BASE_S": "0.01", "SOURCES__EACHLABS__MAX_ATTEMPTS": "3"}


def errors(workspace) -> dict[str, tuple]:
    return {
        row[0]: row[1:]
        for row in workspace.query(
            "select execution_id, http_status, attempts, error from eachlabs.fetch_errors"
        )
    }


def loaded(workspace) -> set[str]:
    return {row[0] for row in workspace.query("select execution_id from eachlabs.executions")}


def test_no_hostile_answer_stops_the_run(workspace) -> None:
    """One run meets every kind of bad answer at once; each is handled per ID."""
    deep = b'{"execution_id":"deep","output":' + b"[" * 5000 + b"]" * 5000 + b"}"
    nan = b'{"execution_id":"nan","status":"completed","output":{"x":NaN}}'
    routes = {
        "ok": serve_payload("ok"),
        # Retry-After values that must never crash the run: they fall back to the normal
        # backoff (superscript digit, text, negative, 0, a past date).
        "ra-superscript": throttle("\u00b2", serve_payload("ra-superscript"), times=1),
        "ra-text": throttle("soon", serve_payload("ra-text"), times=1),
        "ra-negative": throttle("-5", serve_payload("ra-negative"), times=1),
        "ra-zero": throttle("0", serve_payload("ra-zero"), times=2),
        "ra-past": throttle("Wed, 21 Oct 2015 07:28:00 GMT", serve_payload("ra-past"), times=1),
        "ra-second": throttle("1", serve_payload("ra-second"), times=1),
        "empty": serve_json(b""),
        "array": serve_json([payload("array")]),
        "null": serve_json(None),
        "mismatched": serve_json({**payload("mismatched"), "execution_id": "someone-else"}),
        "nan": serve_json(nan),
        "deep": serve_json(deep),
        "leap-max": serve_payload("leap-max", started_at="9999-12-31T23:59:60Z"),
        "drop": drop_mid_body(json.dumps(payload("drop")).encode()),
    }
    with HostileServer(routes) as server:
        result = workspace.load(server, *routes, "missing", extra=["--quiet"], env=FAST)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert loaded(workspace) == {
        "ok", "ra-superscript", "ra-text", "ra-negative", "ra-zero", "ra-past", "ra-second",
        "leap-max",
    }  # fmt: skip
    found = errors(workspace)
    assert {k: v[:2] for k, v in found.items()} == {
        "empty": (200, 3),
        "array": (200, 3),
        "null": (200, 3),
        "mismatched": (200, 3),
        "nan": (200, 1),
        "deep": (200, 1),
        "drop": (200, 3),  # the 200 was sent; its body broke off
        "missing": (404, 1),
    }
    assert "expected a JSON object, got list" in found["array"][2]
    assert (
        "asked for execution 'mismatched' but the body is about 'someone-else'"
        in (found["mismatched"][2])
    )
    assert "nested too deeply" in found["deep"][2]
    assert "NaN" in found["nan"][2]
    # The overflowing leap second is kept as it came, not lost and not blocking the row.
    [(started_at, extra)] = workspace.query(
        "select started_at, extra_fields from eachlabs.executions where execution_id = 'leap-max'"
    )
    assert started_at is None
    assert json.loads(extra) == {"started_at": "9999-12-31T23:59:60Z"}


def test_redirects_are_not_followed_with_the_key(workspace) -> None:
    with HostileServer(require_key=False) as elsewhere:
        routes = {
            "cross-host": redirect(f"{elsewhere.base_url}/executions/cross-host", 302),
            "moved": redirect(f"{elsewhere.base_url}/executions/moved", 301),
            "ok": serve_payload("ok"),
        }
        with HostileServer(routes) as server:
            result = workspace.load(server, *routes, extra=["--quiet"], env=FAST)
        assert elsewhere.hits == []  # the redirect was never followed, with or without key
    assert result.returncode == 2, result.stderr
    assert loaded(workspace) == {"ok"}
    found = errors(workspace)
    assert {k: v[:2] for k, v in found.items()} == {"cross-host": (302, 1), "moved": (301, 1)}
    assert "redirect" in found["cross-host"][2] and "not followed" in found["cross-host"][2]


def test_a_hang_or_a_trickle_fails_that_id_only(workspace) -> None:
    """With one request at a time, a hanging and a trickling ID do not abort the run."""
    good = [f"good-{i}" for i in range(20)]
    trickled = json.dumps(payload("trickle")).encode()
    routes = {"hang": hang, "trickle": trickle(trickled, 0.25)}
    routes.update({i: serve_payload(i) for i in good})
    env = {**FAST, "SOURCES__EACHLABS__MAX_ATTEMPTS": "1"}
    env["SOURCES__EACHLABS__REQUEST_TIMEOUT_S"] = "6"
    with HostileServer(routes, lifetime_s=60) as server:
        result = workspace.load(
            server, "hang", "trickle", *good, extra=["--quiet", "--concurrency", "1"], env=env
        )
    assert result.returncode == 2, result.stderr
    assert loaded(workspace) == set(good)
    found = errors(workspace)
    assert {k: v[:2] for k, v in found.items()} == {"hang": (None, 1), "trickle": (200, 1)}
    assert "within request_timeout_s=6" in found["trickle"][2]
    assert "ReadTimeout" in found["hang"][2]  # the server was reached: not "unreachable"


def test_a_long_retry_after_pauses_the_whole_client(workspace) -> None:
    """Retry-After: 3600 ends the run's requests at once instead of a stampede."""
    ids = [f"t-{i}" for i in range(60)]
    with HostileServer({i: throttle("3600") for i in ids}) as server:
        result = workspace.load(server, *ids, extra=["--quiet", "--concurrency", "4"], env=FAST)
        sent = len(server.hits)
    assert result.returncode == 2, result.stderr
    assert sent <= 4  # only the requests already in flight when the API said stop
    found = errors(workspace)
    assert set(found) == set(ids)
    assert all("3600" in error for _, _, error in found.values())


def test_tls_failure_is_clear_and_not_retried(workspace, tmp_path) -> None:
    context, cert = self_signed_tls(tmp_path)
    with HostileServer({"a": serve_payload("a"), "b": serve_payload("b")}, tls_context=context) as (
        server
    ):
        # No CA bundle from the machine's environment either: it would override a
        # session-level verify=False and hide it.
        untrusted = workspace.load(
            server, "a", "b", extra=["--quiet", "--concurrency", "1"],
            env={**FAST, "REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""},
        )  # fmt: skip
        connections = server._server.connections
        trusted = workspace.load(
            server, "a", "b", extra=["--quiet"], env={**FAST, "REQUESTS_CA_BUNDLE": str(cert)}
        )
    assert untrusted.returncode == 1, untrusted.stderr
    assert "certificate" in untrusted.stderr and "REQUESTS_CA_BUNDLE" in untrusted.stderr
    assert connections <= 2  # at most one handshake per ID: never retried
    assert trusted.returncode == 0, trusted.stderr
    assert loaded(workspace) == {"a", "b"}


def test_key_revoked_mid_run_exits_1_and_changes_nothing(workspace) -> None:
    ids = [f"k-{i}" for i in range(10)]
    routes = {i: serve_payload(i) for i in ids}
    with HostileServer(routes) as server:
        first = workspace.load(server, "k-0", extra=["--quiet"], env=FAST)
        assert first.returncode == 0, first.stderr
        before = {t: workspace.query(f"select * from eachlabs.{t} order by all") for t in
                  ("executions", "step_outputs", "step_params", "fetch_errors")}  # fmt: skip

        def revoke_then_refuse(handler) -> None:
            server.key_revoked.set()
            handler.send_response(401)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        routes["k-5"] = revoke_then_refuse
        revoked = workspace.load(server, *ids, extra=["--quiet", "--concurrency", "1"], env=FAST)
        after = {t: workspace.query(f"select * from eachlabs.{t} order by all") for t in before}
        server.key_revoked.clear()
        routes["k-5"] = serve_payload("k-5")
        again = workspace.load(server, *ids, extra=["--quiet"], env=FAST)
    assert revoked.returncode == 1
    assert "authentication failed, nothing was loaded" in revoked.stderr
    assert after == before
    assert again.returncode == 0, again.stderr
    assert loaded(workspace) == set(ids)


def test_hostile_ids_are_rejected_and_never_sent(workspace) -> None:
    hostile_ids = [
        "a" * 100_000,
        "caf\u00e9",
        "\u0661\u0662\u0663",
        "a\x01b",
        "a\tb",
        "..",
        "a%2Fb",
    ]
    ids_file = workspace.root / "ids.txt"
    ids_file.write_text("\n".join(["ok", *hostile_ids]) + "\n", encoding="utf-8")
    with HostileServer({"ok": serve_payload("ok")}) as server:
        result = workspace.load(server, extra=["--quiet", "--ids-file", str(ids_file)], env=FAST)
        paths = [hit.path for hit in server.hits]
    assert result.returncode == 2, result.stderr
    assert paths == ["/api/v1/executions/ok"]
    found = errors(workspace)
    expected = {i.strip() for i in hostile_ids}  # the IDs file strips surrounding whitespace
    assert set(found) == expected
    assert all(v[:2] == (None, 0) for v in found.values())


@pytest.mark.parametrize("status", [301, 307, 308])
def test_https_to_http_redirect_never_sends_the_key(workspace, tmp_path, status: int) -> None:
    context, cert = self_signed_tls(tmp_path)
    with HostileServer(require_key=False) as plain:
        routes = {"x": redirect(f"{plain.base_url}/executions/x", status)}
        with HostileServer(routes, tls_context=context) as server:
            result = workspace.load(
                server, "x", extra=["--quiet"], env={**FAST, "REQUESTS_CA_BUNDLE": str(cert)}
            )
        assert plain.hits == []
    assert result.returncode == 2, result.stderr
    assert errors(workspace)["x"][:2] == (status, 1)


def test_an_id_that_failed_in_the_latest_run_is_fetched_again(workspace) -> None:
    """Stored as final, but failing in the latest run: not skipped by the next run."""
    routes = {"a": serve_payload("a"), "b": serve_payload("b")}
    with HostileServer(routes) as server:
        assert workspace.load(server, "a", "b", extra=["--quiet"], env=FAST).returncode == 0
        routes["a"] = serve_json({"error": "service unavailable"}, status=503)
        failed = workspace.load(server, "a", "b", extra=["--quiet", "--refresh-all"], env=FAST)
        assert failed.returncode == 2, failed.stderr
        assert set(errors(workspace)) == {"a"}
        routes["a"] = serve_payload("a")
        server.hits.clear()
        again = workspace.load(server, "a", "b", extra=["--quiet"], env=FAST)
        paths = [hit.path for hit in server.hits]
    assert again.returncode == 0, again.stderr
    assert paths == ["/api/v1/executions/a"]  # b is final and did not fail: skipped
    assert errors(workspace) == {}
