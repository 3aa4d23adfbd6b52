"""@jwt_required(): RFC 6750 answers, current_user, claims and options."""

from __future__ import annotations

import base64
import json
import time
import warnings
from typing import Any

import jwt
import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask_login import current_user, login_user
from helpers import SECRET_KEY, FakeClock, bearer, create_user, login, refresh

from example_app import db, login_manager
from example_app.models import User
from flask_refresh import InvalidToken, get_claims, jwt_required


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def views(app: Flask) -> Flask:
    """Add views that exercise each option of the decorator."""

    @app.get("/optional")
    @jwt_required(optional=True)
    def optional() -> dict[str, Any]:
        user = current_user.get_id() if current_user.is_authenticated else None
        return {"user": user, "claims": get_claims()}

    @app.get("/fresh")
    @jwt_required(fresh=True)
    def fresh() -> dict[str, Any]:
        return {"user": current_user.get_id()}

    @app.get("/async")
    @jwt_required()
    async def async_view() -> dict[str, Any]:
        return {"sub": get_claims()["sub"], "user": current_user.get_id()}

    @app.route("/preflight", methods=["GET", "OPTIONS"])
    @jwt_required()
    def preflight() -> dict[str, Any]:
        return {"method": request.method}

    @app.get("/claims")
    @jwt_required()
    def claims() -> dict[str, Any]:
        return get_claims()

    @app.route("/cors-claims", methods=["GET", "POST", "OPTIONS"])
    @jwt_required()
    def cors_claims() -> dict[str, Any]:
        user = current_user.get_id() if current_user.is_authenticated else None
        return {"method": request.method, "user": user, "claims": get_claims()}

    @app.get("/session-login/<int:user_id>")
    def session_login(user_id: int) -> dict[str, Any]:
        login_user(db.session.get(User, user_id))
        return {"ok": True}

    @app.get("/whoami")
    @jwt_required()
    def whoami() -> dict[str, Any]:
        return {"user": current_user.get_id()}

    return app


def sign(claims: dict[str, Any], *, key: str = SECRET_KEY, **headers: Any) -> str:
    return jwt.encode(
        claims, key, algorithm="HS256", headers={"typ": "at+jwt", **headers}
    )


def valid_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "0" * 32,
        "type": "access",
        "fresh": True,
        "sid": "f" * 32,
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not ...}


def test_missing_token_gets_bare_challenge(client: FlaskClient, views: Flask) -> None:
    response = client.get("/whoami")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json == {
        "error": "missing_token",
        "error_description": "This resource needs a bearer access token.",
    }


@pytest.mark.parametrize("config_overrides", [{"REFRESH_REALM": "example"}])
def test_challenge_names_realm(client: FlaskClient, views: Flask) -> None:
    response = client.get("/whoami")

    assert response.headers["WWW-Authenticate"] == 'Bearer realm="example"'


def test_other_scheme_counts_as_missing(client: FlaskClient, views: Flask) -> None:
    response = client.get("/whoami", headers={"Authorization": "Basic YTpi"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_invalid_token_names_error(client: FlaskClient, views: Flask) -> None:
    response = client.get("/whoami", headers=bearer("abc.def.ghi"))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token",'
        ' error_description="The access token is malformed."'
    )
    assert response.json == {
        "error": "invalid_token",
        "error_description": "The access token is malformed.",
    }


def test_valid_token_loads_user(client: FlaskClient, views: Flask, alice: int) -> None:
    access = login(client)["access_token"]

    response = client.get("/whoami", headers=bearer(access))

    assert response.status_code == 200
    assert response.json == {"user": str(alice)}


def test_scheme_is_case_insensitive(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    access = login(client)["access_token"]

    response = client.get("/whoami", headers={"Authorization": f"bEaReR   {access} "})

    assert response.status_code == 200


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer a b", "Bearer tök"])
def test_malformed_header_is_invalid_request(
    client: FlaskClient, views: Flask, value: str
) -> None:
    response = client.get("/whoami", headers={"Authorization": value})

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer error="invalid_request"'
    )


def test_repeated_header_is_invalid_request(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    access = login(client)["access_token"]

    response = client.get(
        "/whoami",
        headers=[("Authorization", f"Bearer {access}"), ("Authorization", "Bearer x")],
    )

    assert response.status_code == 400


def test_oversized_token_rejected(client: FlaskClient, views: Flask) -> None:
    response = client.get("/whoami", headers=bearer("a" * 5000))

    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error_description"] == "The access token is too long."


def test_expired_token_rejected(
    client: FlaskClient, views: Flask, clock: FakeClock, alice: int
) -> None:
    access = login(client)["access_token"]

    clock.advance(899)
    assert client.get("/whoami", headers=bearer(access)).status_code == 200
    clock.advance(1)
    response = client.get("/whoami", headers=bearer(access))

    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_token",
        "error_description": "The access token expired.",
    }


@pytest.mark.parametrize("config_overrides", [{"REFRESH_LEEWAY": 30}])
def test_leeway_extends_expiry(
    client: FlaskClient, views: Flask, clock: FakeClock, alice: int
) -> None:
    access = login(client)["access_token"]

    clock.advance(929)
    assert client.get("/whoami", headers=bearer(access)).status_code == 200
    clock.advance(1)
    assert client.get("/whoami", headers=bearer(access)).status_code == 401


def test_refresh_token_never_opens_view(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    tokens = login(client)

    response = client.get("/whoami", headers=bearer(tokens["refresh_token"]))

    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("claims", "headers", "description"),
    [
        (valid_claims(type="refresh"), {}, "The token is not an access token."),
        (valid_claims(), {"typ": "JWT"}, "The token is not an access token."),
        (valid_claims(sid=...), {}, "The access token has no sid claim."),
        (valid_claims(fresh=...), {}, "The access token has no fresh claim."),
        (valid_claims(sub=1), {}, "The sub claim must be a non-empty string."),
        (valid_claims(sub={"id": 1}), {}, "The sub claim must be a non-empty string."),
        (valid_claims(fresh="true"), {}, "The fresh claim must be a boolean."),
        (valid_claims(exp=True), {}, "The exp claim must be a number of seconds."),
        (valid_claims(iat=None), {}, "The access token has no iat claim."),
        (valid_claims(iat="0"), {}, "The iat claim must be a number of seconds."),
        (
            valid_claims(nbf=int(time.time()) + 3600),
            {},
            "The access token is not valid yet.",
        ),
        (
            valid_claims(iat=int(time.time()) + 3600),
            {},
            "The access token was issued in the future.",
        ),
    ],
)
def test_signed_token_with_bad_claims_rejected(
    client: FlaskClient,
    views: Flask,
    claims: dict[str, Any],
    headers: dict[str, Any],
    description: str,
) -> None:
    response = client.get("/claims", headers=bearer(sign(claims, **headers)))

    assert response.status_code == 401
    assert response.json == {"error": "invalid_token", "error_description": description}


def test_wrong_key_rejected(client: FlaskClient, views: Flask) -> None:
    token = sign(valid_claims(), key="another-secret-key-of-sufficient-length-xx")

    response = client.get("/claims", headers=bearer(token))

    assert response.status_code == 401
    assert response.json is not None
    assert (
        response.json["error_description"] == "The access token signature is invalid."
    )


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_rejected(client: FlaskClient, views: Flask, alg: str) -> None:
    def segment(value: dict[str, Any]) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    token = f"{segment({'alg': alg, 'typ': 'at+jwt'})}.{segment(valid_claims())}."

    response = client.get("/claims", headers=bearer(token))

    assert response.status_code in (400, 401)
    assert response.json is not None
    assert response.json["error"] in ("invalid_token", "invalid_request")


def test_other_hmac_algorithm_rejected(client: FlaskClient, views: Flask) -> None:
    with warnings.catch_warnings():
        # PyJWT warns that the key is short for HS512; the attacker does not care.
        warnings.simplefilter("ignore")
        token = jwt.encode(
            valid_claims(), SECRET_KEY, algorithm="HS512", headers={"typ": "at+jwt"}
        )

    response = client.get("/claims", headers=bearer(token))

    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error_description"] == (
        "The access token is signed with an algorithm that is not allowed."
    )


def test_fresh_view_rejects_refreshed_token(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    tokens = login(client)
    refreshed = refresh(client, tokens["refresh_token"]).json
    assert refreshed is not None

    fresh = client.get("/fresh", headers=bearer(tokens["access_token"]))
    stale = client.get("/fresh", headers=bearer(refreshed["access_token"]))

    assert fresh.status_code == 200
    assert stale.status_code == 403
    assert stale.json is not None
    assert stale.json["error"] == "insufficient_scope"
    assert stale.headers["WWW-Authenticate"].startswith(
        'Bearer error="insufficient_scope"'
    )


def test_optional_without_token_is_anonymous(client: FlaskClient, views: Flask) -> None:
    response = client.get("/optional")

    assert response.status_code == 200
    assert response.json == {"user": None, "claims": {}}


def test_optional_with_token_loads_user(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    access = login(client)["access_token"]

    response = client.get("/optional", headers=bearer(access))

    assert response.status_code == 200
    assert response.json is not None
    assert response.json["user"] == str(alice)
    assert response.json["claims"]["sub"] == str(alice)


def test_optional_with_bad_token_rejected(client: FlaskClient, views: Flask) -> None:
    response = client.get("/optional", headers=bearer("abc.def.ghi"))

    assert response.status_code == 401


def test_preflight_passes_without_token(client: FlaskClient, views: Flask) -> None:
    preflight = client.options("/preflight")
    get = client.get("/preflight")

    assert preflight.status_code == 200
    assert preflight.json == {"method": "OPTIONS"}
    assert get.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{}, "valid", {"Authorization": "Bearer abc.def.ghi"}],
    ids=["no-token", "valid-token", "invalid-token"],
)
def test_preflight_is_anonymous(
    client: FlaskClient, views: Flask, alice: int, headers: Any
) -> None:
    """A view that reads get_claims() and current_user responds to OPTIONS too."""
    if headers == "valid":
        headers = bearer(login(client)["access_token"])

    preflight = client.options("/cors-claims", headers=headers)

    assert preflight.status_code == 200
    assert preflight.json == {"method": "OPTIONS", "user": None, "claims": {}}


def test_preflight_view_still_needs_token(
    client: FlaskClient, views: Flask, alice: int
) -> None:
    access = login(client)["access_token"]

    anonymous = client.post("/cors-claims")
    signed_in = client.post("/cors-claims", headers=bearer(access))

    assert anonymous.status_code == 401
    assert signed_in.status_code == 200
    assert signed_in.json is not None
    assert signed_in.json["user"] == str(alice)
    assert signed_in.json["claims"]["sub"] == str(alice)


def test_async_view_works(client: FlaskClient, views: Flask, alice: int) -> None:
    access = login(client)["access_token"]

    response = client.get("/async", headers=bearer(access))
    anonymous = client.get("/async")

    assert response.status_code == 200
    assert response.json == {"sub": str(alice), "user": str(alice)}
    assert anonymous.status_code == 401


def test_token_user_wins_over_session_cookie(
    app: Flask, client: FlaskClient, views: Flask, alice: int
) -> None:
    app.config["SECRET_KEY"] = "session-cookie-secret"
    bob = create_user(app, "bob")
    assert client.get(f"/session-login/{bob}").status_code == 200
    access = login(client)["access_token"]

    response = client.get("/whoami", headers=bearer(access))

    assert response.json == {"user": str(alice)}


def test_user_loaded_only_when_used(
    client: FlaskClient, views: Flask, alice: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = login(client)["access_token"]
    loads: list[str] = []
    real_loader = login_manager._user_callback

    def counting_loader(user_id: str) -> Any:
        loads.append(user_id)
        return real_loader(user_id)

    monkeypatch.setattr(login_manager, "_user_callback", counting_loader)

    claims_only = client.get("/claims", headers=bearer(access))
    assert claims_only.status_code == 200
    assert loads == []

    with_user = client.get("/whoami", headers=bearer(access))
    assert with_user.status_code == 200
    assert loads == [str(alice)]


def test_deleted_user_token_rejected_on_use(
    app: Flask, client: FlaskClient, views: Flask, alice: int
) -> None:
    access = login(client)["access_token"]
    with app.app_context():
        db.session.delete(db.session.get(User, alice))
        db.session.commit()

    response = client.get("/whoami", headers=bearer(access))

    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_token",
        "error_description": (
            "The user of this access token no longer exists or is inactive."
        ),
    }


def test_get_claims_outside_protected_view_raises(app: Flask) -> None:
    with (
        app.test_request_context("/"),
        pytest.raises(RuntimeError, match="jwt_required"),
    ):
        get_claims()


def test_app_can_replace_one_error_response(
    app: Flask, client: FlaskClient, views: Flask
) -> None:
    def teapot(error: InvalidToken) -> tuple[dict[str, str], int]:
        return {"custom": error.description}, 418

    app.register_error_handler(InvalidToken, teapot)

    invalid = client.get("/whoami", headers=bearer("abc.def.ghi"))
    missing = client.get("/whoami")
    bad_login = client.post("/auth/login", json={})

    assert invalid.status_code == 418
    assert invalid.json == {"custom": "The access token is malformed."}
    assert missing.status_code == 401
    assert bad_login.status_code == 400
