"""RefreshAuth as a Flask extension: binding, init_app and per-app state.

Tests that only register the extension use an in-memory SQLite URL that is never
connected to. Tests that send requests create tables on a new database of every
backend, with models of their own (see host_apps.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import jwt
import pytest
from flask import Flask
from helpers import PASSWORD, SECRET_KEY, bearer
from host_apps import Host, build_host

from flask_refresh import RefreshAuth, State, get_state
from flask_refresh.extension import EXTENSION_KEY

#: SQLAlchemy connects on the first query, and the tests using this URL send
#: none, so the database is never opened.
UNUSED_DATABASE = "sqlite://"
TOKEN_ROUTES = {
    "/auth/login",
    "/auth/refresh",
    "/auth/logout",
    "/auth/revoke",
    "/auth/sessions",
    "/auth/sessions/<session_id>",
    "/auth/logout-all",
    "/auth/logout-others",
}


@pytest.fixture
def host() -> Host:
    return build_host()


@pytest.fixture
def apps_to_close() -> Iterator[list[tuple[Host, Flask]]]:
    """Apps whose pooled connections are closed after the test."""
    apps: list[tuple[Host, Flask]] = []
    yield apps
    for host, app in apps:
        host.close(app)


def routes(app: Flask) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules()}


def test_constructor_with_app_initialises(
    host: Host, fresh_database_url: str, apps_to_close: list[tuple[Host, Flask]]
) -> None:
    app = host.new_app(fresh_database_url)
    apps_to_close.append((host, app))

    auth = RefreshAuth(app, db=host.db, user_model=host.user_model)
    host.create_tables(app)
    user_id = host.add_user(app, "alice")
    response = app.test_client().post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )

    assert get_state(app).auth is auth
    assert routes(app) >= TOKEN_ROUTES
    assert "tokens" in app.cli.commands
    assert response.status_code == 200
    assert response.json is not None
    claims = jwt.decode(response.json["access_token"], SECRET_KEY, algorithms=["HS256"])
    assert claims["sub"] == str(user_id)


def test_state_stored_in_app_extensions(host: Host) -> None:
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = host.new_app(UNUSED_DATABASE, REFRESH_URL_PREFIX="/tokens")

    auth.init_app(app)

    state = app.extensions["flask-refresh"]
    assert EXTENSION_KEY == "flask-refresh"
    assert isinstance(state, State)
    assert state.auth is auth
    assert state.db is host.db
    assert state.models is auth.models
    assert state.models.user is host.user_model
    assert state.settings.url_prefix == "/tokens"
    assert state.settings.secret_key == SECRET_KEY.encode()
    assert get_state(app) is state
    with app.app_context():
        assert get_state() is state


def test_init_app_twice_rejected(host: Host) -> None:
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = host.new_app(UNUSED_DATABASE)
    auth.init_app(app)
    state = get_state(app)

    with pytest.raises(RuntimeError) as raised:
        auth.init_app(app)

    assert str(raised.value) == (
        "flask-refresh is already initialised on this app. Call init_app(app) once"
        " per app."
    )
    assert get_state(app) is state


def test_init_app_before_db_rejected(host: Host) -> None:
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = Flask("no_db_yet")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=UNUSED_DATABASE, REFRESH_SECRET_KEY=SECRET_KEY
    )

    with pytest.raises(RuntimeError, match=re.escape("Call db.init_app(app) before")):
        auth.init_app(app)

    assert EXTENSION_KEY not in app.extensions
    assert not TOKEN_ROUTES & routes(app)
    # Nothing was registered, so the app can still be set up in the right order.
    host.db.init_app(app)
    auth.init_app(app)
    assert get_state(app).auth is auth


def test_init_app_with_other_db_rejected(host: Host) -> None:
    other = build_host()
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = other.new_app(UNUSED_DATABASE)

    with pytest.raises(RuntimeError, match=re.escape("Call db.init_app(app) before")):
        auth.init_app(app)

    assert EXTENSION_KEY not in app.extensions
    assert not TOKEN_ROUTES & routes(app)


def test_get_state_without_init_app(host: Host) -> None:
    app = host.new_app(UNUSED_DATABASE)

    with pytest.raises(RuntimeError) as raised:
        get_state(app)

    assert str(raised.value) == (
        "flask-refresh is not initialised on app 'host_integer'. Call"
        " auth.init_app(app) in your app factory."
    )


def test_get_state_from_current_app(host: Host) -> None:
    app = host.new_app(UNUSED_DATABASE)

    with app.app_context(), pytest.raises(RuntimeError) as raised:
        get_state()

    assert "not initialised on app 'host_integer'" in str(raised.value)


def test_get_state_outside_app_context() -> None:
    with pytest.raises(RuntimeError, match="outside of application context"):
        get_state()


def test_db_given_to_init_app(host: Host) -> None:
    auth = RefreshAuth()
    app = host.new_app(UNUSED_DATABASE)

    auth.init_app(app, db=host.db, user_model=host.user_model)

    assert get_state(app).db is host.db
    assert auth.models.user is host.user_model


def test_same_binding_accepted_again(host: Host) -> None:
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    models = auth.models
    app = host.new_app(UNUSED_DATABASE)

    auth.init_app(app, db=host.db, user_model=host.user_model)

    assert auth.models is models
    assert get_state(app).models is models


def test_second_db_rejected(host: Host) -> None:
    other = build_host()
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = other.new_app(UNUSED_DATABASE)

    with pytest.raises(RuntimeError) as raised:
        auth.init_app(app, db=other.db, user_model=other.user_model)

    assert str(raised.value) == (
        "This RefreshAuth is already bound to another db or user model. Create one"
        " RefreshAuth per db."
    )
    assert auth.models.user is host.user_model
    assert EXTENSION_KEY not in app.extensions


def test_second_user_model_rejected(host: Host) -> None:
    other = build_host()
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = host.new_app(UNUSED_DATABASE)

    with pytest.raises(RuntimeError, match="already bound to another db or user"):
        auth.init_app(app, user_model=other.user_model)

    assert EXTENSION_KEY not in app.extensions


def test_init_app_without_db_rejected(host: Host) -> None:
    auth = RefreshAuth()
    app = host.new_app(UNUSED_DATABASE)

    with pytest.raises(RuntimeError) as raised:
        auth.init_app(app)

    assert str(raised.value) == (
        "flask-refresh needs both db= and user_model=, in RefreshAuth() or in"
        " init_app()."
    )
    assert EXTENSION_KEY not in app.extensions


def test_constructor_without_user_model_rejected(host: Host) -> None:
    with pytest.raises(RuntimeError, match="needs both db= and user_model="):
        RefreshAuth(db=host.db)


def test_models_before_binding_rejected() -> None:
    auth = RefreshAuth()

    with pytest.raises(RuntimeError, match="has no models yet"):
        _ = auth.models


def test_one_extension_serves_two_apps(
    host: Host, fresh_database_url: str, apps_to_close: list[tuple[Host, Flask]]
) -> None:
    other_secret = "another-secret-key-that-is-long-enough-for-hs256-9876543210"
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    first = host.new_app(fresh_database_url, REFRESH_ACCESS_TOKEN_LIFETIME=300)
    second = host.new_app(
        fresh_database_url,
        REFRESH_URL_PREFIX="/api/v2/auth",
        REFRESH_ACCESS_TOKEN_LIFETIME=60,
        REFRESH_SECRET_KEY=other_secret,
    )
    apps_to_close.extend([(host, first), (host, second)])
    auth.init_app(first)
    auth.init_app(second)
    host.create_tables(first)
    host.add_user(first, "alice")
    credentials = {"username": "alice", "password": PASSWORD}
    first_client, second_client = first.test_client(), second.test_client()

    first_login = first_client.post("/auth/login", json=credentials)
    second_login = second_client.post("/api/v2/auth/login", json=credentials)

    assert first_login.status_code == 200
    assert second_login.status_code == 200
    assert first_login.json is not None
    assert second_login.json is not None
    assert first_login.json["expires_in"] == 300
    assert second_login.json["expires_in"] == 60
    assert first_client.post("/api/v2/auth/login", json=credentials).status_code == 404
    assert second_client.post("/auth/login", json=credentials).status_code == 404

    first_access = bearer(first_login.json["access_token"])
    second_access = bearer(second_login.json["access_token"])
    assert first_client.get("/me", headers=first_access).status_code == 200
    assert second_client.get("/me", headers=second_access).status_code == 200
    # Each app signs with its own key, so neither accepts the other's tokens.
    rejected = second_client.get("/me", headers=first_access)
    assert rejected.status_code == 401
    assert rejected.json is not None
    assert rejected.json["error_description"] == (
        "The access token signature is invalid."
    )
    assert first_client.get("/me", headers=second_access).status_code == 401

    first_state, second_state = get_state(first), get_state(second)
    assert first_state is not second_state
    assert first_state.auth is second_state.auth is auth
    assert first_state.settings.access_token_lifetime == timedelta(seconds=300)
    assert second_state.settings.access_token_lifetime == timedelta(seconds=60)
    assert first_state.metrics.snapshot()["logins_succeeded"] == 1
    assert second_state.metrics.snapshot()["logins_succeeded"] == 1


@pytest.fixture
def email_app(
    host: Host, fresh_database_url: str, apps_to_close: list[tuple[Host, Flask]]
) -> Flask:
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = host.new_app(fresh_database_url, REFRESH_LOGIN_FIELD="email")
    apps_to_close.append((host, app))
    auth.init_app(app)
    host.create_tables(app)
    host.add_user(app, "alice", email="alice@example.com")
    return app


def test_login_field_email_accepted(email_app: Flask) -> None:
    client = email_app.test_client()

    by_email_key = client.post(
        "/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    by_username_key = client.post(
        "/auth/login", json={"username": "alice@example.com", "password": PASSWORD}
    )
    by_oauth_form = client.post(
        "/auth/login",
        data={
            "grant_type": "password",
            "username": "alice@example.com",
            "password": PASSWORD,
        },
    )

    assert by_email_key.status_code == 200
    assert by_username_key.status_code == 200
    assert by_oauth_form.status_code == 200


def test_login_field_email_ignores_username(email_app: Flask) -> None:
    response = email_app.test_client().post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The username or password is incorrect.",
    }


def test_login_field_missing_on_model(host: Host) -> None:
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = host.new_app(UNUSED_DATABASE, REFRESH_LOGIN_FIELD="phone")
    auth.init_app(app)

    with pytest.raises(RuntimeError) as raised:
        app.test_client().post(
            "/auth/login", json={"phone": "555-0100", "password": PASSWORD}
        )

    assert str(raised.value) == (
        "REFRESH_LOGIN_FIELD is 'phone', but User has no such attribute."
    )
