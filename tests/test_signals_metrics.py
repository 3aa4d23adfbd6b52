"""Blinker signals, event counters and log lines of authentication events."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    PASSWORD,
    FakeClock,
    bearer,
    create_user,
    login,
    refresh,
    session_of,
    token_rows,
)

from flask_refresh import get_state, signals
from flask_refresh.metrics import COUNTERS

WRONG_PASSWORD = "wrong password 7f3a"
REPORT_ONLY = {"REFRESH_REUSE_REPORT_ONLY": True}
SIGNALS = {
    "login_succeeded": signals.login_succeeded,
    "login_failed": signals.login_failed,
    "token_rotated": signals.token_rotated,
    "token_reuse_detected": signals.token_reuse_detected,
    "session_revoked": signals.session_revoked,
}


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def received(app: Flask) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every signal the app sends during the test, in order, as (name, keywords)."""
    events: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for name, signal in SIGNALS.items():

        def receive(sender: Flask, _name: str = name, **extra: Any) -> None:
            assert sender is app
            events.append((_name, extra))

        receivers.append(receive)
        signal.connect(receive, sender=app)

    yield events

    for signal, receive in zip(SIGNALS.values(), receivers, strict=True):
        signal.disconnect(receive, sender=app)


def named(events: list[tuple[str, dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [extra for event, extra in events if event == name]


def counters(app: Flask) -> dict[str, int]:
    return get_state(app).metrics.snapshot()


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def failed_login(client: FlaskClient, username: str = "alice") -> None:
    response = client.post(
        "/auth/login", json={"username": username, "password": WRONG_PASSWORD}
    )
    assert response.status_code == 400


def spend_and_replay(client: FlaskClient, clock: FakeClock) -> dict[str, Any]:
    """Log in, refresh, and replay the spent token after the grace interval."""
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None
    clock.advance(11)
    assert refresh(client, first["refresh_token"]).status_code == 400
    return {"first": first, "second": second}


# Signals


def test_login_signals(
    client: FlaskClient, alice: int, received: list[tuple[str, dict[str, Any]]]
) -> None:
    body = login(client)
    failed_login(client)
    failed_login(client, "nobody")

    assert received == [
        (
            "login_succeeded",
            {"user_id": alice, "family_id": session_of(body["access_token"])},
        ),
        ("login_failed", {"username": "alice"}),
        ("login_failed", {"username": "nobody"}),
    ]


def test_rotation_and_retry_signals(
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    first = login(client)
    family_id = session_of(first["access_token"])

    refresh(client, first["refresh_token"])
    clock.advance(3)
    refresh(client, first["refresh_token"])

    assert named(received, "token_rotated") == [
        {"user_id": alice, "family_id": family_id, "retry": False},
        {"user_id": alice, "family_id": family_id, "retry": True},
    ]


def test_reuse_signals(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    tokens = spend_and_replay(client, clock)
    family_id = session_of(tokens["first"]["access_token"])
    spent = token_rows(app)[0]

    assert spent.token_hash == sha256(tokens["first"]["refresh_token"])
    assert [name for name, _ in received][-2:] == [
        "session_revoked",
        "token_reuse_detected",
    ]
    assert named(received, "token_reuse_detected") == [
        {
            "user_id": alice,
            "family_id": family_id,
            "token_id": spent.id,
            "revoked": True,
        }
    ]
    assert named(received, "session_revoked") == [
        {"user_id": alice, "family_id": family_id, "reason": "reuse_detected"}
    ]


@pytest.mark.parametrize("config_overrides", [REPORT_ONLY])
def test_report_only_reuse_signals(
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    tokens = spend_and_replay(client, clock)

    (reuse,) = named(received, "token_reuse_detected")
    assert reuse["revoked"] is False
    assert reuse["family_id"] == session_of(tokens["first"]["access_token"])
    assert named(received, "session_revoked") == []


def revoke_by_logout(client: FlaskClient, tokens: dict[str, Any]) -> None:
    client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})


def revoke_by_rfc7009(client: FlaskClient, tokens: dict[str, Any]) -> None:
    client.post("/auth/revoke", data={"token": tokens["access_token"]})


def revoke_by_delete(client: FlaskClient, tokens: dict[str, Any]) -> None:
    client.delete(
        f"/auth/sessions/{session_of(tokens['access_token'])}",
        headers=bearer(tokens["access_token"]),
    )


def revoke_by_logout_all(client: FlaskClient, tokens: dict[str, Any]) -> None:
    client.post("/auth/logout-all", headers=bearer(tokens["access_token"]))


def revoke_by_password_change(client: FlaskClient, tokens: dict[str, Any]) -> None:
    # The example app revokes every other session, so log in once more to keep.
    kept = login(client)
    response = client.post(
        "/api/password",
        json={"new_password": "a brand new password"},
        headers=bearer(kept["access_token"]),
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("revoke", "reason"),
    [
        (revoke_by_logout, "logout"),
        (revoke_by_rfc7009, "revoked"),
        (revoke_by_delete, "logout"),
        (revoke_by_logout_all, "logout_all"),
        (revoke_by_password_change, "password_changed"),
    ],
)
def test_revocation_signal(
    client: FlaskClient,
    alice: int,
    received: list[tuple[str, dict[str, Any]]],
    revoke: Any,
    reason: str,
) -> None:
    tokens = login(client)

    revoke(client, tokens)

    assert named(received, "session_revoked") == [
        {
            "user_id": alice,
            "family_id": session_of(tokens["access_token"]),
            "reason": reason,
        }
    ]


def test_logout_others_signals_each_session(
    client: FlaskClient, alice: int, received: list[tuple[str, dict[str, Any]]]
) -> None:
    current = login(client)
    others = [login(client) for _ in range(2)]

    client.post("/auth/logout-others", headers=bearer(current["access_token"]))

    revoked = named(received, "session_revoked")
    assert sorted(revoked, key=lambda extra: extra["family_id"]) == sorted(
        (
            {
                "user_id": alice,
                "family_id": session_of(body["access_token"]),
                "reason": "logout_others",
            }
            for body in others
        ),
        key=lambda extra: extra["family_id"],
    )


def test_cli_revocation_signal(
    app: Flask,
    client: FlaskClient,
    alice: int,
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    tokens = login(client)

    result = app.test_cli_runner().invoke(args=["tokens", "revoke", str(alice)])

    assert result.exit_code == 0, result.output
    assert named(received, "session_revoked") == [
        {
            "user_id": alice,
            "family_id": session_of(tokens["access_token"]),
            "reason": "admin",
        }
    ]


def test_no_revocation_no_signal(
    client: FlaskClient, alice: int, received: list[tuple[str, dict[str, Any]]]
) -> None:
    tokens = login(client)
    revoke_by_logout(client, tokens)
    received.clear()

    revoke_by_logout(client, tokens)
    client.post("/auth/logout", json={"refresh_token": "A" * 43})
    client.post("/auth/revoke", data={"token": "garbage"})

    assert received == []


def test_signals_reach_only_their_app(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    other_app = Flask("other")
    other_app_events: list[dict[str, Any]] = []

    def receive(sender: Flask, **extra: Any) -> None:
        other_app_events.append(extra)

    with signals.login_succeeded.connected_to(receive, other_app):
        login(client)

    assert other_app_events == []


# Counters


def test_counters_start_at_zero(app: Flask) -> None:
    assert counters(app) == dict.fromkeys(COUNTERS, 0)
    assert get_state(app).metrics.revocations_by_reason() == {}


def test_counters_count_each_event(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    first = login(client)
    failed_login(client)
    failed_login(client, "nobody")
    second = refresh(client, first["refresh_token"]).json
    assert second is not None
    clock.advance(3)
    refresh(client, first["refresh_token"])
    third = refresh(client, second["refresh_token"]).json
    assert third is not None
    clock.advance(11)
    refresh(client, second["refresh_token"])
    logged_out = login(client)
    revoke_by_logout(client, logged_out)

    assert counters(app) == {
        "logins_succeeded": 2,
        "logins_failed": 2,
        "tokens_rotated": 2,
        "rotation_retries": 1,
        "reuse_detected": 1,
        "sessions_revoked": 2,
    }
    assert get_state(app).metrics.revocations_by_reason() == {
        "reuse_detected": 1,
        "logout": 1,
    }


@pytest.mark.parametrize("config_overrides", [REPORT_ONLY])
def test_report_only_counts_reuse_only(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    spend_and_replay(client, clock)

    snapshot = counters(app)
    assert snapshot["reuse_detected"] == 1
    assert snapshot["sessions_revoked"] == 0


def test_counters_count_logout_all_per_session(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    sessions = [login(client) for _ in range(3)]

    client.post("/auth/logout-all", headers=bearer(sessions[0]["access_token"]))

    assert counters(app)["sessions_revoked"] == 3
    assert get_state(app).metrics.revocations_by_reason() == {"logout_all": 3}


# Log lines


def log_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "flask_refresh" and record.levelno == level
    ]


def test_reuse_logs_warnings_with_ids(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_refresh"):
        tokens = spend_and_replay(client, clock)
    family_id = session_of(tokens["first"]["access_token"])
    spent = token_rows(app)[0]

    assert log_lines(caplog, logging.WARNING) == [
        f"Refresh token reuse detected: user_id={alice} family_id={family_id}"
        f" token_id={spent.id} used_at={spent.used_at.isoformat()}",
        f"Session revoked: user_id={alice} family_id={family_id} reason=reuse_detected",
    ]


@pytest.mark.parametrize("config_overrides", [REPORT_ONLY])
def test_report_only_logs_one_warning(
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_refresh"):
        tokens = spend_and_replay(client, clock)

    (line,) = log_lines(caplog, logging.WARNING)
    assert line.startswith(
        f"Refresh token reuse detected: user_id={alice}"
        f" family_id={session_of(tokens['first']['access_token'])}"
    )
    assert line.endswith("(report-only mode: the family stays live)")


def test_routine_revocation_logs_info(
    client: FlaskClient, alice: int, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = login(client)

    with caplog.at_level(logging.INFO, logger="flask_refresh"):
        revoke_by_logout(client, tokens)

    # A logout is routine, so it is INFO; only reuse is a WARNING.
    assert log_lines(caplog, logging.WARNING) == []
    assert log_lines(caplog, logging.INFO) == [
        f"Session revoked: user_id={alice}"
        f" family_id={session_of(tokens['access_token'])} reason=logout"
    ]


@pytest.mark.parametrize(
    "config_overrides", [{"REFRESH_CHECK_REVOKED": True, "REFRESH_AUDIENCE": "api"}]
)
def test_logs_never_contain_secrets(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets: list[str] = [PASSWORD, WRONG_PASSWORD, "A" * 43]
    runner = app.test_cli_runner()

    with caplog.at_level(logging.DEBUG, logger="flask_refresh"):
        failed_login(client)
        first = login(client)
        second = refresh(client, first["refresh_token"]).json
        assert second is not None
        clock.advance(3)
        retry = refresh(client, first["refresh_token"]).json
        assert retry is not None
        clock.advance(11)
        refresh(client, first["refresh_token"])
        refresh(client, second["refresh_token"])
        refresh(client, "A" * 43)
        client.get("/api/me", headers=bearer(second["access_token"]))
        other = login(client)
        client.get("/auth/sessions", headers=bearer(other["access_token"]))
        client.post("/auth/revoke", data={"token": other["access_token"]})
        client.post("/auth/logout", json={"refresh_token": other["refresh_token"]})
        third = login(client)
        client.post(
            "/auth/revoke",
            data={"token": third["refresh_token"], "token_type_hint": "access_token"},
        )
        login(client)
        runner.invoke(args=["tokens", "sessions", str(alice)])
        runner.invoke(args=["tokens", "revoke", str(alice)])

    for body in (first, second, retry, other, third):
        secrets += [body["access_token"], body["refresh_token"]]
        secrets.append(sha256(body["refresh_token"]))
        # The signature alone is a secret too.
        secrets.append(body["access_token"].rsplit(".", 1)[1])
    records = [record for record in caplog.records if record.name == "flask_refresh"]
    messages = [record.getMessage() for record in records]
    assert any(m.startswith("Refresh token reuse detected") for m in messages)
    assert any(m.startswith("Refresh rejected") for m in messages)
    assert any(m.startswith("Session revoked") for m in messages)
    for record in records:
        text = " ".join([record.getMessage(), record.exc_text or "", repr(record.args)])
        for secret in secrets:
            assert secret not in text, record.getMessage()
