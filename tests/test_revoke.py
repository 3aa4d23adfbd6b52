"""POST /auth/revoke: token revocation as RFC 7009 describes it."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    FakeClock,
    bearer,
    create_user,
    family_rows,
    login,
    refresh,
    session_of,
)

from flask_refresh import signals

CHECK_REVOKED = {"REFRESH_CHECK_REVOKED": True}
#: Signs forged access tokens: long enough for HS256, and not the app's key.
FORGING_KEY = "another-secret-key-that-is-long-enough-0123456789"


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def revoke_json(client: FlaskClient, body: dict[str, Any]) -> Any:
    return client.post("/auth/revoke", json=body)


def revoke_form(client: FlaskClient, body: dict[str, str]) -> Any:
    return client.post("/auth/revoke", data=body)


def revoked_reasons(app: Flask) -> dict[str, str | None]:
    return {row.id: row.revoked_reason for row in family_rows(app)}


def forged_access_token(session_id: str) -> str:
    now = int(time.time())
    claims = {
        "sub": "1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "0" * 32,
        "type": "access",
        "fresh": True,
        "sid": session_id,
    }
    return jwt.encode(claims, FORGING_KEY, headers={"typ": "at+jwt"})


@pytest.mark.parametrize("post", [revoke_json, revoke_form])
def test_refresh_token_revokes_session(
    app: Flask, client: FlaskClient, alice: int, post: Any
) -> None:
    tokens = login(client)
    other = login(client)

    response = post(client, {"token": tokens["refresh_token"]})

    assert response.status_code == 200
    assert response.data == b""
    assert revoked_reasons(app) == {
        session_of(tokens["access_token"]): "revoked",
        session_of(other["access_token"]): None,
    }
    denied = refresh(client, tokens["refresh_token"])
    assert denied.status_code == 400
    assert denied.json is not None
    assert denied.json["error_description"] == "The refresh token was revoked."
    assert refresh(client, other["refresh_token"]).status_code == 200


@pytest.mark.parametrize("post", [revoke_json, revoke_form])
def test_access_token_revokes_session(
    app: Flask, client: FlaskClient, alice: int, post: Any
) -> None:
    tokens = login(client)

    response = post(client, {"token": tokens["access_token"]})

    assert response.status_code == 200
    assert revoked_reasons(app) == {session_of(tokens["access_token"]): "revoked"}
    assert refresh(client, tokens["refresh_token"]).status_code == 400


@pytest.mark.parametrize("kind", ["refresh_token", "access_token"])
@pytest.mark.parametrize(
    "hint", ["refresh_token", "access_token", "unknown_type", "", None]
)
def test_hint_never_prevents_revocation(
    app: Flask, client: FlaskClient, alice: int, kind: str, hint: str | None
) -> None:
    tokens = login(client)
    body = {"token": tokens[kind]}
    if hint is not None:
        body["token_type_hint"] = hint

    response = revoke_form(client, body)

    assert response.status_code == 200
    assert revoked_reasons(app) == {session_of(tokens["access_token"]): "revoked"}


@pytest.mark.parametrize("hint", [7, None, ["access_token"]])
def test_non_string_hint_ignored(
    app: Flask, client: FlaskClient, alice: int, hint: object
) -> None:
    tokens = login(client)

    response = revoke_json(
        client, {"token": tokens["access_token"], "token_type_hint": hint}
    )

    assert response.status_code == 200
    assert revoked_reasons(app) == {session_of(tokens["access_token"]): "revoked"}


def test_spent_refresh_token_revokes_session(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    response = revoke_json(client, {"token": first["refresh_token"]})

    assert response.status_code == 200
    assert revoked_reasons(app) == {session_of(first["access_token"]): "revoked"}
    assert refresh(client, second["refresh_token"]).status_code == 400


def test_older_access_token_revokes_session(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    response = revoke_json(client, {"token": first["access_token"]})

    assert response.status_code == 200
    assert refresh(client, second["refresh_token"]).status_code == 400


@pytest.mark.parametrize(
    "token",
    [
        "A" * 43,
        "garbage",
        "x" * 4096,
        "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
        "é" * 43,
    ],
)
def test_unknown_token_is_200(
    app: Flask, client: FlaskClient, alice: int, token: str
) -> None:
    tokens = login(client)

    for post in (revoke_json, revoke_form):
        for hint in ("refresh_token", "access_token"):
            response = post(client, {"token": token, "token_type_hint": hint})
            assert response.status_code == 200, (post.__name__, hint)
            assert response.data == b""
            assert "Content-Type" not in response.headers

    assert revoked_reasons(app) == {session_of(tokens["access_token"]): None}


def test_forged_access_token_revokes_nothing(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    tokens = login(client)
    forged = forged_access_token(session_of(tokens["access_token"]))

    response = revoke_json(client, {"token": forged})

    assert response.status_code == 200
    assert revoked_reasons(app) == {session_of(tokens["access_token"]): None}
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_expired_access_token_revokes_nothing(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    tokens = login(client)

    clock.advance(901)
    response = revoke_json(client, {"token": tokens["access_token"]})

    # An expired access token is invalid, and RFC 7009 section 2.2 requires a 200
    # response for invalid tokens. Nothing is revoked.
    assert response.status_code == 200
    assert revoked_reasons(app) == {session_of(tokens["access_token"]): None}


def test_revoked_token_again_is_200(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    tokens = login(client)
    received: list[dict[str, Any]] = []

    def on_revoked(sender: Flask, **extra: Any) -> None:
        received.append(extra)

    with signals.session_revoked.connected_to(on_revoked, app):
        for token in (tokens["refresh_token"], tokens["access_token"]) * 2:
            assert revoke_json(client, {"token": token}).status_code == 200

    # The session was revoked once; the later requests found nothing live.
    assert len(received) == 1
    assert received[0]["reason"] == "revoked"


@pytest.mark.parametrize(
    "body",
    [{}, {"token": ""}, {"token": None}, {"token": 5}, {"token_type_hint": "x"}],
)
def test_missing_token_is_400(client: FlaskClient, alice: int, body: Any) -> None:
    response = revoke_json(client, body)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"


def test_empty_form_is_400(client: FlaskClient, alice: int) -> None:
    response = revoke_form(client, {"token_type_hint": "refresh_token"})

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": "The token parameter is missing.",
    }


def test_repeated_form_token_is_400(client: FlaskClient, alice: int) -> None:
    tokens = login(client)

    response = client.post(
        "/auth/revoke",
        data=f"token={tokens['refresh_token']}&token=other",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"


def test_plain_text_body_is_400(client: FlaskClient, alice: int) -> None:
    tokens = login(client)

    response = client.post(
        "/auth/revoke", data=tokens["refresh_token"], content_type="text/plain"
    )

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"


def test_revoke_needs_no_access_token(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    tokens = login(client)

    response = client.post(
        "/auth/revoke",
        data={"token": tokens["refresh_token"]},
        headers=bearer("not-a-valid-token"),
    )

    assert response.status_code == 200
    assert revoked_reasons(app) == {session_of(tokens["access_token"]): "revoked"}


def test_access_token_outlives_revocation_by_default(
    client: FlaskClient, alice: int
) -> None:
    tokens = login(client)

    revoke_json(client, {"token": tokens["refresh_token"]})
    response = client.get("/api/me", headers=bearer(tokens["access_token"]))

    # Access tokens are stateless unless REFRESH_CHECK_REVOKED is on.
    assert response.status_code == 200


@pytest.mark.parametrize("config_overrides", [CHECK_REVOKED])
@pytest.mark.parametrize("kind", ["refresh_token", "access_token"])
def test_revocation_check_rejects_access_token(
    client: FlaskClient, alice: int, kind: str
) -> None:
    tokens = login(client)
    other = login(client)
    assert (
        client.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    )

    revoke_json(client, {"token": tokens[kind]})

    response = client.get("/api/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_token",
        "error_description": "The session of this access token was revoked.",
    }
    assert client.get("/api/me", headers=bearer(other["access_token"])).status_code == (
        200
    )


@pytest.mark.parametrize("config_overrides", [CHECK_REVOKED])
def test_revocation_check_rejects_refreshed_tokens(
    client: FlaskClient, alice: int
) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    revoke_json(client, {"token": second["access_token"]})

    for access in (first["access_token"], second["access_token"]):
        assert client.get("/api/me", headers=bearer(access)).status_code == 401
