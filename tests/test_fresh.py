"""Fresh access tokens: from a login only, never from a refresh or its retry."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import bearer, create_user, login, refresh, verified_claims


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def change_password(client: FlaskClient, access: str) -> int:
    response = client.post(
        "/api/password",
        json={"new_password": "a brand new password"},
        headers=bearer(access),
    )
    return response.status_code


def test_login_token_is_fresh(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    assert verified_claims(access)["fresh"] is True
    assert change_password(client, access) == 200


def test_grace_retry_token_is_not_fresh(client: FlaskClient, alice: int) -> None:
    tokens = login(client)
    assert refresh(client, tokens["refresh_token"]).status_code == 200

    retry = refresh(client, tokens["refresh_token"])

    assert retry.status_code == 200
    assert retry.json is not None
    access = retry.json["access_token"]
    assert verified_claims(access)["fresh"] is False
    assert change_password(client, access) == 403
