"""The example app: its CLI, its API views and how it reads its configuration."""

from __future__ import annotations

import logging
import multiprocessing
import stat
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    PASSWORD,
    SECRET_KEY,
    app_config,
    bearer,
    create_user,
    driverless_url,
    family_rows,
    login,
    refresh,
    session_of,
)
from sqlalchemy.engine import make_url

from example_app import auth, create_app, database_url, db, development_secret
from example_app.models import User, load_user
from flask_refresh import get_state

NEW_PASSWORD = "a new password, long enough"


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def extra_apps() -> Iterator[list[Flask]]:
    """Apps that a test creates besides the ``app`` fixture, closed after the test."""
    apps: list[Flask] = []
    yield apps
    for extra in apps:
        with extra.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def run_cli(app: Flask, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(args=list(args), input=input)


def find_user(app: Flask, username: str) -> User | None:
    with app.app_context():
        return db.session.execute(
            sa.select(User).where(User.username == username)
        ).scalar_one_or_none()


def login_response(client: FlaskClient, username: str, password: str) -> Any:
    return client.post("/auth/login", json={"username": username, "password": password})


def change_password(client: FlaskClient, access_token: str, body: Any) -> Any:
    return client.post("/api/password", json=body, headers=bearer(access_token))


# ---------------------------------------------------------------------------
# flask users ...
# ---------------------------------------------------------------------------


def test_create_user_with_password_option(app: Flask, client: FlaskClient) -> None:
    result = run_cli(app, "users", "create", "bob", "--password", "bob-password")

    user = find_user(app, "bob")
    assert user is not None
    assert result.exit_code == 0, result.output
    assert result.output == f"Created user 'bob' with id {user.id}.\n"
    assert user.active is True
    # Werkzeug's default method, never the password itself.
    assert user.password_hash.startswith("scrypt:")
    assert "bob-password" not in user.password_hash
    assert login_response(client, "bob", "bob-password").status_code == 200


def test_create_user_prompts_for_password(app: Flask, client: FlaskClient) -> None:
    result = run_cli(
        app, "users", "create", "bob", input="prompted-password\nprompted-password\n"
    )

    assert result.exit_code == 0, result.output
    assert "Password: " in result.output
    assert "Repeat for confirmation: " in result.output
    assert "prompted-password" not in result.output
    assert login_response(client, "bob", "prompted-password").status_code == 200


def test_create_user_confirmation_mismatch(app: Flask) -> None:
    result = run_cli(app, "users", "create", "bob", input="first-try\nsecond-try\n")

    assert result.exit_code == 1
    assert "Error: The two entered values do not match." in result.output
    assert result.output.endswith("Aborted!\n")
    assert find_user(app, "bob") is None


def test_create_user_retries_after_mismatch(app: Flask, client: FlaskClient) -> None:
    result = run_cli(
        app, "users", "create", "bob", input="first-try\nsecond-try\nthird\nthird\n"
    )

    assert result.exit_code == 0, result.output
    assert "Error: The two entered values do not match." in result.output
    assert login_response(client, "bob", "third").status_code == 200


def test_create_duplicate_user_fails(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    result = run_cli(app, "users", "create", "alice", "--password", "other-password")

    assert result.exit_code == 1
    assert result.output == "Error: User 'alice' already exists.\n"
    assert login_response(client, "alice", PASSWORD).status_code == 200
    assert login_response(client, "alice", "other-password").status_code == 400


def test_create_existing_user_exist_ok(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    result = run_cli(
        app, "users", "create", "alice", "--password", "other-password", "--exist-ok"
    )

    assert result.exit_code == 0, result.output
    assert result.output == "User 'alice' already exists; left unchanged.\n"
    assert login_response(client, "alice", PASSWORD).status_code == 200
    assert login_response(client, "alice", "other-password").status_code == 400


def test_deactivate_user_blocks_login(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    result = run_cli(app, "users", "deactivate", "alice")

    user = find_user(app, "alice")
    assert result.exit_code == 0, result.output
    assert result.output == "Deactivated user 'alice'.\n"
    assert user is not None
    assert user.active is False
    response = login_response(client, "alice", PASSWORD)
    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The username or password is incorrect.",
    }


def test_deactivated_user_cannot_refresh(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    body = login(client)

    assert run_cli(app, "users", "deactivate", "alice").exit_code == 0
    response = refresh(client, body["refresh_token"])

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The user account is disabled.",
    }


def test_deactivated_user_access_token_rejected(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    body = login(client)

    assert run_cli(app, "users", "deactivate", "alice").exit_code == 0
    response = client.get("/api/me", headers=bearer(body["access_token"]))

    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/auth/sessions"),
        ("POST", "/auth/logout-all"),
        ("POST", "/auth/logout-others"),
        ("DELETE", "/auth/sessions/{sid}"),
    ],
)
def test_deactivated_user_session_routes_rejected(
    app: Flask, client: FlaskClient, alice: int, method: str, path: str
) -> None:
    body = login(client)
    sid = session_of(body["access_token"])

    assert run_cli(app, "users", "deactivate", "alice").exit_code == 0
    response = client.open(
        path.format(sid=sid), method=method, headers=bearer(body["access_token"])
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json is not None
    assert response.json["error"] == "invalid_token"
    assert family_rows(app)[0].revoked_at is None


def test_deactivate_unknown_user_fails(app: Flask) -> None:
    result = run_cli(app, "users", "deactivate", "nobody")

    assert result.exit_code == 1
    assert result.output == "Error: User 'nobody' does not exist.\n"


# ---------------------------------------------------------------------------
# GET /api/me
# ---------------------------------------------------------------------------


def test_me_returns_id_and_username(client: FlaskClient, alice: int) -> None:
    body = login(client)

    response = client.get("/api/me", headers=bearer(body["access_token"]))

    assert response.status_code == 200
    assert response.json == {"id": alice, "username": "alice"}


def arabic_indic(digits: str) -> str:
    """Return ``digits`` written with Arabic-Indic digits, which int() accepts."""
    return "".join(chr(0x0660 + int(digit)) for digit in digits)


@pytest.mark.parametrize(
    "variant",
    [
        arabic_indic,
        lambda digits: "\u00b2",
        lambda digits: f" {digits}",
        lambda digits: f"{digits}\n",
        lambda digits: f"+{digits}",
        lambda digits: f"{digits}.0",
        lambda digits: "",
    ],
    ids=["arabic-indic", "superscript", "space", "newline", "plus", "float", "empty"],
)
def test_loader_takes_ascii_digits_only(
    app: Flask, alice: int, variant: Callable[[str], str]
) -> None:
    """Only the str(id) that login issues loads a user, never another digit form."""
    with app.app_context():
        assert load_user(variant(str(alice))) is None
        assert load_user(str(alice)) is not None


def test_me_without_token_unauthorized(client: FlaskClient, alice: int) -> None:
    response = client.get("/api/me")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json is not None
    assert response.json["error"] == "missing_token"


# ---------------------------------------------------------------------------
# POST /api/password
# ---------------------------------------------------------------------------


def test_password_change_needs_fresh_token(client: FlaskClient, alice: int) -> None:
    refreshed = refresh(client, login(client)["refresh_token"])
    assert refreshed.status_code == 200
    assert refreshed.json is not None

    response = change_password(
        client, refreshed.json["access_token"], {"new_password": NEW_PASSWORD}
    )

    assert response.status_code == 403
    assert response.json is not None
    assert response.json["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert login_response(client, "alice", PASSWORD).status_code == 200
    assert login_response(client, "alice", NEW_PASSWORD).status_code == 400


def test_password_change_replaces_password(client: FlaskClient, alice: int) -> None:
    body = login(client)

    response = change_password(
        client, body["access_token"], {"new_password": NEW_PASSWORD}
    )

    assert response.status_code == 200
    assert response.json == {"revoked_sessions": 0}
    assert login_response(client, "alice", PASSWORD).status_code == 400
    assert login_response(client, "alice", NEW_PASSWORD).status_code == 200


def test_password_change_revokes_other_sessions(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    others = [login(client), login(client)]
    current = login(client)

    response = change_password(
        client, current["access_token"], {"new_password": NEW_PASSWORD}
    )

    assert response.status_code == 200
    assert response.json == {"revoked_sessions": 2}
    for other in others:
        rejected = refresh(client, other["refresh_token"])
        assert rejected.status_code == 400
        assert rejected.json == {
            "error": "invalid_grant",
            "error_description": "The refresh token was revoked.",
        }
    with app.app_context():
        reasons = db.session.execute(
            sa.select(auth.models.family.revoked_reason)
        ).scalars()
        assert sorted(reasons, key=str) == [
            None,
            "password_changed",
            "password_changed",
        ]


def test_password_change_keeps_current_session(client: FlaskClient, alice: int) -> None:
    login(client)
    current = login(client)
    assert (
        change_password(
            client, current["access_token"], {"new_password": NEW_PASSWORD}
        ).status_code
        == 200
    )

    response = refresh(client, current["refresh_token"])

    assert response.status_code == 200
    assert response.json is not None
    me = client.get("/api/me", headers=bearer(response.json["access_token"]))
    assert me.status_code == 200


@pytest.mark.parametrize(
    ("body", "description"),
    [
        (
            {"new_password": "short"},
            "The new_password parameter must be at least 8 characters long.",
        ),
        ({"new_password": ""}, "The new_password parameter is empty."),
        ({}, "The new_password parameter is missing."),
        ({"new_password": 12345678}, "The new_password parameter must be a string."),
        ({"password": NEW_PASSWORD}, "The new_password parameter is missing."),
        ([NEW_PASSWORD], "The request body must be a JSON object."),
        (
            # Login rejects longer passwords, so accepting one would lock the
            # account for good.
            {"new_password": "p" * 1025},
            "The new_password parameter is longer than 1024 characters.",
        ),
        (
            {"new_password": "abcdefgh\ud800"},
            "The new_password parameter is not valid Unicode text.",
        ),
    ],
)
def test_password_change_rejects_bad_body(
    client: FlaskClient, alice: int, body: Any, description: str
) -> None:
    other = login(client)
    current = login(client)

    response = change_password(client, current["access_token"], body)

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": description,
    }
    assert login_response(client, "alice", PASSWORD).status_code == 200
    # A rejected change revokes nothing, so the other session still refreshes.
    assert refresh(client, other["refresh_token"]).status_code == 200


def test_password_change_accepts_form(client: FlaskClient, alice: int) -> None:
    body = login(client)

    response = client.post(
        "/api/password",
        data={"new_password": NEW_PASSWORD},
        headers=bearer(body["access_token"]),
    )

    assert response.status_code == 200
    assert login_response(client, "alice", NEW_PASSWORD).status_code == 200


def test_password_change_after_logout_all_rejected(
    client: FlaskClient, alice: int
) -> None:
    stolen = login(client)
    client.post("/auth/logout-all", headers=bearer(stolen["access_token"]))

    response = change_password(
        client, stolen["access_token"], {"new_password": NEW_PASSWORD}
    )

    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_token",
        "error_description": "The session of this access token was revoked.",
    }
    assert login_response(client, "alice", PASSWORD).status_code == 200
    assert login_response(client, "alice", NEW_PASSWORD).status_code == 400


# ---------------------------------------------------------------------------
# Configuration: DATABASE_URL, FLASK_* variables and the development secret
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://app:pw@127.0.0.1:5432/app",
            "postgresql+psycopg://app:pw@127.0.0.1:5432/app",
        ),
        (
            "postgres://app:pw@127.0.0.1/app",
            "postgresql+psycopg://app:pw@127.0.0.1/app",
        ),
        (
            "mysql://app:pw@127.0.0.1:3306/app",
            "mysql+pymysql://app:pw@127.0.0.1:3306/app",
        ),
        ("mariadb://app:pw@127.0.0.1/app", "mariadb+pymysql://app:pw@127.0.0.1/app"),
        # A driver that is named explicitly is kept.
        (
            "postgresql+psycopg2://app:pw@127.0.0.1/app",
            "postgresql+psycopg2://app:pw@127.0.0.1/app",
        ),
        ("sqlite:////srv/app/app.sqlite", "sqlite:////srv/app/app.sqlite"),
        # Escaped characters of the password stay escaped.
        (
            "postgresql://app:p%40ss%2Fword@127.0.0.1/app",
            "postgresql+psycopg://app:p%40ss%2Fword@127.0.0.1/app",
        ),
    ],
)
def test_database_url_normalised(url: str, expected: str, tmp_path: Path) -> None:
    assert database_url(url, str(tmp_path)) == expected


@pytest.mark.parametrize("url", [None, ""])
def test_database_url_defaults_to_sqlite(url: str | None, tmp_path: Path) -> None:
    assert database_url(url, str(tmp_path)) == f"sqlite:///{tmp_path}/example.sqlite"


def test_create_app_defaults_to_instance_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)

    created = create_app({"TESTING": True, "REFRESH_SECRET_KEY": SECRET_KEY})

    assert created.config["SQLALCHEMY_DATABASE_URI"] == (
        f"sqlite:///{created.instance_path}/example.sqlite"
    )


def test_environment_sets_token_lifetime(
    app: Flask,
    database_url: str,
    extra_apps: list[Flask],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASK_REFRESH_ACCESS_TOKEN_LIFETIME", "60")
    configured = create_app(app_config(database_url))
    extra_apps.append(configured)
    create_user(configured, "alice")

    body = login(configured.test_client())

    assert body["expires_in"] == 60
    assert get_state(configured).settings.access_token_lifetime == timedelta(seconds=60)


def test_environment_sets_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "secret-from-the-environment-0123456789abcdef"
    monkeypatch.setenv("FLASK_REFRESH_SECRET_KEY", secret)

    configured = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})

    assert get_state(configured).settings.secret_key == secret.encode()


def test_environment_database_url_used(
    app: Flask,
    database_url: str,
    extra_apps: list[Flask],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = create_user(app, "alice")
    monkeypatch.setenv("DATABASE_URL", driverless_url(database_url))

    configured = create_app({"TESTING": True, "REFRESH_SECRET_KEY": SECRET_KEY})
    extra_apps.append(configured)
    response = configured.test_client().post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )

    configured_url = make_url(configured.config["SQLALCHEMY_DATABASE_URI"])
    expected_drivers = {
        "sqlite": "sqlite",
        "postgresql": "postgresql+psycopg",
        "mysql": "mariadb+pymysql",
    }
    assert (
        configured_url.drivername
        == expected_drivers[make_url(database_url).get_backend_name()]
    )
    assert configured_url.database == make_url(database_url).database
    # The user created through the fixture's app is found: same database.
    assert response.status_code == 200
    assert response.json is not None
    me = configured.test_client().get(
        "/api/me", headers=bearer(response.json["access_token"])
    )
    assert me.json == {"id": alice, "username": "alice"}


def test_development_secret_created_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "refresh_secret_key"

    with caplog.at_level(logging.WARNING, logger="example_app"):
        first = development_secret(str(tmp_path))
        content = path.read_bytes()
        modified = path.stat().st_mtime_ns
        second = development_secret(str(tmp_path))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # secrets.token_urlsafe(64): 64 random bytes in 86 characters.
    assert len(first) == 86
    assert second == first
    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == modified
    assert [record.getMessage() for record in caplog.records] == [
        "FLASK_REFRESH_SECRET_KEY is not set; generated a development secret"
        f" in {path}."
    ]
    # Only the secret file is left behind, no temporary file.
    assert [entry.name for entry in tmp_path.iterdir()] == ["refresh_secret_key"]


def read_development_secret(
    instance_path: str, start: Any, results: multiprocessing.Queue[str]
) -> None:
    start.wait()
    results.put(development_secret(instance_path))


def test_development_secret_shared_by_workers(tmp_path: Path) -> None:
    # Like gunicorn workers started together without FLASK_REFRESH_SECRET_KEY:
    # every process must end up with the same complete secret.
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    context = multiprocessing.get_context("fork")
    workers = 4

    # The race window is a few microseconds, so one round rarely hits it. Against
    # the earlier touch-then-write version, 60 rounds failed in 40 of 40 runs on
    # a Linux container (20 rounds: 5 of 10).
    for attempt in range(60):
        instance_path = tmp_path / str(attempt)
        instance_path.mkdir()
        start = context.Barrier(workers)
        results: multiprocessing.Queue[str] = context.Queue()
        processes = [
            context.Process(
                target=read_development_secret,
                args=(str(instance_path), start, results),
            )
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        secrets = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=30)

        assert len(set(secrets)) == 1, f"attempt {attempt}: {secrets}"
        assert len(secrets[0]) == 86, f"attempt {attempt}"
        assert secrets[0] == (instance_path / "refresh_secret_key").read_text()
