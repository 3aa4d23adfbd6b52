"""User ids of any simple type round-trip through the string ``sub`` claim."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import SECRET_KEY, bearer, login, refresh
from host_apps import PRIMARY_KEY_KINDS, Host, build_host

from flask_refresh import RefreshAuth

PRIMARY_KEY_TYPES = {"integer": int, "uuid": uuid.UUID, "string": str}


@pytest.fixture(params=PRIMARY_KEY_KINDS)
def host(request: pytest.FixtureRequest) -> Host:
    return build_host(request.param)


@pytest.fixture
def app(host: Host, fresh_database_url: str) -> Iterator[Flask]:
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = host.new_app(fresh_database_url)
    auth.init_app(app)
    host.create_tables(app)
    yield app
    host.close(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_identity_round_trips_after_refresh(
    app: Flask, client: FlaskClient, host: Host
) -> None:
    user_id = host.add_user(app, "alice")
    tokens = login(client)
    refreshed = refresh(client, tokens["refresh_token"]).json
    assert refreshed is not None

    claims = jwt.decode(refreshed["access_token"], SECRET_KEY, algorithms=["HS256"])
    response = client.get("/me", headers=bearer(refreshed["access_token"]))

    assert isinstance(user_id, PRIMARY_KEY_TYPES[host.primary_key_kind])
    assert claims["sub"] == str(user_id)
    assert response.status_code == 200
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    assert body == {"id": str(user_id), "username": "alice", "sub": str(user_id)}
    assert host.loaded_subjects == [str(user_id)]
