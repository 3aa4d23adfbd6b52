"""Nothing secret leaves: logs, error bodies and headers during a whole session.

One test drives a session through every kind of event, failures included, while
capturing every log record of every logger at DEBUG and every response. No token,
token digest, password, password hash or key may appear in a log record, its
arguments or its traceback, nor in an error response. A second group of tests
makes the database fail at login, which must give 503 and never let a login
through.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    PASSWORD,
    SECRET_KEY,
    FakeClock,
    bearer,
    create_user,
    family_rows,
)

from example_app import db
from example_app.models import User
from flask_refresh import get_state

WRONG_PASSWORD = "wrong password b81c"
CONFIG = {
    "REFRESH_CHECK_REVOKED": True,
    "REFRESH_LOGIN_LIMIT_PER_ACCOUNT": "3 per minute",
    "REFRESH_LOGIN_LIMIT_PER_ADDRESS": "50 per minute",
}
RENAMES = {
    "sqlite": (
        'ALTER TABLE "user" RENAME TO user_gone',
        'ALTER TABLE user_gone RENAME TO "user"',
    ),
    "postgresql": (
        'ALTER TABLE "user" RENAME TO user_gone',
        'ALTER TABLE user_gone RENAME TO "user"',
    ),
    "mariadb": ("RENAME TABLE `user` TO user_gone", "RENAME TABLE user_gone TO `user`"),
}


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return dict(CONFIG)


@contextlib.contextmanager
def user_table_gone(app: Flask, backend: str, database_url: str) -> Iterator[None]:
    """Rename the user table from a second connection, so that queries on it fail.

    A real database error, the same on all three databases, and undone on exit.
    """
    away, back = RENAMES[backend]
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    with app.app_context():
        # The app's pooled connections must not hold a lock on the table.
        db.session.remove()
        for app_engine in db.engines.values():
            app_engine.dispose()
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(away)
        yield
    finally:
        with app.app_context():
            db.session.remove()
            for app_engine in db.engines.values():
                app_engine.dispose()
        with engine.begin() as connection:
            connection.exec_driver_sql(back)
        engine.dispose()


class Recorder:
    """Every response of the session, for scanning error bodies and headers."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.responses: list[Any] = []

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.open(path, method=method, **kwargs)
        self.responses.append(response)
        return response

    def login(self, username: str, password: str, **kwargs: Any) -> Any:
        return self(
            "POST",
            "/auth/login",
            json={"username": username, "password": password},
            **kwargs,
        )

    def refresh(self, token: str) -> Any:
        return self("POST", "/auth/refresh", json={"refresh_token": token})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_full_session_leaks_nothing(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    backend: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = create_user(app, "alice")
    create_user(app, "mallory", active=False)
    send = Recorder(client)
    received: list[dict[str, Any]] = []

    def tokens(response: Any) -> dict[str, Any]:
        assert response.status_code == 200, response.json
        received.append(response.json)
        return dict(response.json)

    with caplog.at_level(logging.DEBUG):
        # Failed logins of every kind, one with the password typed as the name.
        assert send.login("alice", WRONG_PASSWORD).status_code == 400
        assert send.login("nobody", PASSWORD).status_code == 400
        assert send.login("mallory", PASSWORD).status_code == 400
        assert send.login(PASSWORD, PASSWORD).status_code == 400
        assert send.login("alice", PASSWORD + "\x00").status_code == 400

        # A session: use, rotation, a retry within grace, and reuse after it.
        first = tokens(send.login("alice", PASSWORD))
        assert (
            send("GET", "/api/me", headers=bearer(first["access_token"])).status_code
            == 200
        )
        second = tokens(send.refresh(first["refresh_token"]))
        clock.advance(3)
        tokens(send.refresh(first["refresh_token"]))
        clock.advance(11)
        assert send.refresh(first["refresh_token"]).status_code == 400
        assert send.refresh(second["refresh_token"]).status_code == 400
        assert (
            send("GET", "/api/me", headers=bearer(second["access_token"])).status_code
            == 401
        )

        # Forged and malformed access tokens.
        header, payload, signature = second["access_token"].split(".")
        for forged in (
            f"{header}.{payload}.{signature[::-1]}",
            f"{header}.{payload}",
            f"{header}.{payload}.{signature}=",
            second["refresh_token"],
        ):
            assert send("GET", "/api/me", headers=bearer(forged)).status_code in (
                400,
                401,
            )

        # Revocation by every route.
        third = tokens(send.login("alice", PASSWORD))
        assert (
            send(
                "POST", "/auth/logout", json={"refresh_token": third["refresh_token"]}
            ).status_code
            == 204
        )
        fourth = tokens(send.login("alice", PASSWORD))
        assert (
            send(
                "POST", "/auth/revoke", data={"token": fourth["access_token"]}
            ).status_code
            == 200
        )
        fifth = tokens(send.login("alice", PASSWORD))
        assert (
            send(
                "GET", "/auth/sessions", headers=bearer(fifth["access_token"])
            ).status_code
            == 200
        )
        assert (
            send(
                "POST", "/auth/logout-all", headers=bearer(fifth["access_token"])
            ).status_code
            == 200
        )

        # Oversized bodies and unserved methods that carry the password.
        assert (
            send(
                "POST",
                "/auth/login",
                json={"username": "alice", "password": PASSWORD, "pad": "x" * 20_000},
            ).status_code
            == 413
        )
        assert (
            send("GET", "/auth/login", query_string={"password": PASSWORD}).status_code
            == 405
        )

        # Throttling of the account.
        for _ in range(3):
            send.login(
                "alice", WRONG_PASSWORD, environ_base={"REMOTE_ADDR": "192.0.2.9"}
            )
        assert (
            send.login(
                "alice", PASSWORD, environ_base={"REMOTE_ADDR": "192.0.2.9"}
            ).status_code
            == 429
        )

        # A database failure during a login.
        with user_table_gone(app, backend, database_url):
            assert send.login("bob", PASSWORD).status_code == 503

    with app.app_context():
        password_hash = db.session.get(User, alice).password_hash  # type: ignore[union-attr]
    state = get_state(app)
    secrets = {
        PASSWORD,
        WRONG_PASSWORD,
        SECRET_KEY,
        password_hash,
        password_hash.rsplit("$", 1)[-1],
        state.successor_key.hex(),
    }
    for body in received:
        secrets.update(
            (body["access_token"], body["refresh_token"], sha256(body["refresh_token"]))
        )
        secrets.add(body["access_token"].rsplit(".", 1)[1])

    records = caplog.records
    assert any(
        r.getMessage().startswith("Refresh token reuse detected") for r in records
    )
    assert any(r.getMessage().startswith("Login throttled") for r in records)
    assert any(
        r.getMessage().startswith("Database error while loading a user")
        for r in records
    )
    for record in records:
        text = " ".join([record.getMessage(), record.exc_text or "", repr(record.args)])
        for secret in secrets:
            assert secret not in text, (record.name, record.getMessage())

    errors = [r for r in send.responses if r.status_code >= 400]
    assert {r.status_code for r in errors} == {400, 401, 405, 413, 429, 503}
    for response in errors:
        exposed = response.get_data(as_text=True) + str(response.headers)
        for secret in secrets:
            assert secret not in exposed, (response.status_code, response.json)
        assert response.headers["Cache-Control"] == "no-store"


def test_login_database_failure_is_503(
    app: Flask,
    client: FlaskClient,
    backend: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_user(app, "alice")

    with user_table_gone(app, backend, database_url), caplog.at_level(logging.ERROR):
        response = client.post(
            "/auth/login", json={"username": "alice", "password": PASSWORD}
        )

    assert response.status_code == 503
    assert response.json == {
        "error": "temporarily_unavailable",
        "error_description": "The service is temporarily unavailable. Retry shortly.",
    }
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Cache-Control"] == "no-store"
    assert family_rows(app) == []
    messages = [r.getMessage() for r in caplog.records if r.name == "flask_refresh"]
    assert len(messages) == 1
    assert messages[0].startswith(
        "Database error while loading a user at login, responded 503"
    )


def test_login_works_after_database_recovers(
    app: Flask, client: FlaskClient, backend: str, database_url: str
) -> None:
    create_user(app, "alice")
    with user_table_gone(app, backend, database_url):
        assert (
            client.post(
                "/auth/login", json={"username": "alice", "password": PASSWORD}
            ).status_code
            == 503
        )

    response = client.post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 200
    assert len(family_rows(app)) == 1
