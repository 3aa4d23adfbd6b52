"""Forged, confused and mistimed access tokens, as RFC 8725 lists the attacks.

Every token here is built by hand, as an attacker would, and sent to the example
app's protected view ``/api/me``. Each must get 401 ``invalid_token`` with the
Bearer challenge and a fixed description that echoes nothing of the token. The
cases that tests/test_jwt_required.py covers already (the basic ``alg: none``
spellings, a wrong HMAC key, HS512 under HS256, some claims of the wrong type) are
not repeated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    SECRET_KEY,
    FakeClock,
    bearer,
    create_user,
    family_rows,
    login,
    refresh,
    token_rows,
)

ME = "/api/me"
ISSUER = "https://a.example"
AUDIENCE = "https://api.example"

MALFORMED = "The access token is malformed."
BAD_SIGNATURE = "The access token signature is invalid."
BAD_ALGORITHM = "The access token is signed with an algorithm that is not allowed."


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def now(clock: FakeClock) -> int:
    """The app's time, moved to a whole second so that boundaries are exact."""
    clock.now = clock.now.replace(microsecond=0)
    return int(clock.now.timestamp())


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def hs256(signing_input: str, key: bytes) -> str:
    return b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def forge(
    claims: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    key: bytes = SECRET_KEY.encode(),
) -> str:
    """Sign ``claims`` with HS256 and ``key``, whatever the header names."""
    header = {"alg": "HS256", "typ": "at+jwt"} if header is None else header
    signing_input = f"{segment(header)}.{segment(claims)}"
    return f"{signing_input}.{hs256(signing_input, key)}"


def claims_for(user_id: int, issued_at: int, **changes: Any) -> dict[str, Any]:
    """Return the claims of a valid access token; ``...`` removes a claim."""
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + 600,
        "jti": "0" * 32,
        "type": "access",
        "fresh": True,
        "sid": "f" * 32,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not ...}


def assert_rejected(response: Any, description: str | None = None) -> None:
    """Check the documented 401 response, and ``description`` when given."""
    assert response.status_code == 401
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer error="invalid_token"'
    )
    body = response.json
    assert body is not None
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "invalid_token"
    if description is not None:
        assert body["error_description"] == description


def assert_accepted(response: Any, user_id: int) -> None:
    assert response.status_code == 200, response.json
    assert response.json == {"id": user_id, "username": "alice"}


# ---------------------------------------------------------------------------
# The algorithm
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "at+jwt"},
        {"alg": None, "typ": "at+jwt"},
        {"alg": "", "typ": "at+jwt"},
        {"alg": ["HS256"], "typ": "at+jwt"},
        {"alg": {"name": "HS256"}, "typ": "at+jwt"},
        {"alg": "hs256", "typ": "at+jwt"},
        {"alg": "HS256 ", "typ": "at+jwt"},
        {"alg": "none", "typ": "at+jwt"},
        {"alg": "NoNe", "typ": "at+jwt"},
    ],
    ids=[
        "missing",
        "null",
        "empty",
        "list",
        "object",
        "lower-case",
        "trailing-space",
        "none-signed",
        "mixed-case-none-signed",
    ],
)
def test_alg_header_variants_rejected(
    client: FlaskClient, alice: int, now: int, header: dict[str, Any]
) -> None:
    # Signed with the real key, so only the header can make it fail.
    token = forge(claims_for(alice, now), header=header)

    response = client.get(ME, headers=bearer(token))

    assert_rejected(response, BAD_ALGORITHM)


@pytest.mark.parametrize("alg", ["none", "None"])
def test_unsigned_token_without_signature_rejected(
    client: FlaskClient, alice: int, now: int, alg: str
) -> None:
    token = (
        f"{segment({'alg': alg, 'typ': 'at+jwt'})}.{segment(claims_for(alice, now))}."
    )

    response = client.get(ME, headers=bearer(token))

    assert_rejected(response, BAD_ALGORITHM)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_keys() -> dict[str, Any]:
    return {
        "RS256": rsa_key(),
        "PS256": rsa_key(),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_asymmetric_algorithm_rejected(
    client: FlaskClient, alice: int, now: int, alg: str
) -> None:
    key = private_keys()[alg]
    token = jwt.encode(
        claims_for(alice, now), key, algorithm=alg, headers={"typ": "at+jwt"}
    )

    response = client.get(ME, headers=bearer(token))

    assert_rejected(response, BAD_ALGORITHM)


def test_hs384_with_the_real_key_rejected(
    client: FlaskClient, alice: int, now: int
) -> None:
    token = jwt.encode(
        claims_for(alice, now), SECRET_KEY, algorithm="HS384", headers={"typ": "at+jwt"}
    )

    response = client.get(ME, headers=bearer(token))

    assert_rejected(response, BAD_ALGORITHM)


@pytest.mark.parametrize("encoding", ["pem", "der", "jwk"])
def test_hmac_keyed_with_public_key_rejected(
    client: FlaskClient, alice: int, now: int, encoding: str
) -> None:
    """The key confusion attack: HS256 keyed with a public key, which the attacker has.

    PyJWT refuses to sign with a PEM key as an HMAC secret, so the MAC is computed
    by hand, as an attacker would.
    """
    public = rsa_key().public_key()
    if encoding == "pem":
        secret = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif encoding == "der":
        secret = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        secret = jwt.algorithms.RSAAlgorithm.to_jwk(public).encode()

    response = client.get(ME, headers=bearer(forge(claims_for(alice, now), key=secret)))

    assert_rejected(response, BAD_SIGNATURE)


# ---------------------------------------------------------------------------
# The signature and the encoding
# ---------------------------------------------------------------------------


def flip(text: str, index: int) -> str:
    """Replace one base64url character with another that changes its value."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = alphabet[(alphabet.index(text[index]) + 16) % 64]
    return text[:index] + replacement + text[index + 1 :]


def tamper(token: str, case: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    if case == "flipped-signature":
        return f"{header}.{payload}.{flip(signature, 10)}"
    if case == "empty-signature":
        return f"{header}.{payload}."
    if case == "changed-sub":
        return f"{header}.{segment({**claims, 'sub': '999'})}.{signature}"
    if case == "extended-exp":
        return (
            f"{header}.{segment({**claims, 'exp': claims['exp'] + 86400})}.{signature}"
        )
    if case == "changed-header":
        return f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{payload}.{signature}"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "flipped-signature",
        "empty-signature",
        "changed-sub",
        "extended-exp",
        "changed-header",
    ],
)
def test_tampered_token_rejected(client: FlaskClient, alice: int, case: str) -> None:
    token = login(client)["access_token"]

    response = client.get(ME, headers=bearer(tamper(token, case)))

    assert_rejected(response, BAD_SIGNATURE)


def reencode(token: str, case: str) -> str:
    header, payload, signature = token.split(".")
    if case == "padded-signature":
        return f"{token}{'=' * (-len(signature) % 4)}"
    if case == "padded-payload":
        return f"{header}.{payload}{'=' * (-len(payload) % 4 or 4)}.{signature}"
    if case == "standard-alphabet":
        # Keep the signature's characters outside the URL-safe alphabet in
        # standard base64 form; the decoded bytes are the same.
        return f"{header}.{payload}.{signature.replace('-', '+').replace('_', '/')}"
    if case == "unused-bits":
        # 32 bytes take 43 base64url characters; the last one carries two
        # unused bits, which a lenient decoder ignores.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet[alphabet.index(signature[-1]) ^ 1]
        return f"{header}.{payload}.{signature[:-1]}{last}"
    if case == "two-segments":
        return f"{header}.{payload}"
    if case == "four-segments":
        return f"{token}.{signature}"
    if case == "jwe-shaped":
        return f"{header}..{payload}.{signature}.{signature}"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "padded-signature",
        "unused-bits",
        "two-segments",
        "four-segments",
        "jwe-shaped",
    ],
)
def test_reencoded_token_rejected(client: FlaskClient, alice: int, case: str) -> None:
    token = login(client)["access_token"]

    response = client.get(ME, headers=bearer(reencode(token, case)))

    assert_rejected(response, MALFORMED)


def test_standard_base64_alphabet_rejected(
    client: FlaskClient, alice: int, now: int
) -> None:
    # About three in four signatures contain "-" or "_"; try jti values in turn
    # until one does.
    for number in range(100):
        token = forge(claims_for(alice, now, jti=f"{number:032x}"))
        if "-" in token.rsplit(".", 1)[1] or "_" in token.rsplit(".", 1)[1]:
            break
    assert_accepted(client.get(ME, headers=bearer(token)), alice)

    response = client.get(ME, headers=bearer(reencode(token, "standard-alphabet")))

    assert_rejected(response, MALFORMED)


def test_padding_inside_token_is_malformed_header(
    client: FlaskClient, alice: int
) -> None:
    """RFC 6750's b64token allows "=" only at the end, so this never gets decoded."""
    token = login(client)["access_token"]

    response = client.get(ME, headers=bearer(reencode(token, "padded-payload")))

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer error="invalid_request"'
    )


def test_signature_of_another_token_rejected(client: FlaskClient, alice: int) -> None:
    first = login(client)["access_token"]
    second = login(client)["access_token"]
    header, payload, _ = first.split(".")

    response = client.get(
        ME, headers=bearer(f"{header}.{payload}.{second.rsplit('.', 1)[1]}")
    )

    assert_rejected(response, BAD_SIGNATURE)


# ---------------------------------------------------------------------------
# Keys named by the header
# ---------------------------------------------------------------------------


class KeyServer:
    """An HTTP server on 127.0.0.1 that counts requests, to prove none is made."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    yield server
    server.close()


ATTACKER_KEY = b"attacker-chosen-secret-that-is-long-enough-0123456789"


def header_with_key(case: str, server_url: str) -> tuple[dict[str, Any], bytes]:
    """Return a header that names or carries a key, and the key it names."""
    base = {"alg": "HS256", "typ": "at+jwt"}
    if case == "jwk":
        jwk = {"kty": "oct", "k": b64url(ATTACKER_KEY)}
        return {**base, "jwk": jwk}, ATTACKER_KEY
    if case == "jku":
        return {**base, "jku": f"{server_url}/jwks.json"}, ATTACKER_KEY
    if case == "x5u":
        return {**base, "x5u": f"{server_url}/cert.pem"}, ATTACKER_KEY
    if case == "x5c":
        return {**base, "x5c": [b64url(b"not a certificate")]}, ATTACKER_KEY
    if case == "kid-path":
        # The classic trick: a kid that a file-based key lookup resolves to an
        # empty file, whose content is the empty key.
        return {**base, "kid": "../../../../../../dev/null"}, b""
    if case == "kid-sql":
        return {**base, "kid": "x' UNION SELECT 'attacker"}, b"attacker"
    if case == "kid-url":
        return {**base, "kid": f"{server_url}/key"}, ATTACKER_KEY
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["jwk", "jku", "x5u", "x5c", "kid-path", "kid-sql", "kid-url"]
)
def test_header_supplied_key_rejected(
    client: FlaskClient, alice: int, now: int, key_server: KeyServer, case: str
) -> None:
    header, key = header_with_key(case, key_server.url)
    token = forge(claims_for(alice, now), header=header, key=key)

    response = client.get(ME, headers=bearer(token))

    assert_rejected(response)
    # Nothing was fetched from the URLs the header names.
    assert key_server.requests == []


# ---------------------------------------------------------------------------
# Time claims at their boundaries
# ---------------------------------------------------------------------------

#: (leeway, claim changes relative to now, expected description or None for 200)
TIME_CASES = [
    (0, {"exp": 0}, "The access token expired."),
    (0, {"exp": 1}, None),
    (0, {"nbf": 1}, "The access token is not valid yet."),
    (0, {"nbf": 0}, None),
    (0, {"iat": 1, "nbf": 0}, "The access token was issued in the future."),
    (0, {"iat": 0}, None),
    (30, {"exp": -30}, "The access token expired."),
    (30, {"exp": -29}, None),
    (30, {"nbf": 30}, None),
    (30, {"nbf": 31}, "The access token is not valid yet."),
    (30, {"iat": 30, "nbf": 0}, None),
    (30, {"iat": 31, "nbf": 0}, "The access token was issued in the future."),
]


@pytest.mark.parametrize(
    ("config_overrides", "offsets", "description"),
    [
        ({"REFRESH_LEEWAY": leeway}, offsets, description)
        for leeway, offsets, description in TIME_CASES
    ],
    ids=[
        f"leeway{leeway}-"
        + "-".join(f"{name}{offset:+d}" for name, offset in offsets.items())
        for leeway, offsets, _ in TIME_CASES
    ],
)
def test_time_claim_boundary(
    client: FlaskClient,
    alice: int,
    now: int,
    offsets: dict[str, int],
    description: str | None,
) -> None:
    changes = {name: now + offset for name, offset in offsets.items()}
    token = forge(claims_for(alice, now, **changes))

    response = client.get(ME, headers=bearer(token))

    if description is None:
        assert_accepted(response, alice)
    else:
        assert_rejected(response, description)


def test_issued_token_expires_at_exact_second(
    client: FlaskClient, alice: int, clock: FakeClock, now: int
) -> None:
    access = login(client)["access_token"]

    clock.advance(899)
    before = client.get(ME, headers=bearer(access))
    clock.advance(1)
    at_expiry = client.get(ME, headers=bearer(access))

    assert_accepted(before, alice)
    assert_rejected(at_expiry, "The access token expired.")


# ---------------------------------------------------------------------------
# Claims of the wrong JSON type in a correctly signed token
# ---------------------------------------------------------------------------

NUMBER = "The {} claim must be a number of seconds."
STRING = "The {} claim must be a non-empty string."


def raw_token(claims_json: str) -> str:
    """Sign a payload given as JSON text, for values json.dumps cannot write."""
    header = segment({"alg": "HS256", "typ": "at+jwt"})
    signing_input = f"{header}.{b64url(claims_json.encode())}"
    return f"{signing_input}.{hs256(signing_input, SECRET_KEY.encode())}"


@pytest.mark.parametrize(
    ("changes", "description"),
    [
        ({"exp": "4102444800"}, NUMBER.format("exp")),
        ({"exp": [4102444800]}, NUMBER.format("exp")),
        ({"exp": {"at": 4102444800}}, NUMBER.format("exp")),
        ({"exp": None}, "The access token has no exp claim."),
        ({"exp": False}, NUMBER.format("exp")),
        ({"nbf": "0"}, NUMBER.format("nbf")),
        ({"iat": [0]}, NUMBER.format("iat")),
        ({"sub": 1.5}, STRING.format("sub")),
        ({"sub": None}, "The access token has no sub claim."),
        ({"sub": ""}, STRING.format("sub")),
        ({"sub": ["1"]}, STRING.format("sub")),
        ({"sid": 5}, STRING.format("sid")),
        ({"sid": ""}, STRING.format("sid")),
        ({"jti": 7}, STRING.format("jti")),
        ({"fresh": 1}, "The fresh claim must be a boolean."),
        ({"fresh": None}, "The access token has no fresh claim."),
        ({"type": None}, "The access token has no type claim."),
        ({"type": ["access"]}, "The token is not an access token."),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else "",
)
def test_claim_of_wrong_type_rejected(
    client: FlaskClient,
    alice: int,
    now: int,
    changes: dict[str, Any],
    description: str,
) -> None:
    token = forge(claims_for(alice, now, **changes))

    response = client.get(ME, headers=bearer(token))

    assert_rejected(response, description)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_exp_rejected(
    client: FlaskClient, alice: int, now: int, literal: str
) -> None:
    claims = json.dumps(claims_for(alice, now, exp=0)).replace(
        '"exp": 0', f'"exp": {literal}'
    )

    response = client.get(ME, headers=bearer(raw_token(claims)))

    assert_rejected(response, NUMBER.format("exp"))


def test_huge_integer_exp_accepted_as_a_number(
    client: FlaskClient, alice: int, now: int
) -> None:
    """A very large exp is a valid NumericDate, far in the future; it must not crash."""
    claims = json.dumps(claims_for(alice, now, exp=0)).replace(
        '"exp": 0', '"exp": ' + "9" * 400
    )

    response = client.get(ME, headers=bearer(raw_token(claims)))

    assert_accepted(response, alice)


# ---------------------------------------------------------------------------
# Refresh and access tokens swapped
# ---------------------------------------------------------------------------


def test_refresh_token_as_bearer_changes_nothing(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    tokens = login(client)

    response = client.get("/auth/sessions", headers=bearer(tokens["refresh_token"]))

    assert_rejected(response, MALFORMED)
    (row,) = token_rows(app)
    assert row.used_at is None
    assert family_rows(app)[0].revoked_at is None
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_access_token_at_refresh_changes_nothing(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    tokens = login(client)

    response = refresh(client, tokens["access_token"])

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token is invalid.",
    }
    assert response.headers["Cache-Control"] == "no-store"
    (row,) = token_rows(app)
    assert row.used_at is None
    assert family_rows(app)[0].revoked_at is None


def test_access_token_at_logout_revokes_nothing(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    tokens = login(client)

    response = client.post(
        "/auth/logout", json={"refresh_token": tokens["access_token"]}
    )

    assert response.status_code == 204
    assert family_rows(app)[0].revoked_at is None
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_forged_access_token_at_revoke_revokes_nothing(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    tokens = login(client)
    _, payload, _ = tokens["access_token"].split(".")
    forged = forge(
        json.loads(base64.urlsafe_b64decode(payload + "==")), key=ATTACKER_KEY
    )

    response = client.post(
        "/auth/revoke", data={"token": forged, "token_type_hint": "access_token"}
    )

    assert response.status_code == 200
    assert family_rows(app)[0].revoked_at is None


# ---------------------------------------------------------------------------
# Issuer and audience
# ---------------------------------------------------------------------------

ISSUED_HERE = {"REFRESH_ISSUER": ISSUER, "REFRESH_AUDIENCE": AUDIENCE}


@pytest.mark.parametrize("config_overrides", [ISSUED_HERE])
@pytest.mark.parametrize(
    ("changes", "description"),
    [
        ({}, None),
        ({"aud": [AUDIENCE, "https://other.example"]}, None),
        ({"iss": ISSUER + ".evil"}, "The access token comes from another issuer."),
        ({"iss": ISSUER + "/"}, "The access token comes from another issuer."),
        ({"iss": ISSUER[:-1]}, "The access token comes from another issuer."),
        ({"iss": ISSUER.upper()}, "The access token comes from another issuer."),
        ({"iss": " " + ISSUER}, "The access token comes from another issuer."),
        ({"iss": [ISSUER]}, "The access token comes from another issuer."),
        ({"iss": ...}, "The access token has no iss claim."),
        (
            {"aud": AUDIENCE + ".evil"},
            "The access token is not meant for this audience.",
        ),
        ({"aud": AUDIENCE[:-1]}, "The access token is not meant for this audience."),
        (
            {"aud": ["https://other.example"]},
            "The access token is not meant for this audience.",
        ),
        ({"aud": []}, "The access token has no aud claim."),
        ({"aud": ...}, "The access token has no aud claim."),
    ],
    ids=lambda value: json.dumps(value, default=str) if isinstance(value, dict) else "",
)
def test_issuer_and_audience_checked(
    client: FlaskClient,
    alice: int,
    now: int,
    changes: dict[str, Any],
    description: str | None,
) -> None:
    claims = claims_for(alice, now, **{"iss": ISSUER, "aud": AUDIENCE, **changes})

    response = client.get(ME, headers=bearer(forge(claims)))

    if description is None:
        assert_accepted(response, alice)
    else:
        assert_rejected(response, description)


@pytest.mark.parametrize("config_overrides", [ISSUED_HERE])
def test_issued_token_names_issuer_and_audience(
    client: FlaskClient, alice: int
) -> None:
    access = login(client)["access_token"]

    claims = jwt.decode(
        access, SECRET_KEY, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
    )

    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert_accepted(client.get(ME, headers=bearer(access)), alice)
