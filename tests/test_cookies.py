"""Cookie transport: token cookies, their attributes, CSRF, precedence and logout.

Browsers enforce Path, Secure and SameSite, so these tests check the attributes that
the server sends. The test client's cookie jar honours Path and Domain, and sends
the cookies back as a browser would.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_login import current_user
from helpers import (
    PASSWORD,
    FakeClock,
    bearer,
    create_user,
    family_rows,
    login,
    token_rows,
)

import flask_refresh.cookies
from example_app import auth, db
from flask_refresh import jwt_required

COOKIES = {
    "REFRESH_ACCESS_TOKEN_LOCATION": "cookies",
    "REFRESH_REFRESH_TOKEN_LOCATION": "cookies",
}
TOKEN_COOKIES = {"access_token", "refresh_token", "csrf_token"}
#: The fields of a token response in cookie mode: no token in the body.
COOKIE_MODE_BODY = {
    "token_type",
    "expires_in",
    "refresh_expires_in",
    "session_expires_in",
}
IDLE_SECONDS = 14 * 24 * 3600
ACCESS_SECONDS = 15 * 60


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Cookie mode for both tokens; tests parametrise it for other settings."""
    return COOKIES


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def views(app: Flask) -> Flask:
    """Add a view that returns the token's user for every method."""

    @app.route(
        "/who", methods=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
    )
    @jwt_required()
    def who() -> dict[str, Any]:
        user = current_user.get_id() if current_user.is_authenticated else None
        return {"user": user}

    return app


def set_cookies(response: Any) -> dict[str, dict[str, Any]]:
    """Parse the Set-Cookie headers: name -> value and attributes."""
    cookies: dict[str, dict[str, Any]] = {}
    for header in response.headers.getlist("Set-Cookie"):
        pair, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = pair.partition("=")
        parsed: dict[str, Any] = {"value": value}
        for attribute in attributes:
            key, separator, attribute_value = attribute.partition("=")
            parsed[key.lower()] = attribute_value if separator else True
        cookies[name] = parsed
    return cookies


def cookie_login(client: FlaskClient) -> Any:
    response = client.post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 200, response.json
    return response


def jar_value(client: FlaskClient, name: str, path: str = "/") -> str:
    cookie = client.get_cookie(name, path=path)
    assert cookie is not None, f"no {name} cookie on {path}"
    return cookie.value


def csrf_header(client: FlaskClient) -> dict[str, str]:
    return {"X-CSRF-Token": jar_value(client, "csrf_token")}


def sent_cookies(response: Any) -> set[str]:
    """Names of the cookies the client sent with the request of ``response``."""
    header = response.request.environ.get("HTTP_COOKIE", "")
    return {part.split("=", 1)[0].strip() for part in header.split(";") if part}


# ---------------------------------------------------------------------------
# Login sets the cookies
# ---------------------------------------------------------------------------


def test_login_sets_refresh_cookie(client: FlaskClient, alice: int) -> None:
    cookie = set_cookies(cookie_login(client))["refresh_token"]

    assert cookie["path"] == "/auth"
    assert cookie["max-age"] == str(IDLE_SECONDS)
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Strict"
    assert "domain" not in cookie


def test_login_sets_access_cookie(client: FlaskClient, alice: int) -> None:
    cookie = set_cookies(cookie_login(client))["access_token"]

    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(ACCESS_SECONDS)
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Strict"


def test_login_sets_readable_csrf_cookie(client: FlaskClient, alice: int) -> None:
    cookie = set_cookies(cookie_login(client))["csrf_token"]

    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(IDLE_SECONDS)
    assert "httponly" not in cookie
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Strict"
    assert len(cookie["value"]) >= 43


def test_login_body_has_no_tokens(client: FlaskClient, alice: int) -> None:
    response = cookie_login(client)

    assert response.json is not None
    assert set(response.json) == COOKIE_MODE_BODY
    assert response.headers["Cache-Control"] == "no-store"


def test_refresh_cookie_stored_as_hash(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    token = set_cookies(cookie_login(client))["refresh_token"]["value"]

    (row,) = token_rows(app)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()


def test_refresh_cookie_stays_under_prefix(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    cookie_login(client)

    api = client.get("/who")
    auth_route = client.post("/auth/refresh", headers=csrf_header(client))

    assert sent_cookies(api) == {"access_token", "csrf_token"}
    assert sent_cookies(auth_route) == TOKEN_COOKIES
    assert api.status_code == 200
    assert auth_route.status_code == 200


@pytest.mark.parametrize(
    "config_overrides", [{**COOKIES, "REFRESH_URL_PREFIX": "/api/v1/auth"}]
)
def test_refresh_cookie_path_follows_prefix(client: FlaskClient, alice: int) -> None:
    response = client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )

    assert set_cookies(response)["refresh_token"]["path"] == "/api/v1/auth"


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            **COOKIES,
            "REFRESH_COOKIE_DOMAIN": "example.test",
            "REFRESH_COOKIE_SAMESITE": "None",
        }
    ],
)
def test_domain_and_samesite_none_applied(client: FlaskClient, alice: int) -> None:
    cookies = set_cookies(cookie_login(client))

    for name in TOKEN_COOKIES:
        assert cookies[name]["domain"] == "example.test", name
        assert cookies[name]["samesite"] == "None", name
        assert cookies[name]["secure"] is True, name


@pytest.mark.parametrize(
    "config_overrides",
    [{**COOKIES, "REFRESH_COOKIE_SECURE": False, "REFRESH_COOKIE_SAMESITE": "Lax"}],
)
def test_insecure_cookies_for_local_http(client: FlaskClient, alice: int) -> None:
    cookies = set_cookies(cookie_login(client))

    for name in TOKEN_COOKIES:
        assert "secure" not in cookies[name], name
        assert cookies[name]["samesite"] == "Lax", name


@pytest.mark.parametrize("config_overrides", [{}])
def test_default_sets_no_cookies(client: FlaskClient, alice: int) -> None:
    response = cookie_login(client)

    assert response.headers.getlist("Set-Cookie") == []
    assert response.json is not None
    assert {"access_token", "refresh_token"} <= set(response.json)


# ---------------------------------------------------------------------------
# Refresh
# ---------------------------------------------------------------------------


def test_cookie_refresh_rotates(app: Flask, client: FlaskClient, alice: int) -> None:
    cookie_login(client)
    old = jar_value(client, "refresh_token", "/auth")
    old_csrf = jar_value(client, "csrf_token")

    # fetch() without a body: no Content-Type, Content-Length 0.
    response = client.post("/auth/refresh", headers=csrf_header(client))

    assert response.status_code == 200
    assert response.json is not None
    assert set(response.json) == COOKIE_MODE_BODY
    cookies = set_cookies(response)
    assert set(cookies) == TOKEN_COOKIES
    new = cookies["refresh_token"]["value"]
    assert new != old
    assert cookies["csrf_token"]["value"] != old_csrf
    spent, successor = token_rows(app)
    assert spent.token_hash == hashlib.sha256(old.encode()).hexdigest()
    assert spent.used_at is not None
    assert successor.token_hash == hashlib.sha256(new.encode()).hexdigest()


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-CSRF-Token": "x" * 43}, {"X-CSRF-Token": ""}],
    ids=["missing", "wrong", "empty"],
)
def test_refresh_without_valid_csrf_rejected(
    app: Flask, client: FlaskClient, alice: int, headers: dict[str, str]
) -> None:
    cookie_login(client)

    response = client.post("/auth/refresh", headers=headers)

    assert response.status_code == 403
    assert response.json is not None
    assert response.json["error"] == "invalid_csrf_token"
    assert response.headers.getlist("Set-Cookie") == []
    (row,) = token_rows(app)
    assert row.used_at is None


def test_refresh_without_csrf_cookie_rejected(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    cookie_login(client)
    headers = csrf_header(client)
    client.delete_cookie("csrf_token")

    response = client.post("/auth/refresh", headers=headers)

    assert response.status_code == 403
    assert response.json == {
        "error": "invalid_csrf_token",
        "error_description": "The csrf_token cookie is missing.",
    }
    assert response.headers.getlist("Set-Cookie") == []
    (row,) = token_rows(app)
    assert row.used_at is None


def test_csrf_compared_in_constant_time(
    client: FlaskClient, alice: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookie_login(client)
    compared: list[tuple[bytes, bytes]] = []
    real_compare = flask_refresh.cookies.hmac.compare_digest

    def recording_compare(left: bytes, right: bytes) -> bool:
        compared.append((left, right))
        return real_compare(left, right)

    monkeypatch.setattr(flask_refresh.cookies.hmac, "compare_digest", recording_compare)
    csrf = jar_value(client, "csrf_token")

    response = client.post("/auth/refresh", headers={"X-CSRF-Token": csrf})

    assert response.status_code == 200
    assert compared == [(csrf.encode(), csrf.encode())]


def test_refused_refresh_leaves_cookies(
    app: Flask, client: FlaskClient, alice: int, clock: FakeClock
) -> None:
    cookie_login(client)
    spent = jar_value(client, "refresh_token", "/auth")
    assert client.post("/auth/refresh", headers=csrf_header(client)).status_code == 200
    clock.advance(11)
    # The stolen, spent token, replayed after the grace interval.
    client.set_cookie("refresh_token", spent, path="/auth")

    response = client.post("/auth/refresh", headers=csrf_header(client))

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_grant"
    assert response.headers.getlist("Set-Cookie") == []
    (family,) = family_rows(app)
    assert family.revoked_reason == "reuse_detected"


def test_unknown_refresh_cookie_sets_nothing(client: FlaskClient, alice: int) -> None:
    cookie_login(client)
    client.set_cookie("refresh_token", "A" * 43, path="/auth")

    response = client.post("/auth/refresh", headers=csrf_header(client))

    assert response.status_code == 400
    assert response.headers.getlist("Set-Cookie") == []


@pytest.mark.parametrize(
    "config_overrides", [{**COOKIES, "REFRESH_MAX_TOKEN_LENGTH": 1000}]
)
def test_oversized_refresh_cookie_rejected(client: FlaskClient, alice: int) -> None:
    cookie_login(client)
    client.set_cookie("refresh_token", "A" * 1001, path="/auth")

    response = client.post("/auth/refresh", headers=csrf_header(client))

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": "The refresh token cookie is too long.",
    }
    assert response.headers.getlist("Set-Cookie") == []


def test_refresh_without_cookie_is_invalid_request(client: FlaskClient) -> None:
    response = client.post("/auth/refresh")

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": "The request carries no refresh token.",
    }
    assert response.headers.getlist("Set-Cookie") == []


def test_refreshed_cookie_is_not_fresh(client: FlaskClient, alice: int) -> None:
    cookie_login(client)
    fresh = client.post(
        "/api/password",
        json={"new_password": "a new password"},
        headers=csrf_header(client),
    )
    assert client.post("/auth/refresh", headers=csrf_header(client)).status_code == 200

    stale = client.post(
        "/api/password",
        json={"new_password": "another password"},
        headers=csrf_header(client),
    )

    assert fresh.status_code == 200
    assert stale.status_code == 403
    assert stale.json is not None
    assert stale.json["error"] == "insufficient_scope"


# ---------------------------------------------------------------------------
# Access cookie and CSRF on protected views
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_method_needs_no_csrf(
    client: FlaskClient, views: Flask, alice: int, method: str
) -> None:
    cookie_login(client)

    response = client.open("/who", method=method)

    assert response.status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_unsafe_method_needs_csrf(
    client: FlaskClient, views: Flask, alice: int, method: str
) -> None:
    cookie_login(client)

    rejected = client.open("/who", method=method)
    accepted = client.open("/who", method=method, headers=csrf_header(client))

    assert rejected.status_code == 403
    assert rejected.json is not None
    assert rejected.json["error_description"] == "The X-CSRF-Token header is missing."
    assert accepted.status_code == 200
    assert accepted.json == {"user": str(alice)}


def test_csrf_failure_changes_nothing(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    cookie_login(client)

    response = client.post("/api/password", json={"new_password": "a new password"})

    assert response.status_code == 403
    # The old password still works.
    assert cookie_login(client).status_code == 200


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            **COOKIES,
            "REFRESH_ACCESS_COOKIE_NAME": "__Host-at",
            "REFRESH_REFRESH_COOKIE_NAME": "__Secure-rt",
            "REFRESH_CSRF_COOKIE_NAME": "XSRF-TOKEN",
            "REFRESH_CSRF_HEADER_NAME": "X-XSRF-TOKEN",
        }
    ],
)
def test_cookie_and_header_names_configurable(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    cookies = set_cookies(cookie_login(client))
    csrf = jar_value(client, "XSRF-TOKEN")

    wrong_header = client.post("/who", headers={"X-CSRF-Token": csrf})
    right_header = client.post("/who", headers={"X-XSRF-TOKEN": csrf})
    refreshed = client.post("/auth/refresh", headers={"X-XSRF-TOKEN": csrf})

    assert set(cookies) == {"__Host-at", "__Secure-rt", "XSRF-TOKEN"}
    assert wrong_header.status_code == 403
    assert right_header.status_code == 200
    assert refreshed.status_code == 200


# ---------------------------------------------------------------------------
# A header and a cookie in one request
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_overrides",
    [{**COOKIES, "REFRESH_ACCESS_TOKEN_LOCATION": ["headers", "cookies"]}],
)
def test_header_first_needs_no_csrf(
    app: Flask, client: FlaskClient, views: Flask, alice: int
) -> None:
    bob = create_user(app, "bob")
    bob_access = login(app.test_client(), "bob")["access_token"]
    cookie_login(client)

    with_header = client.post("/who", headers=bearer(bob_access))
    cookie_only = client.post("/who")

    assert with_header.status_code == 200
    assert with_header.json == {"user": str(bob)}
    assert cookie_only.status_code == 403


@pytest.mark.parametrize(
    "config_overrides",
    [{**COOKIES, "REFRESH_ACCESS_TOKEN_LOCATION": ["cookies", "headers"]}],
)
def test_cookie_first_wins_over_header(
    app: Flask, client: FlaskClient, views: Flask, alice: int
) -> None:
    create_user(app, "bob")
    bob_access = login(app.test_client(), "bob")["access_token"]
    cookie_login(client)

    without_csrf = client.post("/who", headers=bearer(bob_access))
    with_csrf = client.post(
        "/who", headers={**bearer(bob_access), **csrf_header(client)}
    )

    assert without_csrf.status_code == 403
    assert with_csrf.status_code == 200
    assert with_csrf.json == {"user": str(alice)}


@pytest.mark.parametrize(
    "config_overrides",
    [{**COOKIES, "REFRESH_REFRESH_TOKEN_LOCATION": ["body", "cookies"]}],
)
def test_body_token_first_needs_no_csrf(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    body = cookie_login(client).json
    assert body is not None
    cookie_token = jar_value(client, "refresh_token", "/auth")

    # Another session's token in the body; the cookie is ignored.
    other = login(app.test_client())["refresh_token"]
    response = client.post("/auth/refresh", json={"refresh_token": other})

    assert body["refresh_token"] == cookie_token
    assert response.status_code == 200
    used = [row for row in token_rows(app) if row.used_at is not None]
    assert [row.token_hash for row in used] == [
        hashlib.sha256(other.encode()).hexdigest()
    ]


@pytest.mark.parametrize(
    "config_overrides",
    [{**COOKIES, "REFRESH_REFRESH_TOKEN_LOCATION": ["cookies", "body"]}],
)
def test_refresh_cookie_first_needs_csrf(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    cookie_login(client)
    other = login(app.test_client())["refresh_token"]

    response = client.post("/auth/refresh", json={"refresh_token": other})

    assert response.status_code == 403
    assert all(row.used_at is None for row in token_rows(app))


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_REFRESH_TOKEN_LOCATION": "cookies"}],
)
def test_access_token_in_body_refresh_in_cookie(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    response = cookie_login(client)
    assert response.json is not None

    refreshed = client.post("/auth/refresh", headers=csrf_header(client))
    who = client.get("/who", headers=bearer(response.json["access_token"]))

    assert "refresh_token" not in response.json
    assert set(set_cookies(response)) == {"refresh_token", "csrf_token"}
    assert refreshed.status_code == 200
    assert refreshed.json is not None
    assert "access_token" in refreshed.json
    assert who.status_code == 200


# ---------------------------------------------------------------------------
# Logout
# ---------------------------------------------------------------------------


def test_logout_clears_every_cookie(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    issued = set_cookies(cookie_login(client))

    response = client.post("/auth/logout", headers=csrf_header(client))

    assert response.status_code == 204
    cleared = set_cookies(response)
    assert set(cleared) == TOKEN_COOKIES
    for name, cookie in cleared.items():
        assert cookie["value"] == "", name
        assert cookie["max-age"] == "0", name
        assert cookie["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT", name
        for attribute in ("path", "domain", "secure", "httponly", "samesite"):
            assert cookie.get(attribute) == issued[name].get(attribute), (
                name,
                attribute,
            )
    (family,) = family_rows(app)
    assert family.revoked_reason == "logout"
    assert client.get_cookie("refresh_token", path="/auth") is None


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            **COOKIES,
            "REFRESH_COOKIE_DOMAIN": "example.test",
            "REFRESH_COOKIE_SAMESITE": "Lax",
            "REFRESH_ACCESS_COOKIE_PATH": "/api",
        }
    ],
)
def test_logout_repeats_custom_attributes(client: FlaskClient) -> None:
    response = client.post("/auth/logout", json={})

    cleared = set_cookies(response)
    assert cleared["access_token"]["path"] == "/api"
    assert cleared["refresh_token"]["path"] == "/auth"
    assert cleared["csrf_token"]["path"] == "/"
    for name in TOKEN_COOKIES:
        assert cleared[name]["domain"] == "example.test", name
        assert cleared[name]["samesite"] == "Lax", name


def test_logout_without_csrf_rejected(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    cookie_login(client)

    response = client.post("/auth/logout")

    assert response.status_code == 403
    assert response.headers.getlist("Set-Cookie") == []
    (family,) = family_rows(app)
    assert family.revoked_at is None


def test_logout_without_cookie_clears(client: FlaskClient) -> None:
    response = client.post("/auth/logout", json={})

    assert response.status_code == 204
    assert set(set_cookies(response)) == TOKEN_COOKIES


def test_logout_with_csrf_header_only_clears(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    """A page whose refresh cookie is gone can still clear the other cookies."""
    cookie_login(client)
    headers = csrf_header(client)
    client.delete_cookie("refresh_token", path="/auth")

    response = client.post("/auth/logout", headers=headers)

    assert response.status_code == 204
    assert set(set_cookies(response)) == TOKEN_COOKIES
    (family,) = family_rows(app)
    assert family.revoked_at is None


def test_session_routes_need_csrf(app: Flask, client: FlaskClient, alice: int) -> None:
    cookie_login(client)
    with app.app_context():
        family_count = db.session.execute(
            sa.select(sa.func.count()).select_from(auth.models.family)
        ).scalar_one()

    rejected = client.post("/auth/logout-all")
    accepted = client.post("/auth/logout-all", headers=csrf_header(client))

    assert family_count == 1
    assert rejected.status_code == 403
    assert accepted.status_code == 200
    assert accepted.json == {"revoked_sessions": 1}


# ---------------------------------------------------------------------------
# A cookie name sent twice
# ---------------------------------------------------------------------------
# A sibling subdomain can set a cookie for the parent domain on a more specific
# Path. The browser then sends both, the injected one first, and the server
# cannot tell which one it set.


def cookie_values(client: FlaskClient) -> dict[str, str]:
    """Return the value of each token cookie in the client's jar."""
    return {
        "access_token": jar_value(client, "access_token"),
        "refresh_token": jar_value(client, "refresh_token", "/auth"),
        "csrf_token": jar_value(client, "csrf_token"),
    }


def with_repeated(values: dict[str, str], name: str, injected: str) -> str:
    """Return a Cookie header that sends ``name`` twice, the injected value first."""
    pairs = [f"{name}={injected}"]
    pairs += [f"{cookie}={value}" for cookie, value in values.items()]
    return "; ".join(pairs)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/auth/refresh", "refresh_token"),
        ("/auth/refresh", "csrf_token"),
        ("/auth/logout", "refresh_token"),
        ("/auth/logout", "csrf_token"),
        ("/who", "access_token"),
        ("/who", "csrf_token"),
    ],
)
def test_repeated_cookie_is_invalid_request(
    app: Flask, client: FlaskClient, views: Flask, alice: int, path: str, name: str
) -> None:
    cookie_login(client)
    values = cookie_values(client)
    # Another session of the same user, as an attacker's login would give.
    other = app.test_client()
    cookie_login(other)
    injected = cookie_values(other)[name]
    header = with_repeated(values, name, injected)

    response = app.test_client(use_cookies=False).post(
        path, headers={"Cookie": header, "X-CSRF-Token": values["csrf_token"]}
    )

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": f"Send one {name} cookie, not several.",
    }
    assert response.headers.getlist("Set-Cookie") == []
    assert all(row.used_at is None for row in token_rows(app))
    assert all(family.revoked_at is None for family in family_rows(app))


def test_repeated_identical_cookie_is_rejected(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    cookie_login(client)
    values = cookie_values(client)
    header = with_repeated(values, "refresh_token", values["refresh_token"])

    response = app.test_client(use_cookies=False).post(
        "/auth/refresh",
        headers={"Cookie": header, "X-CSRF-Token": values["csrf_token"]},
    )

    assert response.status_code == 400
    (row,) = token_rows(app)
    assert row.used_at is None


def test_repeated_access_cookie_gets_challenge(
    app: Flask, client: FlaskClient, views: Flask, alice: int
) -> None:
    cookie_login(client)
    values = cookie_values(client)
    header = with_repeated(values, "access_token", values["access_token"])

    response = app.test_client(use_cookies=False).get(
        "/who", headers={"Cookie": header}
    )

    assert response.status_code == 400
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer error="invalid_request"'
    )


def test_unused_repeated_cookie_is_ignored(
    app: Flask, client: FlaskClient, views: Flask, alice: int
) -> None:
    """A GET needs no CSRF cookie, so a repeated one does not matter there."""
    cookie_login(client)
    values = cookie_values(client)
    header = with_repeated(values, "csrf_token", "x" * 43)

    response = app.test_client(use_cookies=False).get(
        "/who", headers={"Cookie": header}
    )

    assert response.status_code == 200
    assert response.json == {"user": str(alice)}


# ---------------------------------------------------------------------------
# Requests that another site's page can send
# ---------------------------------------------------------------------------
# An HTML form on any site can POST a form-encoded or text/plain body to the
# app without a CORS preflight, and the browser stores the cookies of the
# response. SameSite=Strict keeps the victim's cookies out of such a request,
# so it arrives without them.

MIXED = {
    "REFRESH_ACCESS_TOKEN_LOCATION": ["headers", "cookies"],
    "REFRESH_REFRESH_TOKEN_LOCATION": ["body", "cookies"],
}
FORM_NEEDS_JSON = {
    "error": "invalid_request",
    "error_description": (
        "Send this request as JSON (Content-Type: application/json). This app"
        " returns tokens in cookies, which are set only for JSON requests and"
        " requests with the CSRF header."
    ),
}


def form_login(client: FlaskClient, username: str = "alice") -> Any:
    return client.post(
        "/auth/login",
        data={"grant_type": "password", "username": username, "password": PASSWORD},
    )


def test_form_login_rejected_in_cookie_mode(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    response = form_login(client)

    assert response.status_code == 400
    assert response.json == FORM_NEEDS_JSON
    assert response.headers.getlist("Set-Cookie") == []
    assert family_rows(app) == []


def test_text_plain_login_sets_no_cookie(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    # <form enctype="text/plain"> can spell a JSON object in its body.
    body = json.dumps({"username": "alice", "password": PASSWORD, "x": "="})

    response = client.post("/auth/login", data=body, content_type="text/plain")

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"
    assert response.headers.getlist("Set-Cookie") == []
    assert family_rows(app) == []


@pytest.mark.parametrize("config_overrides", [MIXED])
def test_form_login_gets_body_tokens_only(
    app: Flask, client: FlaskClient, views: Flask, alice: int
) -> None:
    response = form_login(client)

    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []
    assert response.json is not None
    assert {"access_token", "refresh_token"} <= set(response.json)
    who = client.get("/who", headers=bearer(response.json["access_token"]))
    assert who.json == {"user": str(alice)}


@pytest.mark.parametrize("config_overrides", [MIXED])
def test_json_login_still_sets_cookies(client: FlaskClient, alice: int) -> None:
    response = cookie_login(client)

    assert set(set_cookies(response)) == TOKEN_COOKIES


@pytest.mark.parametrize("config_overrides", [MIXED])
def test_form_refresh_with_body_token_sets_no_cookie(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    """An attacker's own refresh token in a cross-site form: no cookie swap."""
    create_user(app, "mallory")
    cookie_login(client)
    victim = cookie_values(client)
    attacker = login(app.test_client(), "mallory")["refresh_token"]

    response = client.post(
        "/auth/refresh",
        data={"grant_type": "refresh_token", "refresh_token": attacker},
    )

    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []
    assert response.json is not None
    assert "refresh_token" in response.json
    assert cookie_values(client) == victim


@pytest.mark.parametrize(
    "config_overrides",
    [{**COOKIES, "REFRESH_REFRESH_TOKEN_LOCATION": ["body", "cookies"]}],
)
def test_form_refresh_rejected_without_body_place(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    """The access token travels in cookies only, so it would have nowhere to go."""
    other = cookie_login(app.test_client()).json
    assert other is not None
    token = other["refresh_token"]

    response = client.post(
        "/auth/refresh", data={"grant_type": "refresh_token", "refresh_token": token}
    )

    assert response.status_code == 400
    assert response.json == FORM_NEEDS_JSON
    assert response.headers.getlist("Set-Cookie") == []
    assert all(row.used_at is None for row in token_rows(app))


@pytest.mark.parametrize("config_overrides", [MIXED])
def test_json_refresh_with_body_token_sets_cookies(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    token = login(app.test_client())["refresh_token"]

    response = client.post("/auth/refresh", json={"refresh_token": token})

    assert response.status_code == 200
    assert set(set_cookies(response)) == TOKEN_COOKIES


@pytest.mark.parametrize(
    "body",
    [None, {"grant_type": "refresh_token"}],
    ids=["no-body", "form"],
)
def test_cross_site_logout_keeps_cookies(
    app: Flask, client: FlaskClient, alice: int, body: dict[str, str] | None
) -> None:
    """SameSite=Strict keeps the cookies out, so the form arrives without them."""
    cookie_login(client)

    response = app.test_client().post("/auth/logout", data=body)

    assert response.status_code == 204
    assert response.headers.getlist("Set-Cookie") == []
    (family,) = family_rows(app)
    assert family.revoked_at is None


@pytest.mark.parametrize("config_overrides", [MIXED])
def test_form_logout_with_body_token_keeps_cookies(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    mallory = create_user(app, "mallory")
    cookie_login(client)
    victim = cookie_values(client)
    attacker = login(app.test_client(), "mallory")["refresh_token"]

    response = client.post("/auth/logout", data={"refresh_token": attacker})

    assert response.status_code == 204
    assert response.headers.getlist("Set-Cookie") == []
    assert cookie_values(client) == victim
    reasons = {family.user_id: family.revoked_reason for family in family_rows(app)}
    assert reasons == {alice: None, mallory: "logout"}


@pytest.mark.parametrize("config_overrides", [{}])
def test_form_requests_unchanged_without_cookies(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    """OAuth clients send forms; in header and body mode nothing changes."""
    login_response = form_login(client)
    assert login_response.json is not None
    refreshed = client.post(
        "/auth/refresh",
        data={
            "grant_type": "refresh_token",
            "refresh_token": login_response.json["refresh_token"],
        },
    )
    assert refreshed.json is not None
    logged_out = client.post(
        "/auth/logout", data={"refresh_token": refreshed.json["refresh_token"]}
    )

    assert login_response.status_code == 200
    assert refreshed.status_code == 200
    assert logged_out.status_code == 204
    for response in (login_response, refreshed, logged_out):
        assert response.headers.getlist("Set-Cookie") == []
    (family,) = family_rows(app)
    assert family.revoked_reason == "logout"
