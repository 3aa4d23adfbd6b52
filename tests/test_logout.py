"""POST /auth/logout: revoking the family of a refresh token."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import bearer, create_user, login, refresh

from example_app import auth, db


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def test_logout_revokes_family(app: Flask, client: FlaskClient, alice: int) -> None:
    tokens = login(client)
    other_session = login(client)

    response = client.post(
        "/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )

    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    assert refresh(client, tokens["refresh_token"]).status_code == 400
    assert refresh(client, other_session["refresh_token"]).status_code == 200
    with app.app_context():
        reasons = set(
            db.session.execute(sa.select(auth.models.family.revoked_reason)).scalars()
        )
    assert reasons == {"logout", None}


def test_logout_revokes_rotated_successors(client: FlaskClient, alice: int) -> None:
    first = login(client)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    client.post("/auth/logout", json={"refresh_token": first["refresh_token"]})

    assert refresh(client, second["refresh_token"]).status_code == 400


def test_logout_needs_no_access_token(client: FlaskClient, alice: int) -> None:
    tokens = login(client)

    response = client.post(
        "/auth/logout",
        data={"token": tokens["refresh_token"]},
        headers=bearer("not-a-valid-token"),
    )

    assert response.status_code == 204
    assert refresh(client, tokens["refresh_token"]).status_code == 400


@pytest.mark.parametrize("token", ["A" * 43, "garbage", "x" * 4096])
def test_logout_unknown_token_is_204(
    client: FlaskClient, alice: int, token: str
) -> None:
    response = client.post("/auth/logout", json={"refresh_token": token})

    assert response.status_code == 204


def test_logout_twice_is_204(client: FlaskClient, alice: int) -> None:
    token = login(client)["refresh_token"]

    first = client.post("/auth/logout", json={"refresh_token": token})
    second = client.post("/auth/logout", json={"refresh_token": token})

    assert first.status_code == 204
    assert second.status_code == 204


@pytest.mark.parametrize("body", [{}, {"refresh_token": 7}, {"refresh_token": ""}])
def test_logout_without_token_is_invalid_request(
    client: FlaskClient, alice: int, body: dict[str, object]
) -> None:
    response = client.post("/auth/logout", json=body)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"


def test_access_token_outlives_logout_by_default(
    client: FlaskClient, alice: int
) -> None:
    tokens = login(client)

    client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    response = client.get("/api/me", headers=bearer(tokens["access_token"]))

    # Access tokens are stateless unless REFRESH_CHECK_REVOKED is on.
    assert response.status_code == 200


@pytest.mark.parametrize("config_overrides", [{"REFRESH_CHECK_REVOKED": True}])
def test_revocation_check_rejects_access_token(client: FlaskClient, alice: int) -> None:
    tokens = login(client)
    assert (
        client.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    )

    client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    response = client.get("/api/me", headers=bearer(tokens["access_token"]))

    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_token",
        "error_description": "The session of this access token was revoked.",
    }
