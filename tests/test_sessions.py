"""Session routes, the library's revocation functions and lifetimes in the list.

A session is a refresh token family: everything descended from one login.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    PASSWORD,
    FakeClock,
    bearer,
    create_user,
    family_rows,
    login,
    refresh,
    session_of,
)

from example_app import auth, db
from example_app.models import User
from flask_refresh import RevokeReason

DAY = 24 * 3600
IDLE_HOUR = {"REFRESH_IDLE_TIMEOUT": 3600, "REFRESH_SESSION_LIFETIME": 30 * DAY}


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def bob(app: Flask) -> int:
    return create_user(app, "bob")


def iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def login_from(
    client: FlaskClient, agent: str, ip: str, username: str = "alice"
) -> dict[str, Any]:
    response = client.post(
        "/auth/login",
        json={"username": username, "password": PASSWORD},
        headers={"User-Agent": agent},
        environ_base={"REMOTE_ADDR": ip},
    )
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def list_sessions(client: FlaskClient, access_token: str) -> list[dict[str, Any]]:
    response = client.get("/auth/sessions", headers=bearer(access_token))
    assert response.status_code == 200, response.json
    assert response.json is not None
    sessions: list[dict[str, Any]] = response.json["sessions"]
    return sessions


def family_by_id(app: Flask) -> dict[str, Any]:
    return {row.id: row for row in family_rows(app)}


# GET /auth/sessions


def test_list_shows_every_field(
    client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    phone = login_from(client, "Phone/1.0", "198.51.100.4")
    phone_login = clock.now
    clock.advance(60)
    laptop = login_from(client, "Laptop/2.0", "2001:db8::1")
    laptop_login = clock.now

    sessions = list_sessions(client, laptop["access_token"])

    assert sessions == [
        {
            "id": session_of(laptop["access_token"]),
            "created_at": iso(laptop_login),
            "last_used_at": iso(laptop_login),
            "expires_at": iso(laptop_login + timedelta(days=14)),
            "user_agent": "Laptop/2.0",
            "ip_address": "2001:db8::1",
            "current": True,
        },
        {
            "id": session_of(phone["access_token"]),
            "created_at": iso(phone_login),
            "last_used_at": iso(phone_login),
            "expires_at": iso(phone_login + timedelta(days=14)),
            "user_agent": "Phone/1.0",
            "ip_address": "198.51.100.4",
            "current": False,
        },
    ]


def test_current_flag_follows_token(client: FlaskClient, alice: int) -> None:
    first = login(client)
    second = login(client)

    seen_from_first = list_sessions(client, first["access_token"])
    seen_from_second = list_sessions(client, second["access_token"])

    current_first = [s["id"] for s in seen_from_first if s["current"]]
    current_second = [s["id"] for s in seen_from_second if s["current"]]
    assert current_first == [session_of(first["access_token"])]
    assert current_second == [session_of(second["access_token"])]


def test_refresh_updates_last_used(
    client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    first = login_from(client, "Old/1.0", "192.0.2.1")
    created = clock.now

    clock.advance(3600)
    second = client.post(
        "/auth/refresh",
        json={"refresh_token": first["refresh_token"]},
        headers={"User-Agent": "New/2.0"},
        environ_base={"REMOTE_ADDR": "192.0.2.2"},
    ).json
    assert second is not None

    (session,) = list_sessions(client, second["access_token"])
    assert session["id"] == session_of(first["access_token"])
    assert session["created_at"] == iso(created)
    assert session["last_used_at"] == iso(clock.now)
    assert session["expires_at"] == iso(clock.now + timedelta(days=14))
    assert session["user_agent"] == "New/2.0"
    assert session["ip_address"] == "192.0.2.2"
    assert session["current"] is True


def test_list_is_not_cached(client: FlaskClient, alice: int) -> None:
    tokens = login(client)

    response = client.get("/auth/sessions", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_list_expiry_capped_by_session_end(
    client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    body = login(client)
    session_end = clock.now + timedelta(days=30)

    # After refreshes on days 10 and 20 the idle timeout would run to day 34.
    for _ in range(2):
        clock.advance(10 * DAY)
        body = refresh(client, body["refresh_token"]).json
        assert body is not None

    (session,) = list_sessions(client, body["access_token"])
    assert session["expires_at"] == iso(session_end)
    assert body["session_expires_in"] == 10 * DAY


@pytest.mark.parametrize("config_overrides", [IDLE_HOUR])
def test_list_hides_idle_session(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    idle = login(client)
    clock.advance(3601)
    active = login(client)

    sessions = list_sessions(client, active["access_token"])

    assert [s["id"] for s in sessions] == [session_of(active["access_token"])]
    # The idle session ended without being revoked.
    assert family_by_id(app)[session_of(idle["access_token"])].revoked_at is None


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_IDLE_TIMEOUT": 3600, "REFRESH_SESSION_LIFETIME": 7200}],
)
def test_list_hides_session_past_absolute_end(
    client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    body = login(client)
    # Refreshed every 50 minutes, so never idle, yet it ends two hours after login.
    for _ in range(2):
        clock.advance(3000)
        body = refresh(client, body["refresh_token"]).json
        assert body is not None
    assert body["refresh_expires_in"] == 7200 - 6000

    clock.advance(1201)
    other = login(client)

    sessions = list_sessions(client, other["access_token"])
    assert [s["id"] for s in sessions] == [session_of(other["access_token"])]
    assert refresh(client, body["refresh_token"]).status_code == 400


def test_list_hides_revoked_and_foreign_sessions(
    client: FlaskClient, alice: int, bob: int
) -> None:
    logged_out = login(client)
    client.post("/auth/logout", json={"refresh_token": logged_out["refresh_token"]})
    login(client, "bob")
    current = login(client)

    sessions = list_sessions(client, current["access_token"])

    assert [s["id"] for s in sessions] == [session_of(current["access_token"])]


def test_list_needs_access_token(client: FlaskClient, alice: int) -> None:
    response = client.get("/auth/sessions")

    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "missing_token"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/auth/sessions"),
        ("DELETE", "/auth/sessions/0123456789abcdef0123456789abcdef"),
        ("POST", "/auth/logout-all"),
        ("POST", "/auth/logout-others"),
    ],
)
def test_revoked_session_rejected_by_routes(
    client: FlaskClient, alice: int, method: str, path: str
) -> None:
    tokens = login(client)
    other = login(client)
    client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})

    response = client.open(path, method=method, headers=bearer(tokens["access_token"]))

    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_token",
        "error_description": "The session of this access token was revoked.",
    }
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # The rejected request revoked nothing.
    assert refresh(client, other["refresh_token"]).status_code == 200


# DELETE /auth/sessions/<id>


def test_delete_revokes_own_session(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    current = login(client)
    other = login(client)
    other_id = session_of(other["access_token"])

    response = client.delete(
        f"/auth/sessions/{other_id}", headers=bearer(current["access_token"])
    )

    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    families = family_by_id(app)
    assert families[other_id].revoked_reason == "logout"
    assert families[session_of(current["access_token"])].revoked_at is None
    denied = refresh(client, other["refresh_token"])
    assert denied.status_code == 400
    assert denied.json is not None
    assert denied.json["error_description"] == "The refresh token was revoked."
    assert [s["id"] for s in list_sessions(client, current["access_token"])] == [
        session_of(current["access_token"])
    ]
    assert refresh(client, current["refresh_token"]).status_code == 200


def test_delete_current_session(client: FlaskClient, alice: int) -> None:
    current = login(client)
    current_id = session_of(current["access_token"])

    response = client.delete(
        f"/auth/sessions/{current_id}", headers=bearer(current["access_token"])
    )

    assert response.status_code == 204
    assert refresh(client, current["refresh_token"]).status_code == 400
    after = client.get("/auth/sessions", headers=bearer(current["access_token"]))
    assert after.status_code == 401


def test_delete_other_users_session_is_404(
    app: Flask, client: FlaskClient, alice: int, bob: int
) -> None:
    mine = login(client)
    theirs = login(client, "bob")
    their_id = session_of(theirs["access_token"])

    response = client.delete(
        f"/auth/sessions/{their_id}", headers=bearer(mine["access_token"])
    )

    assert response.status_code == 404
    assert response.json == {
        "error": "not_found",
        "error_description": "No such session.",
    }
    assert family_by_id(app)[their_id].revoked_at is None
    assert refresh(client, theirs["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "session_id", ["0123456789abcdef0123456789abcdef", "x", "f" * 300]
)
def test_delete_unknown_session_is_404(
    client: FlaskClient, alice: int, session_id: str
) -> None:
    current = login(client)

    response = client.delete(
        f"/auth/sessions/{session_id}", headers=bearer(current["access_token"])
    )

    assert response.status_code == 404
    assert response.json is not None
    assert response.json["error"] == "not_found"


def test_delete_revoked_session_is_404(client: FlaskClient, alice: int) -> None:
    current = login(client)
    other_id = session_of(login(client)["access_token"])
    path = f"/auth/sessions/{other_id}"

    first = client.delete(path, headers=bearer(current["access_token"]))
    second = client.delete(path, headers=bearer(current["access_token"]))

    assert first.status_code == 204
    assert second.status_code == 404


# POST /auth/logout-all and /auth/logout-others


def test_logout_all_revokes_every_session(
    app: Flask, client: FlaskClient, alice: int, bob: int
) -> None:
    sessions = [login(client) for _ in range(3)]
    already_out = login(client)
    client.post("/auth/logout", json={"refresh_token": already_out["refresh_token"]})
    bobs = login(client, "bob")

    response = client.post(
        "/auth/logout-all", headers=bearer(sessions[0]["access_token"])
    )

    assert response.status_code == 200
    assert response.json == {"revoked_sessions": 3}
    families = family_by_id(app)
    for body in sessions:
        assert families[session_of(body["access_token"])].revoked_reason == (
            "logout_all"
        )
        assert refresh(client, body["refresh_token"]).status_code == 400
    assert families[session_of(already_out["access_token"])].revoked_reason == (
        "logout"
    )
    assert families[session_of(bobs["access_token"])].revoked_at is None
    assert refresh(client, bobs["refresh_token"]).status_code == 200
    after = client.get("/auth/sessions", headers=bearer(sessions[1]["access_token"]))
    assert after.status_code == 401


def test_logout_others_keeps_current(
    app: Flask, client: FlaskClient, alice: int, bob: int
) -> None:
    current = login(client)
    others = [login(client) for _ in range(2)]
    bobs = login(client, "bob")

    response = client.post(
        "/auth/logout-others", headers=bearer(current["access_token"])
    )

    assert response.status_code == 200
    assert response.json == {"revoked_sessions": 2}
    families = family_by_id(app)
    for body in others:
        assert families[session_of(body["access_token"])].revoked_reason == (
            "logout_others"
        )
        assert refresh(client, body["refresh_token"]).status_code == 400
    assert families[session_of(current["access_token"])].revoked_at is None
    assert families[session_of(bobs["access_token"])].revoked_at is None
    assert [s["id"] for s in list_sessions(client, current["access_token"])] == [
        session_of(current["access_token"])
    ]
    assert refresh(client, current["refresh_token"]).status_code == 200


def test_logout_others_alone_revokes_none(client: FlaskClient, alice: int) -> None:
    current = login(client)

    response = client.post(
        "/auth/logout-others", headers=bearer(current["access_token"])
    )

    assert response.status_code == 200
    assert response.json == {"revoked_sessions": 0}
    assert refresh(client, current["refresh_token"]).status_code == 200


def test_logout_others_keeps_rotated_session(client: FlaskClient, alice: int) -> None:
    first = login(client)
    rotated = refresh(client, first["refresh_token"]).json
    assert rotated is not None
    other = login(client)

    response = client.post(
        "/auth/logout-others", headers=bearer(rotated["access_token"])
    )

    assert response.json == {"revoked_sessions": 1}
    assert refresh(client, rotated["refresh_token"]).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 400


# Library functions for the host app


def test_revoke_session_function(app: Flask, client: FlaskClient, alice: int) -> None:
    body = login(client)
    session_id = session_of(body["access_token"])

    with app.app_context():
        first = auth.revoke_session(session_id)
        second = auth.revoke_session(session_id)
        unknown = auth.revoke_session("0" * 32)

    assert first is True
    assert second is False
    assert unknown is False
    assert family_by_id(app)[session_id].revoked_reason == "revoked"
    assert refresh(client, body["refresh_token"]).status_code == 400


def test_revoke_session_stores_reason(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    session_id = session_of(login(client)["access_token"])

    with app.app_context():
        assert auth.revoke_session(session_id, reason=RevokeReason.ADMIN)

    assert family_by_id(app)[session_id].revoked_reason == "admin"


def test_revoke_session_checks_owner(
    app: Flask, client: FlaskClient, alice: int, bob: int
) -> None:
    bobs = login(client, "bob")
    bob_session = session_of(bobs["access_token"])

    with app.app_context():
        as_alice = auth.revoke_session(bob_session, user_id=alice)

    assert as_alice is False
    assert family_by_id(app)[bob_session].revoked_at is None
    assert refresh(client, bobs["refresh_token"]).status_code == 200
    with app.app_context():
        assert auth.revoke_session(bob_session, user_id=bob) is True


def test_revoke_user_sessions_function(
    app: Flask, client: FlaskClient, alice: int, bob: int
) -> None:
    alices = [login(client) for _ in range(3)]
    bobs = login(client, "bob")

    with app.app_context():
        count = auth.revoke_user_sessions(alice, reason=RevokeReason.PASSWORD_CHANGED)
        again = auth.revoke_user_sessions(alice)

    assert count == 3
    assert again == 0
    families = family_by_id(app)
    for body in alices:
        assert families[session_of(body["access_token"])].revoked_reason == (
            "password_changed"
        )
        assert refresh(client, body["refresh_token"]).status_code == 400
    assert refresh(client, bobs["refresh_token"]).status_code == 200


def test_revoke_user_sessions_keeps_one(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    kept = login(client)
    others = [login(client) for _ in range(2)]

    with app.app_context():
        count = auth.revoke_user_sessions(
            alice, keep_session_id=session_of(kept["access_token"])
        )

    assert count == 2
    assert refresh(client, kept["refresh_token"]).status_code == 200
    for body in others:
        assert refresh(client, body["refresh_token"]).status_code == 400


def test_revoke_without_commit_joins_caller(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    body = login(client)

    # Deactivation and revocation commit together, as a host app would do them.
    with app.app_context():
        user = db.session.get(User, alice)
        assert user is not None
        user.active = False
        count = auth.revoke_user_sessions(
            alice, reason=RevokeReason.ADMIN, commit=False
        )
        db.session.commit()

    assert count == 1
    (family,) = family_rows(app)
    assert family.revoked_reason == "admin"
    assert refresh(client, body["refresh_token"]).status_code == 400


def test_revoke_without_commit_rolls_back(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    body = login(client)

    with app.app_context():
        assert auth.revoke_session(session_of(body["access_token"]), commit=False)
        db.session.rollback()

    (family,) = family_rows(app)
    assert family.revoked_at is None
    assert refresh(client, body["refresh_token"]).status_code == 200
