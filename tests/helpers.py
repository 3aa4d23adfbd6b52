"""Shared test helpers: the fake clock, users, logins and config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from example_app import db
from example_app.models import User

SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
PASSWORD = "correct horse battery staple"
#: A cheap hash keeps tests fast; tests of login timing use Werkzeug's default.
FAST_HASH_METHOD = "pbkdf2:sha256:1"


class FakeClock:
    """A clock that tests move by hand, in place of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def app_config(database_url: str, **overrides: Any) -> dict[str, Any]:
    """Return the example app's config for a test on ``database_url``."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REFRESH_SECRET_KEY": SECRET_KEY,
        **overrides,
    }


def create_user(
    app: Flask, username: str, *, password: str = PASSWORD, active: bool = True
) -> int:
    """Insert a user with a fast password hash and return its id."""
    with app.app_context():
        user = User(
            username=username,
            password_hash=generate_password_hash(password, method=FAST_HASH_METHOD),
            active=active,
        )
        db.session.add(user)
        db.session.commit()
        return user.id


def login(
    client: FlaskClient, username: str = "alice", password: str = PASSWORD
) -> dict[str, Any]:
    """Log in through the API and return the token response body."""
    response = client.post(
        "/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def refresh(client: FlaskClient, refresh_token: str) -> Any:
    """POST a refresh token to /auth/refresh and return the response."""
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


def bearer(access_token: str) -> dict[str, str]:
    """Return the Authorization header for an access token."""
    return {"Authorization": f"Bearer {access_token}"}
