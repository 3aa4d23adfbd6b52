"""POST /auth/login: the password grant."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD, SECRET_KEY, create_user, login

from example_app import auth, db
from flask_refresh import authentication, signals


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def test_login_returns_token_pair(client: FlaskClient, alice: int) -> None:
    response = client.post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 200
    body = response.json
    assert body is not None
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_expires_in"] == 14 * 24 * 3600
    assert body["session_expires_in"] == 30 * 24 * 3600
    assert isinstance(body["access_token"], str)
    assert isinstance(body["refresh_token"], str)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_login_access_token_claims(client: FlaskClient, alice: int) -> None:
    body = login(client)

    header = jwt.get_unverified_header(body["access_token"])
    claims = jwt.decode(body["access_token"], SECRET_KEY, algorithms=["HS256"])
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == str(alice)
    assert claims["type"] == "access"
    assert claims["fresh"] is True
    assert claims["exp"] - claims["iat"] == 900
    assert claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) == 32
    assert isinstance(claims["sid"], str)


def test_login_stores_only_a_hash(app: Flask, client: FlaskClient, alice: int) -> None:
    body = login(client)

    with app.app_context():
        row = db.session.execute(sa.select(auth.models.token)).scalar_one()
        family = db.session.execute(sa.select(auth.models.family)).scalar_one()

    claims = jwt.decode(body["access_token"], SECRET_KEY, algorithms=["HS256"])
    assert row.token_hash == hashlib.sha256(body["refresh_token"].encode()).hexdigest()
    assert row.jwt_id == claims["jti"]
    assert row.family_id == family.id == claims["sid"]
    assert row.user_id == family.user_id == alice
    assert row.used_at is None
    assert family.revoked_at is None
    assert family.expires_at - family.created_at == timedelta(days=30)
    assert row.expires_at - row.created_at == timedelta(days=14)


def test_refresh_token_has_256_bits(client: FlaskClient, alice: int) -> None:
    tokens = {login(client)["refresh_token"] for _ in range(3)}

    assert len(tokens) == 3
    # 43 characters of URL-safe base64 carry 258 bits; 32 random bytes fill them.
    assert all(len(token) == 43 for token in tokens)


def test_login_records_client(app: Flask, client: FlaskClient, alice: int) -> None:
    client.post(
        "/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"User-Agent": "curl/8.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )

    with app.app_context():
        row = db.session.execute(sa.select(auth.models.token)).scalar_one()

    assert row.user_agent == "curl/8.0"
    assert row.ip_address == "203.0.113.7"


def test_login_accepts_oauth_form(client: FlaskClient, alice: int) -> None:
    response = client.post(
        "/auth/login",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
    )

    assert response.status_code == 200
    assert response.json is not None
    assert response.json["token_type"] == "Bearer"


def test_form_without_grant_type_rejected(client: FlaskClient, alice: int) -> None:
    response = client.post(
        "/auth/login", data={"username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": "The grant_type parameter is missing.",
    }


@pytest.mark.parametrize("grant_type", ["refresh_token", "client_credentials"])
def test_other_grant_type_unsupported(
    client: FlaskClient, alice: int, grant_type: str
) -> None:
    response = client.post(
        "/auth/login",
        data={"grant_type": grant_type, "username": "alice", "password": PASSWORD},
    )

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "unsupported_grant_type"


def failed_login(client: FlaskClient, username: str, password: str) -> Any:
    return client.post("/auth/login", json={"username": username, "password": password})


def test_failed_logins_look_alike(app: Flask, client: FlaskClient, alice: int) -> None:
    create_user(app, "mallory", active=False)

    unknown = failed_login(client, "nobody", PASSWORD)
    wrong_password = failed_login(client, "alice", "wrong password")
    inactive = failed_login(client, "mallory", PASSWORD)

    for response in (unknown, wrong_password, inactive):
        assert response.status_code == 400
        assert response.json == {
            "error": "invalid_grant",
            "error_description": "The username or password is incorrect.",
        }
        headers = sorted(
            (key, value) for key, value in response.headers if key != "Date"
        )
        assert headers == sorted(
            (key, value) for key, value in unknown.headers if key != "Date"
        )


def test_unknown_user_checks_a_default_hash(
    app: Flask, client: FlaskClient, alice: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real_check = authentication.check_password_hash

    def spy(pwhash: str, password: str) -> bool:
        checked.append(pwhash)
        return real_check(pwhash, password)

    monkeypatch.setattr(authentication, "check_password_hash", spy)

    response = failed_login(client, "nobody", PASSWORD)

    assert response.status_code == 400
    # One check of a hash made with Werkzeug's default method, as real users have.
    assert len(checked) == 1
    assert checked[0].startswith("scrypt:")


def test_inactive_user_password_still_checked(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_user(app, "mallory", active=False)
    calls: list[str] = []

    @auth.password_checker
    def checker(user: Any, password: str) -> bool:
        calls.append(user.username)
        return user.check_password(password)

    try:
        response = failed_login(client, "mallory", PASSWORD)
    finally:
        auth._password_checker = None

    assert response.status_code == 400
    assert calls == ["mallory"]


def test_password_checker_callback_decides(client: FlaskClient, alice: int) -> None:
    @auth.password_checker
    def checker(user: Any, password: str) -> bool:
        return password == "from the callback"

    try:
        accepted = failed_login(client, "alice", "from the callback")
        rejected = failed_login(client, "alice", PASSWORD)
    finally:
        auth._password_checker = None

    assert accepted.status_code == 200
    assert rejected.status_code == 400


def test_username_loader_callback_finds_user(client: FlaskClient, alice: int) -> None:
    @auth.username_loader
    def load(username: str) -> Any:
        return db.session.get(auth.models.user, alice) if username == "A@X" else None

    try:
        response = failed_login(client, "A@X", PASSWORD)
    finally:
        auth._username_loader = None

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ({"password": PASSWORD}, "The username parameter is missing."),
        ({"username": "alice"}, "The password parameter is missing."),
        ({"username": "alice", "password": ""}, "The password parameter is empty."),
        (
            {"username": "alice", "password": 12345678},
            "The password parameter must be a string.",
        ),
        (
            {"username": ["alice"], "password": PASSWORD},
            "The username parameter must be a string.",
        ),
        (
            {"username": "alice", "password": "x" * 1025},
            "The password parameter is longer than 1024 characters.",
        ),
        (["alice", PASSWORD], "The request body must be a JSON object."),
    ],
)
def test_malformed_login_is_invalid_request(
    client: FlaskClient, alice: int, body: Any, description: str
) -> None:
    response = client.post("/auth/login", json=body)

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": description,
    }


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ("username=alice", "text/plain"),
        ("", "application/json"),
    ],
)
def test_unreadable_body_is_invalid_request(
    client: FlaskClient, alice: int, data: str, content_type: str
) -> None:
    response = client.post("/auth/login", data=data, content_type=content_type)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("data", "description"),
    [
        (
            '{"username": "alice", "password": "wrong", "password": "right"}',
            "The password parameter is repeated.",
        ),
        (
            '{"username": ' + "[" * 5000 + "]" * 5000 + "}",
            "The request body must be a JSON object.",
        ),
        (
            '{"username": "\\ud800", "password": "x"}',
            "The username parameter is not valid Unicode text.",
        ),
        (
            '{"username": "alice", "password": "\\udfff"}',
            "The password parameter is not valid Unicode text.",
        ),
    ],
)
def test_hostile_json_is_invalid_request(
    client: FlaskClient, alice: int, data: str, description: str
) -> None:
    response = client.post("/auth/login", data=data, content_type="application/json")

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": description,
    }


def test_repeated_form_parameter_rejected(client: FlaskClient, alice: int) -> None:
    response = client.post(
        "/auth/login",
        data="grant_type=password&username=alice&username=bob&password=x",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error_description"] == "The username parameter is repeated."


def test_login_sends_signals(app: Flask, client: FlaskClient, alice: int) -> None:
    received: list[tuple[str, dict[str, Any]]] = []

    def on_success(sender: Flask, **extra: Any) -> None:
        received.append(("succeeded", extra))

    def on_failure(sender: Flask, **extra: Any) -> None:
        received.append(("failed", extra))

    with (
        signals.login_succeeded.connected_to(on_success, app),
        signals.login_failed.connected_to(on_failure, app),
    ):
        body = login(client)
        failed_login(client, "alice", "wrong")

    sid = jwt.decode(body["access_token"], SECRET_KEY, algorithms=["HS256"])["sid"]
    assert received == [
        ("succeeded", {"user_id": alice, "family_id": sid}),
        ("failed", {"username": "alice"}),
    ]
