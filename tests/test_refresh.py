"""POST /auth/refresh: rotation, retries within the grace interval, and reuse."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import SECRET_KEY, FakeClock, bearer, create_user, login, refresh

from example_app import auth, db
from example_app.models import User
from flask_refresh import signals


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
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
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


def test_reuse_after_grace_revokes_family(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    caplog: pytest.LogCaptureFixture,
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


def test_thief_first_leads_to_revocation(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    stolen = login(client)["refresh_token"]
    thief = refresh(client, stolen).json
    assert thief is not None

    clock.advance(60)
    victim = refresh(client, stolen)

    assert victim.status_code == 400
    assert refresh(client, thief["refresh_token"]).status_code == 400
    assert family_rows(app)[0].revoked_reason == "reuse_detected"


def test_grandparent_within_grace_is_reuse(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
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


@pytest.mark.parametrize("config_overrides", [{"REFRESH_REUSE_REPORT_ONLY": True}])
def test_report_only_mode_keeps_family(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
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
    assert all(row.used_at is None for row in token_rows(app))


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
