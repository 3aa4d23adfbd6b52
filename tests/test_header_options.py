"""REFRESH_HEADER_NAME, REFRESH_HEADER_TYPE and access tokens in query strings."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import bearer, create_user, login, refresh


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def me(client: FlaskClient, **kwargs: Any) -> Any:
    return client.get("/api/me", **kwargs)


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_HEADER_NAME": "X-Access-Token", "REFRESH_HEADER_TYPE": ""}],
)
def test_raw_token_in_custom_header(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    custom = me(client, headers={"X-Access-Token": access})
    authorization = me(client, headers=bearer(access))

    assert custom.status_code == 200
    assert authorization.status_code == 401
    assert authorization.json is not None
    assert authorization.json["error"] == "missing_token"


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_HEADER_NAME": "X-Access-Token", "REFRESH_HEADER_TYPE": ""}],
)
def test_raw_header_with_scheme_is_malformed(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    response = me(client, headers={"X-Access-Token": f"Bearer {access}"})

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"


@pytest.mark.parametrize("config_overrides", [{"REFRESH_HEADER_TYPE": "JWT"}])
def test_custom_header_type(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    custom = me(client, headers={"Authorization": f"jwt {access}"})
    bearer_scheme = me(client, headers=bearer(access))

    assert custom.status_code == 200
    assert bearer_scheme.status_code == 401


def test_query_string_off_by_default(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    response = me(client, query_string={"access_token": access})

    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "missing_token"


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_ACCESS_TOKEN_LOCATION": ["headers", "query_string"]}],
)
def test_query_string_opt_in(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    response = me(client, query_string={"access_token": access})

    assert response.status_code == 200
    assert response.json == {"id": alice, "username": "alice"}
    assert response.cache_control.private is True


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_ACCESS_TOKEN_LOCATION": ["headers", "query_string"]}],
)
def test_repeated_query_token_rejected(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    response = client.get(f"/api/me?access_token={access}&access_token={access}")

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error_description"] == "Send one access_token parameter."


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_ACCESS_TOKEN_LOCATION": ["headers", "query_string"]}],
)
def test_header_wins_over_query_string(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    bob = create_user(app, "bob")
    alice_access = login(client)["access_token"]
    bob_access = login(client, "bob")["access_token"]

    response = me(
        client, headers=bearer(bob_access), query_string={"access_token": alice_access}
    )

    assert response.status_code == 200
    assert response.json == {"id": bob, "username": "bob"}


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_ACCESS_TOKEN_LOCATION": ["headers", "query_string"]}],
)
def test_refresh_token_never_from_query(client: FlaskClient, alice: int) -> None:
    tokens = login(client)

    response = client.post(
        "/auth/refresh",
        query_string={"refresh_token": tokens["refresh_token"]},
        json={},
    )

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": "The refresh_token parameter is missing.",
    }
    assert refresh(client, tokens["refresh_token"]).status_code == 200
