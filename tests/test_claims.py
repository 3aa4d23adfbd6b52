"""Issuer, audience, leeway and additional claims on the example app."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    PASSWORD,
    SECRET_KEY,
    FakeClock,
    bearer,
    create_user,
    family_rows,
    login,
    refresh,
    token_rows,
    verified_claims,
)

from example_app import auth

ISSUER = "https://auth.example.com"


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def sign(claims: dict[str, Any]) -> str:
    """Sign any JSON payload: jwt.encode refuses an ``iss`` that is not a string."""
    payload = json.dumps(claims).encode()
    return jwt.PyJWS().encode(
        payload, SECRET_KEY, algorithm="HS256", headers={"typ": "at+jwt"}
    )


def claims_of(user_id: int, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "0" * 32,
        "type": "access",
        "fresh": True,
        "sid": "f" * 32,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not ...}


def me(client: FlaskClient, token: str) -> Any:
    return client.get("/api/me", headers=bearer(token))


# ---------------------------------------------------------------------------
# Issuer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"REFRESH_ISSUER": ISSUER}])
def test_issuer_set_and_accepted(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    assert verified_claims(access)["iss"] == ISSUER
    assert me(client, sign(claims_of(alice, iss=ISSUER))).status_code == 200


@pytest.mark.parametrize("config_overrides", [{"REFRESH_ISSUER": ISSUER}])
@pytest.mark.parametrize(
    "issuer",
    [
        "https://auth.example.co",
        "https://auth.example",
        "auth.example.com",
        "https://auth.example.com/",
        "https://auth.example.com.evil.test",
        "HTTPS://AUTH.EXAMPLE.COM",
        "https://other.example.com",
        "",
        [ISSUER],
        ...,
    ],
    ids=[
        "prefix",
        "shorter prefix",
        "suffix",
        "trailing slash",
        "longer",
        "case",
        "other issuer",
        "empty",
        "list",
        "missing",
    ],
)
def test_other_issuer_rejected(client: FlaskClient, alice: int, issuer: Any) -> None:
    """A token from another issuer that shares our key is still refused."""
    response = me(client, sign(claims_of(alice, iss=issuer)))

    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "invalid_token"


# ---------------------------------------------------------------------------
# Audience
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"REFRESH_AUDIENCE": "api"}])
@pytest.mark.parametrize(
    "audience",
    ["ap", "api2", "API", " api", ["ap", "pi"], ["apis"], "", [], ...],
)
def test_partial_audience_rejected(
    client: FlaskClient, alice: int, audience: Any
) -> None:
    response = me(client, sign(claims_of(alice, aud=audience)))

    assert response.status_code == 401


@pytest.mark.parametrize("config_overrides", [{"REFRESH_AUDIENCE": "api"}])
@pytest.mark.parametrize("audience", ["api", ["api"], ["billing", "api"]])
def test_matching_audience_accepted(
    client: FlaskClient, alice: int, audience: Any
) -> None:
    response = me(client, sign(claims_of(alice, aud=audience)))

    assert response.status_code == 200


@pytest.mark.parametrize("config_overrides", [{"REFRESH_AUDIENCE": ["api", "billing"]}])
def test_audience_list_issued_whole(client: FlaskClient, alice: int) -> None:
    access = login(client)["access_token"]

    claims = jwt.decode(access, SECRET_KEY, algorithms=["HS256"], audience="billing")
    assert claims["aud"] == ["api", "billing"]
    assert me(client, access).status_code == 200


@pytest.mark.parametrize("config_overrides", [{"REFRESH_AUDIENCE": ["api", "billing"]}])
@pytest.mark.parametrize(
    ("audience", "status"),
    [("billing", 200), (["shipping", "api"], 200), ("shipping", 401), ("bill", 401)],
)
def test_audience_list_accepts_any_member(
    client: FlaskClient, alice: int, audience: Any, status: int
) -> None:
    response = me(client, sign(claims_of(alice, aud=audience)))

    assert response.status_code == status


# ---------------------------------------------------------------------------
# Leeway
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"REFRESH_LEEWAY": 30}])
@pytest.mark.parametrize(
    ("claim", "offset", "status"),
    [
        ("nbf", 30, 200),
        ("nbf", 31, 401),
        ("iat", 30, 200),
        ("iat", 31, 401),
    ],
)
def test_leeway_on_nbf_and_iat(
    client: FlaskClient,
    alice: int,
    clock: FakeClock,
    claim: str,
    offset: int,
    status: int,
) -> None:
    now = int(clock.now.timestamp())
    token = sign(claims_of(alice, **{claim: now + offset}, exp=now + 600))

    assert me(client, token).status_code == status


@pytest.mark.parametrize("config_overrides", [{"REFRESH_LEEWAY": 30}])
def test_leeway_extends_refresh_expiry(
    app: Flask, client: FlaskClient, alice: int, clock: FakeClock
) -> None:
    tokens = login(client)
    idle = 14 * 24 * 3600

    clock.advance(idle + 29)
    late = refresh(client, tokens["refresh_token"])

    assert late.status_code == 200
    spent, _ = token_rows(app)
    assert spent.used_at is not None


@pytest.mark.parametrize("config_overrides", [{"REFRESH_LEEWAY": 30}])
def test_leeway_ends_refresh_after_it(
    app: Flask, client: FlaskClient, alice: int, clock: FakeClock
) -> None:
    tokens = login(client)
    idle = 14 * 24 * 3600

    clock.advance(idle + 30)
    response = refresh(client, tokens["refresh_token"])

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token expired.",
    }
    (row,) = token_rows(app)
    assert row.used_at is None


# ---------------------------------------------------------------------------
# Additional claims
# ---------------------------------------------------------------------------


@pytest.fixture
def claims_source(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Register a claims loader on the example app's auth; the test edits it."""
    # The example app's RefreshAuth is shared by every test: restore it after.
    monkeypatch.setattr(auth, "_claims_loader", None)
    source: dict[str, Any] = {"roles": ["admin"], "tenant": 7}

    @auth.additional_claims_loader
    def load_claims(user: Any) -> dict[str, Any]:
        return {**source, "username": user.username}

    return source


def test_additional_claims_in_login_token(
    app: Flask, client: FlaskClient, alice: int, claims_source: dict[str, Any]
) -> None:
    access = login(client)["access_token"]

    claims = verified_claims(access)
    assert claims["roles"] == ["admin"]
    assert claims["tenant"] == 7
    assert claims["username"] == "alice"
    (family,) = family_rows(app)
    assert family.claims == {"roles": ["admin"], "tenant": 7, "username": "alice"}


def test_additional_claims_survive_rotation(
    client: FlaskClient, alice: int, claims_source: dict[str, Any]
) -> None:
    tokens = login(client)
    # The loader would now return something else; the session keeps its claims.
    claims_source["roles"] = ["guest"]

    first = refresh(client, tokens["refresh_token"]).json
    assert first is not None
    second = refresh(client, first["refresh_token"]).json
    assert second is not None

    for access in (first["access_token"], second["access_token"]):
        claims = verified_claims(access)
        assert claims["roles"] == ["admin"]
        assert claims["fresh"] is False


def test_additional_claims_in_grace_retry(
    client: FlaskClient, alice: int, claims_source: dict[str, Any]
) -> None:
    tokens = login(client)
    assert refresh(client, tokens["refresh_token"]).status_code == 200

    retry = refresh(client, tokens["refresh_token"]).json

    assert retry is not None
    claims = verified_claims(retry["access_token"])
    assert claims["tenant"] == 7
    assert claims["fresh"] is False


def test_new_login_gets_new_claims(
    client: FlaskClient, alice: int, claims_source: dict[str, Any]
) -> None:
    login(client)
    claims_source["roles"] = ["guest"]

    access = login(client)["access_token"]

    assert verified_claims(access)["roles"] == ["guest"]


def test_additional_claims_readable_in_view(
    client: FlaskClient, alice: int, claims_source: dict[str, Any]
) -> None:
    access = login(client)["access_token"]

    response = client.get("/auth/sessions", headers=bearer(access))

    assert response.status_code == 200


@pytest.mark.parametrize("reserved", ["sub", "exp", "sid", "fresh", "iss", "aud"])
def test_reserved_claim_rejected_at_login(
    app: Flask,
    client: FlaskClient,
    alice: int,
    claims_source: dict[str, Any],
    reserved: str,
) -> None:
    claims_source[reserved] = "x"

    with pytest.raises(ValueError, match=rf"reserved claims \['{reserved}'\]"):
        client.post("/auth/login", json={"username": "alice", "password": PASSWORD})

    assert family_rows(app) == []


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), object()])
def test_non_json_claim_rejected_at_login(
    app: Flask,
    client: FlaskClient,
    alice: int,
    claims_source: dict[str, Any],
    value: Any,
) -> None:
    claims_source["bad"] = value

    with pytest.raises(TypeError, match="not JSON values"):
        login(client)

    assert family_rows(app) == []


def test_loader_returning_none_adds_nothing(
    app: Flask, client: FlaskClient, alice: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_claims_loader", None)
    auth.additional_claims_loader(lambda user: None)

    access = login(client)["access_token"]

    assert set(verified_claims(access)) == {
        "sub",
        "iat",
        "nbf",
        "exp",
        "jti",
        "type",
        "fresh",
        "sid",
    }
    (family,) = family_rows(app)
    assert family.claims is None
