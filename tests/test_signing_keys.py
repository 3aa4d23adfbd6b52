"""REFRESH_SIGNING_KEYS on the example app: each algorithm, rotation, and attacks.

Forged tokens carry the claims of a real user, so each would open /api/me if the
check it targets were missing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from helpers import app_config, bearer, create_user, login, refresh
from jwt.algorithms import get_default_algorithms
from signing_keys import (
    ASYMMETRIC_ALGORITHMS,
    key_entry,
    private_key,
    public_der,
    public_pem,
)

from example_app import create_app, db

RSA_KEYS = {"REFRESH_SIGNING_KEYS": [key_entry("rsa-1", "RS256")]}
MIXED_KEYS = {
    "REFRESH_SIGNING_KEYS": [
        key_entry("ec-1", "ES256"),
        key_entry("rsa-1", "RS256"),
        key_entry("hmac-1", "HS256"),
    ]
}


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def make_app(database_url: str, app: Flask) -> Iterator[Callable[..., Flask]]:
    """Build more apps on the test database, as a redeploy with new config would.

    The ``app`` fixture empties the tables before and after the test.
    """
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        new_app = create_app(app_config(database_url, **overrides))
        apps.append(new_app)
        return new_app

    yield make

    for made in apps:
        with made.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def segment(value: bytes | dict[str, Any]) -> str:
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


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
    return claims


def hmac_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """Sign with HMAC-SHA256 by hand: PyJWT refuses PEM keys as HMAC secrets."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{segment(mac)}"


def me(client: FlaskClient, token: str) -> Any:
    return client.get("/api/me", headers=bearer(token))


def description(response: Any) -> str:
    assert response.json is not None, response.data
    return str(response.json["error_description"])


# ---------------------------------------------------------------------------
# Signing and verifying with each algorithm
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_overrides",
    [
        {"REFRESH_SIGNING_KEYS": [key_entry("k-" + algorithm, algorithm)]}
        for algorithm in (*ASYMMETRIC_ALGORITHMS, "HS384")
    ],
    ids=[*ASYMMETRIC_ALGORITHMS, "HS384"],
)
def test_key_signs_and_verifies(
    client: FlaskClient, alice: int, config_overrides: dict[str, Any]
) -> None:
    (entry,) = config_overrides["REFRESH_SIGNING_KEYS"]
    tokens = login(client)

    header = jwt.get_unverified_header(tokens["access_token"])
    response = me(client, tokens["access_token"])

    assert header == {"alg": entry["algorithm"], "kid": entry["kid"], "typ": "at+jwt"}
    assert response.status_code == 200
    assert response.json == {"id": alice, "username": "alice"}


@pytest.mark.parametrize("algorithm", ASYMMETRIC_ALGORITHMS)
def test_public_key_verifies_token(
    make_app: Callable[..., Flask], algorithm: str
) -> None:
    app = make_app(REFRESH_SIGNING_KEYS=[key_entry("k1", algorithm)])
    create_user(app, "alice")
    tokens = login(app.test_client())

    public_key = private_key(algorithm).public_key()
    claims = jwt.decode(tokens["access_token"], public_key, algorithms=[algorithm])

    assert claims["type"] == "access"
    assert claims["fresh"] is True


def test_secret_key_alone_sets_no_kid(client: FlaskClient, alice: int) -> None:
    tokens = login(client)

    header = jwt.get_unverified_header(tokens["access_token"])

    assert header == {"alg": "HS256", "typ": "at+jwt"}


# ---------------------------------------------------------------------------
# Rotation
# ---------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid(make_app: Callable[..., Flask]) -> None:
    old_key, new_key = key_entry("2025-a", "ES256"), key_entry("2025-b", "EdDSA")
    before = make_app(REFRESH_SIGNING_KEYS=[old_key])
    create_user(before, "alice")
    old_tokens = login(before.test_client())

    # Step 1: the new key is listed last, so it verifies but does not sign yet.
    listed = make_app(REFRESH_SIGNING_KEYS=[old_key, new_key]).test_client()
    # Step 2: the new key moves to the front and signs.
    promoted = make_app(REFRESH_SIGNING_KEYS=[new_key, old_key]).test_client()
    new_tokens = refresh(promoted, old_tokens["refresh_token"]).json

    assert jwt.get_unverified_header(login(listed)["access_token"])["kid"] == "2025-a"
    assert new_tokens is not None
    assert jwt.get_unverified_header(new_tokens["access_token"])["kid"] == "2025-b"
    assert me(promoted, old_tokens["access_token"]).status_code == 200
    assert me(promoted, new_tokens["access_token"]).status_code == 200
    assert me(listed, new_tokens["access_token"]).status_code == 200


def test_removed_key_no_longer_verifies(make_app: Callable[..., Flask]) -> None:
    old_key, new_key = key_entry("old", "RS256"), key_entry("new", "RS256", "next")
    before = make_app(REFRESH_SIGNING_KEYS=[old_key])
    create_user(before, "alice")
    old_tokens = login(before.test_client())

    after = make_app(REFRESH_SIGNING_KEYS=[new_key]).test_client()
    response = me(after, old_tokens["access_token"])
    refreshed = refresh(after, old_tokens["refresh_token"])

    assert response.status_code == 401
    assert description(response) == "The access token is signed with an unknown key."
    # The refresh token does not depend on the signing key, so the session lives on.
    assert refreshed.status_code == 200


def test_token_of_secret_key_alone_needs_refresh(
    make_app: Callable[..., Flask],
) -> None:
    before = make_app()
    create_user(before, "alice")
    old_tokens = login(before.test_client())

    after = make_app(REFRESH_SIGNING_KEYS=[key_entry("k1", "ES256")]).test_client()
    response = me(after, old_tokens["access_token"])
    refreshed = refresh(after, old_tokens["refresh_token"])

    assert response.status_code == 401
    assert description(response) == "The access token header names no key (kid)."
    assert refreshed.status_code == 200


# ---------------------------------------------------------------------------
# Attacks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "none "])
@pytest.mark.parametrize("kid", ["ec-1", "rsa-1", "hmac-1"])
def test_alg_none_rejected(client: FlaskClient, alice: int, alg: str, kid: str) -> None:
    header = {"alg": alg, "typ": "at+jwt", "kid": kid}
    token = f"{segment(header)}.{segment(claims_of(alice))}."

    response = me(client, token)

    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "invalid_token"


def public_key_as_secret() -> dict[str, bytes]:
    """The RSA public key in every encoding an attacker might try as an HMAC key."""
    key = private_key("RS256")
    jwk = get_default_algorithms()["RS256"].to_jwk(key.public_key(), as_dict=True)
    ssh = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    pem = public_pem(key)
    return {
        "pem": pem,
        "pem without newline": pem.rstrip(b"\n"),
        "pkcs1 pem": key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "der": public_der(key),
        "base64 der": base64.b64encode(public_der(key)),
        "jwk": json.dumps(jwk).encode(),
        "jwks": json.dumps({"keys": [jwk]}).encode(),
        "openssh": ssh,
        "modulus": jwk["n"].encode(),
    }


@pytest.mark.parametrize("config_overrides", [RSA_KEYS])
@pytest.mark.parametrize("encoding", list(public_key_as_secret()))
@pytest.mark.parametrize("kid", ["rsa-1", None])
def test_hmac_keyed_with_public_key_rejected(
    client: FlaskClient, alice: int, encoding: str, kid: str | None
) -> None:
    header: dict[str, Any] = {"alg": "HS256", "typ": "at+jwt"}
    if kid is not None:
        header["kid"] = kid
    token = hmac_token(header, claims_of(alice), public_key_as_secret()[encoding])

    response = me(client, token)

    assert response.status_code == 401
    expected = (
        "The access token is signed with an algorithm that is not allowed."
        if kid
        else "The access token header names no key (kid)."
    )
    assert description(response) == expected


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
def test_hmac_key_verifies_only_hmac(client: FlaskClient, alice: int) -> None:
    """A token naming the HMAC key but signed with RS256 never reaches that key."""
    token = jwt.encode(
        claims_of(alice),
        private_key("RS256"),
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": "hmac-1"},
    )

    response = me(client, token)

    assert response.status_code == 401
    assert description(response) == (
        "The access token is signed with an algorithm that is not allowed."
    )


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
@pytest.mark.parametrize(
    ("kid", "algorithm"),
    [
        # The RSA entry is RS256 only: not another hash, nor PSS padding.
        ("rsa-1", "RS512"),
        ("rsa-1", "PS256"),
        # The EC entry is ES256 only.
        ("ec-1", "ES384"),
        # The HMAC entry is HS256 only, not a longer hash with the same secret.
        ("hmac-1", "HS512"),
    ],
)
def test_algorithm_outside_entry_rejected(
    client: FlaskClient, alice: int, kid: str, algorithm: str
) -> None:
    entry = next(e for e in MIXED_KEYS["REFRESH_SIGNING_KEYS"] if e["kid"] == kid)
    signed = jwt.encode(
        claims_of(alice),
        entry["key"],
        algorithm=entry["algorithm"],
        headers={"typ": "at+jwt", "kid": kid},
    )
    header_segment, rest = signed.split(".", 1)
    header = json.loads(base64.urlsafe_b64decode(header_segment + "=="))
    # A validly signed token whose header now names another algorithm: the
    # algorithm must be refused before any signature check.
    token = f"{segment({**header, 'alg': algorithm})}.{rest}"

    response = me(client, token)

    assert response.status_code == 401
    assert description(response) == (
        "The access token is signed with an algorithm that is not allowed."
    )


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
@pytest.mark.parametrize("kid", ["ec-1", "rsa-1", "hmac-1"])
def test_signature_of_other_key_rejected(
    client: FlaskClient, alice: int, kid: str
) -> None:
    entry = next(e for e in MIXED_KEYS["REFRESH_SIGNING_KEYS"] if e["kid"] == kid)
    algorithm = entry["algorithm"]
    other = key_entry("other", algorithm, "attacker")["key"]
    token = jwt.encode(
        claims_of(alice),
        other,
        algorithm=algorithm,
        headers={"typ": "at+jwt", "kid": kid},
    )

    response = me(client, token)

    assert response.status_code == 401
    assert description(response) == "The access token signature is invalid."


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/dev/null",
        "file:///dev/null",
        "http://127.0.0.1:9/jwks.json",
        "ec-1/../rsa-1",
        "EC-1",
        "ec-1 ",
        "' OR '1'='1",
        "",
    ],
)
def test_unknown_kid_rejected(client: FlaskClient, alice: int, kid: str) -> None:
    # /dev/null's content: the empty HMAC key a kid used as a path would load.
    token = hmac_token(
        {"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims_of(alice), b""
    )

    response = me(client, token)

    assert response.status_code == 401
    assert description(response) == "The access token is signed with an unknown key."


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
@pytest.mark.parametrize("kid", [1, None, ["ec-1"], {"kid": "ec-1"}])
def test_kid_of_wrong_type_rejected(client: FlaskClient, alice: int, kid: Any) -> None:
    """PyJWT rejects a kid that is not a string while it reads the header."""
    token = hmac_token(
        {"alg": "HS256", "typ": "at+jwt", "kid": kid},
        claims_of(alice),
        MIXED_KEYS["REFRESH_SIGNING_KEYS"][2]["key"].encode(),
    )

    response = me(client, token)

    assert response.status_code == 401
    assert description(response) == "The access token is malformed."


def attacker_jwk() -> dict[str, Any]:
    public = private_key("RS256", "attacker").public_key()
    jwk: dict[str, Any] = get_default_algorithms()["RS256"].to_jwk(public, as_dict=True)
    return {**jwk, "kid": "rsa-1", "alg": "RS256"}


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
@pytest.mark.parametrize(
    "extra_header",
    [
        {"jwk": attacker_jwk()},
        {"jku": "http://127.0.0.1:9/attacker-jwks.json"},
        {"x5u": "http://127.0.0.1:9/attacker.pem"},
        {"x5c": ["MIIB"]},
    ],
    ids=["jwk", "jku", "x5u", "x5c"],
)
def test_header_supplied_key_ignored(
    client: FlaskClient, alice: int, extra_header: dict[str, Any]
) -> None:
    token = jwt.encode(
        claims_of(alice),
        private_key("RS256", "attacker"),
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": "rsa-1", **extra_header},
    )

    response = me(client, token)

    assert response.status_code == 401
    assert description(response) == "The access token signature is invalid."


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
@pytest.mark.parametrize("parameter", ["jwk", "jku", "x5u", "x5c"])
def test_key_header_refused_even_when_signed(
    client: FlaskClient, alice: int, parameter: str
) -> None:
    """A token we could have signed still may not point elsewhere for its key."""
    value: Any = ["MIIB"] if parameter == "x5c" else "http://127.0.0.1:9/k"
    if parameter == "jwk":
        value = attacker_jwk()
    token = jwt.encode(
        claims_of(alice),
        private_key("RS256"),
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": "rsa-1", parameter: value},
    )

    response = me(client, token)

    assert response.status_code == 401
    assert description(response) == (
        "The access token header carries a key, which is not accepted."
    )


@pytest.mark.parametrize("config_overrides", [MIXED_KEYS])
def test_well_signed_forgery_control(client: FlaskClient, alice: int) -> None:
    """The forged claims above open the view once they are signed properly."""
    token = jwt.encode(
        claims_of(alice),
        private_key("RS256"),
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": "rsa-1"},
    )

    response = me(client, token)

    assert response.status_code == 200


# ---------------------------------------------------------------------------
# ECDSA signatures have a second valid form
# ---------------------------------------------------------------------------

#: The order n of the P-256 group. An ECDSA signature (r, s) verifies exactly
#: when (r, n - s) does.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def other_signature_form(token: str) -> str:
    """Return ``token`` with its ES256 signature (r, s) replaced by (r, n - s)."""
    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    flipped = r + (P256_ORDER - s).to_bytes(32, "big")
    return f"{header}.{payload}.{segment(flipped)}"


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            "REFRESH_SIGNING_KEYS": [key_entry("ec-1", "ES256")],
            "REFRESH_CHECK_REVOKED": True,
        }
    ],
)
def test_es256_second_form_is_same_token(client: FlaskClient, alice: int) -> None:
    """Two strings, one set of claims: revoking through either ends both."""
    token = login(client)["access_token"]
    other = other_signature_form(token)

    first_use = me(client, other)
    revoked = client.post(
        "/auth/revoke", json={"token": other, "token_type_hint": "access_token"}
    )

    assert other != token
    assert first_use.status_code == 200
    assert first_use.json == {"id": alice, "username": "alice"}
    assert revoked.status_code == 200
    assert me(client, token).status_code == 401
    assert me(client, other).status_code == 401
