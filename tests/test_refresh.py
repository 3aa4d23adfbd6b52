"""POST /auth/refresh: rotation, retries within the grace interval, and reuse."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    SECRET_KEY,
    FakeClock,
    StatementCounter,
    TokenInvariants,
    bearer,
    create_user,
    login,
    refresh,
    verified_claims,
)
from sqlalchemy import orm

from example_app import auth, db
from example_app.models import User
from flask_refresh import signals
from flask_refresh.config_values import MAX_DURATION


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def token_rows(app: Flask) -> list[Any]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(auth.models.token).order_by(auth.models.token.id)
        ).scalars()
        return list(rows)


def family_rows(app: Flask) -> list[Any]:
    with app.app_context():
        return list(db.session.execute(sa.select(auth.models.family)).scalars())


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def claims_of(access_token: str) -> dict[str, Any]:
    return jwt.decode(access_token, SECRET_KEY, algorithms=["HS256"])


def test_refresh_rotates_token(app: Flask, client: FlaskClient, alice: int) -> None:
    first = login(client)

    response = refresh(client, first["refresh_token"])

    assert response.status_code == 200
    second = response.json
    assert second is not None
    assert second["refresh_token"] != first["refresh_token"]
    assert second["token_type"] == "Bearer"
    assert response.headers["Cache-Control"] == "no-store"
    old_claims, new_claims = (
        claims_of(first["access_token"]),
        claims_of(second["access_token"]),
    )
    assert new_claims["sid"] == old_claims["sid"]
    assert new_claims["sub"] == str(alice)
    assert new_claims["fresh"] is False
    assert new_claims["jti"] != old_claims["jti"]


def test_refresh_links_successor(app: Flask, client: FlaskClient, alice: int) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    parent, child = token_rows(app)

    assert parent.token_hash == sha256(first["refresh_token"])
    assert child.token_hash == sha256(second["refresh_token"])
    assert parent.used_at is not None
    assert parent.replaced_by_id == child.id
    assert child.used_at is None
    assert child.family_id == parent.family_id
    assert child.jwt_id == claims_of(second["access_token"])["jti"]


#: The statements of a winning refresh: PostgreSQL spends and inserts in one, and
#: MariaDB first sets the next transaction's isolation level.
ROTATION_STATEMENTS = {
    "sqlite": ["UPDATE", "SELECT", "INSERT"],
    "postgresql": ["WITH"],
    "mariadb": ["SET", "UPDATE", "SELECT", "INSERT"],
}


def test_refresh_statements(
    app: Flask, client: FlaskClient, alice: int, backend: str
) -> None:
    presented = login(client)["refresh_token"]

    with StatementCounter(app) as counter:
        response = refresh(client, presented)

    assert response.status_code == 200
    kinds = [statement.split()[0] for statement in counter.statements]
    assert kinds == ROTATION_STATEMENTS[backend]


def test_refresh_accepts_oauth_form(client: FlaskClient, alice: int) -> None:
    first = login(client)

    response = client.post(
        "/auth/refresh",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )

    assert response.status_code == 200


def test_wrong_grant_type_unsupported(client: FlaskClient, alice: int) -> None:
    first = login(client)

    response = client.post(
        "/auth/refresh",
        data={"grant_type": "password", "refresh_token": first["refresh_token"]},
    )

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "unsupported_grant_type"


def test_new_token_rotates_again(client: FlaskClient, alice: int) -> None:
    token = login(client)["refresh_token"]

    for _ in range(5):
        response = refresh(client, token)
        assert response.status_code == 200
        token = response.json["refresh_token"]  # type: ignore[index]


def test_retry_within_grace_gets_same_successor(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    invariants: TokenInvariants,
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    clock.advance(9)
    retry = refresh(client, first["refresh_token"])

    assert retry.status_code == 200
    assert retry.json is not None
    assert retry.json["refresh_token"] == second["refresh_token"]
    assert retry.json["access_token"] != second["access_token"]
    assert all(family.revoked_at is None for family in family_rows(app))
    assert len(token_rows(app)) == 2
    assert refresh(client, second["refresh_token"]).status_code == 200
    invariants.check(first, second, retry.json)


def test_reuse_after_grace_revokes_family(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    caplog: pytest.LogCaptureFixture,
    invariants: TokenInvariants,
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    clock.advance(11)
    with caplog.at_level(logging.WARNING, logger="flask_refresh"):
        reuse = refresh(client, first["refresh_token"])

    assert reuse.status_code == 400
    assert reuse.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token was already used.",
    }
    (family,) = family_rows(app)
    assert family.revoked_at is not None
    assert family.revoked_reason == "reuse_detected"
    assert refresh(client, second["refresh_token"]).status_code == 400
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"user_id={alice}" in message and f"family_id={family.id}" in message
        for message in warnings
    )
    for message in warnings:
        assert first["refresh_token"] not in message
        assert second["refresh_token"] not in message
        assert sha256(first["refresh_token"]) not in message
    invariants.check(first, second)


def test_thief_first_leads_to_revocation(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    invariants: TokenInvariants,
) -> None:
    stolen = login(client)["refresh_token"]
    thief = refresh(client, stolen).json
    assert thief is not None

    clock.advance(60)
    victim = refresh(client, stolen)

    assert victim.status_code == 400
    assert refresh(client, thief["refresh_token"]).status_code == 400
    assert family_rows(app)[0].revoked_reason == "reuse_detected"
    invariants.check(stolen, thief)


def test_grandparent_within_grace_is_reuse(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    invariants: TokenInvariants,
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None
    third = refresh(client, second["refresh_token"]).json
    assert third is not None

    clock.advance(1)
    response = refresh(client, first["refresh_token"])

    assert response.status_code == 400
    assert family_rows(app)[0].revoked_reason == "reuse_detected"
    assert refresh(client, third["refresh_token"]).status_code == 400
    invariants.check(first, second, third)


@pytest.mark.parametrize("config_overrides", [{"REFRESH_REUSE_REPORT_ONLY": True}])
def test_report_only_mode_keeps_family(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    invariants: TokenInvariants,
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None
    received: list[dict[str, Any]] = []

    def on_reuse(sender: Flask, **extra: Any) -> None:
        received.append(extra)

    clock.advance(11)
    with signals.token_reuse_detected.connected_to(on_reuse, app):
        reuse = refresh(client, first["refresh_token"])

    assert reuse.status_code == 400
    assert family_rows(app)[0].revoked_at is None
    assert received[0]["revoked"] is False
    assert refresh(client, second["refresh_token"]).status_code == 200
    invariants.check(first, second)


def test_expired_token_rejected(
    client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    token = login(client)["refresh_token"]

    clock.advance(14 * 24 * 3600 + 1)
    response = refresh(client, token)

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token expired.",
    }


def test_rotation_never_extends_session(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    token = login(client)["refresh_token"]
    # Refresh every 10 days, within the 14-day idle timeout, up to day 29.
    for days in (10, 10, 9):
        clock.advance(days * 24 * 3600)
        body = refresh(client, token).json
        assert body is not None
        token = body["refresh_token"]

    assert body["session_expires_in"] == 24 * 3600
    assert body["refresh_expires_in"] == 24 * 3600

    clock.advance(24 * 3600)
    response = refresh(client, token)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error_description"] == "The refresh token expired."


def test_inactive_user_cannot_refresh(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    token = login(client)["refresh_token"]
    with app.app_context():
        db.session.get(User, alice).active = False  # type: ignore[union-attr]
        db.session.commit()

    response = refresh(client, token)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error_description"] == "The user account is disabled."
    # Nothing spent and, on PostgreSQL where one statement also inserted the
    # successor, nothing inserted.
    (row,) = token_rows(app)
    assert row.used_at is None


def test_hidden_user_cannot_refresh(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    """A host that hides users with global loader criteria, as for soft deletion."""
    presented = login(client)["refresh_token"]

    def hide_alice(execute_state: orm.ORMExecuteState) -> None:
        if execute_state.is_select:
            execute_state.statement = execute_state.statement.options(
                orm.with_loader_criteria(User, User.username != "alice")
            )

    sa.event.listen(db.session, "do_orm_execute", hide_alice)
    try:
        response = refresh(client, presented)
    finally:
        sa.event.remove(db.session, "do_orm_execute", hide_alice)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_grant"
    (row,) = token_rows(app)
    assert row.used_at is None


def test_deleted_user_token_rejected(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    token = login(client)["refresh_token"]
    with app.app_context():
        db.session.delete(db.session.get(User, alice))
        db.session.commit()

    response = refresh(client, token)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_grant"
    assert token_rows(app) == []
    assert family_rows(app) == []


def test_access_token_rejected_by_refresh(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    response = refresh(client, access)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "token",
    ["x" * 43, "not a token", "a" * 4096, "é" * 43],
)
def test_unknown_or_malformed_token_rejected(
    client: FlaskClient, alice: int, token: str
) -> None:
    response = refresh(client, token)

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token is invalid.",
    }


@pytest.mark.parametrize(
    "body", [{}, {"refresh_token": None}, {"refresh_token": 5}, {"refresh_token": ""}]
)
def test_missing_token_is_invalid_request(
    client: FlaskClient, alice: int, body: dict[str, Any]
) -> None:
    response = client.post("/auth/refresh", json=body)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"


def test_refresh_sends_signal(app: Flask, client: FlaskClient, alice: int) -> None:
    first = login(client)
    received: list[dict[str, Any]] = []

    def on_rotated(sender: Flask, **extra: Any) -> None:
        received.append(extra)

    with signals.token_rotated.connected_to(on_rotated, app):
        refresh(client, first["refresh_token"])

    assert received == [
        {
            "user_id": alice,
            "family_id": claims_of(first["access_token"])["sid"],
            "retry": False,
        }
    ]


def test_refreshed_access_token_opens_view(client: FlaskClient, alice: int) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    response = client.get("/api/me", headers=bearer(second["access_token"]))

    assert response.status_code == 200
    assert response.json == {"id": alice, "username": "alice"}


IDLE_HOUR = {"REFRESH_IDLE_TIMEOUT": 3600, "REFRESH_SESSION_LIFETIME": 30 * 24 * 3600}


@pytest.mark.parametrize("config_overrides", [IDLE_HOUR])
def test_idle_timeout_ends_unused_session(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    first = login(client)
    assert first["refresh_expires_in"] == 3600
    assert first["session_expires_in"] == 30 * 24 * 3600

    clock.advance(3601)
    response = refresh(client, first["refresh_token"])

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token expired.",
    }
    (family,) = family_rows(app)
    # The absolute end is still 29 days away: only the idle timeout ended it.
    assert family.expires_at - clock.now > timedelta(days=29)
    assert family.revoked_at is None
    assert all(row.used_at is None for row in token_rows(app))


@pytest.mark.parametrize("config_overrides", [IDLE_HOUR])
def test_each_refresh_restarts_idle_timeout(
    client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    token = login(client)["refresh_token"]

    # Five refreshes 50 minutes apart outlive the one-hour idle timeout four times.
    for step in range(1, 6):
        clock.advance(3000)
        response = refresh(client, token)
        assert response.status_code == 200, step
        body = response.json
        assert body is not None
        assert body["refresh_expires_in"] == 3600
        assert body["session_expires_in"] == 30 * 24 * 3600 - step * 3000
        token = body["refresh_token"]


def test_retry_access_token_is_new_and_valid(
    client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    clock.advance(5)
    retry = refresh(client, first["refresh_token"])

    assert retry.status_code == 200
    body = retry.json
    assert body is not None
    retry_claims = verified_claims(body["access_token"])
    second_claims = verified_claims(second["access_token"])
    assert retry_claims["jti"] != second_claims["jti"]
    assert retry_claims["sid"] == second_claims["sid"]
    assert retry_claims["fresh"] is False
    assert retry_claims["iat"] == int(clock.now.timestamp())
    assert retry_claims["exp"] == retry_claims["iat"] + 900
    # The successor is not re-issued, so its expiry does not move with the retry.
    assert body["refresh_expires_in"] == second["refresh_expires_in"] - 5
    assert body["session_expires_in"] == second["session_expires_in"] - 5
    assert retry.headers["Cache-Control"] == "no-store"
    me = client.get("/api/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json == {"id": alice, "username": "alice"}


def test_repeated_retries_add_no_row(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    invariants: TokenInvariants,
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    successors = []
    for _ in range(3):
        clock.advance(3)
        response = refresh(client, first["refresh_token"])
        assert response.status_code == 200
        successors.append(response.json["refresh_token"])  # type: ignore[index]

    assert successors == [second["refresh_token"]] * 3
    parent, child = token_rows(app)
    assert parent.token_hash == sha256(first["refresh_token"])
    assert parent.replaced_by_id == child.id
    assert child.token_hash == sha256(second["refresh_token"])
    assert child.used_at is None
    assert child.replaced_by_id is None
    assert family_rows(app)[0].revoked_at is None
    invariants.check(first, second)


def test_retry_successor_rotates_once(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    invariants: TokenInvariants,
) -> None:
    first = login(client)
    refresh(client, first["refresh_token"])
    clock.advance(2)
    retried = refresh(client, first["refresh_token"]).json
    assert retried is not None

    third = refresh(client, retried["refresh_token"])

    assert third.status_code == 200
    assert len(token_rows(app)) == 3
    # The retry returned the one live successor, which is now spent, so the first
    # token is no longer the immediate predecessor of a live token.
    clock.advance(1)
    assert refresh(client, first["refresh_token"]).status_code == 400
    assert family_rows(app)[0].revoked_reason == "reuse_detected"
    invariants.check(first, retried)


@pytest.mark.parametrize(("seconds", "status"), [(10, 200), (10.001, 400)])
def test_grace_interval_end_is_inclusive(
    client: FlaskClient, clock: FakeClock, alice: int, seconds: float, status: int
) -> None:
    first = login(client)
    refresh(client, first["refresh_token"])

    clock.advance(seconds)
    response = refresh(client, first["refresh_token"])

    assert response.status_code == status


@pytest.mark.parametrize("config_overrides", [{"REFRESH_REUSE_GRACE": 0}])
def test_zero_grace_makes_any_replay_reuse(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    first = login(client)
    refresh(client, first["refresh_token"])

    clock.advance(0.001)
    response = refresh(client, first["refresh_token"])

    assert response.status_code == 400
    assert family_rows(app)[0].revoked_reason == "reuse_detected"


def test_retry_of_disabled_user_is_not_reuse(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = login(client)
    refresh(client, first["refresh_token"])
    with app.app_context():
        db.session.get(User, alice).active = False  # type: ignore[union-attr]
        db.session.commit()

    clock.advance(2)
    with caplog.at_level(logging.WARNING, logger="flask_refresh"):
        response = refresh(client, first["refresh_token"])

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error_description"] == "The user account is disabled."
    assert family_rows(app)[0].revoked_at is None
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


LONGEST = {
    "REFRESH_ACCESS_TOKEN_LIFETIME": MAX_DURATION,
    "REFRESH_IDLE_TIMEOUT": MAX_DURATION,
    "REFRESH_SESSION_LIFETIME": MAX_DURATION,
    "REFRESH_LEEWAY": MAX_DURATION,
}


@pytest.mark.parametrize("config_overrides", [LONGEST])
def test_longest_durations_work(client: FlaskClient, alice: int) -> None:
    """The longest allowed lifetimes and leeway overflow no date computation."""
    issued = login(client)
    assert issued["session_expires_in"] == int(MAX_DURATION.total_seconds())

    rotated = refresh(client, issued["refresh_token"])
    assert rotated.status_code == 200, rotated.json

    me = client.get("/api/me", headers=bearer(rotated.json["access_token"]))
    assert me.status_code == 200, me.json
