"""The PyJWT instances that check each configured HMAC secret once."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import bearer, create_user, login, refresh
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

from flask_refresh.jwt_codec import CheckedSecretHMAC, pyjwt_for

SECRET = b"s" * 64
PEM_KEY = b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"


@pytest.fixture
def key_checks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every key that PyJWT's own HMAC key check runs on."""
    checked: list[Any] = []
    original = HMACAlgorithm.prepare_key

    def prepare_key(self: HMACAlgorithm, key: Any) -> bytes:
        checked.append(key)
        return original(self, key)

    monkeypatch.setattr(HMACAlgorithm, "prepare_key", prepare_key)
    return checked


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_tokens_skip_per_token_key_check(
    app: Flask, client: FlaskClient, key_checks: list[Any]
) -> None:
    create_user(app, "alice")
    body = login(client)
    # The instances check the secret when they are built, at the first token.
    key_checks.clear()

    for _ in range(3):
        response = client.get("/api/me", headers=bearer(body["access_token"]))
        assert response.status_code == 200
    refreshed = refresh(client, body["refresh_token"])

    assert refreshed.status_code == 200
    assert key_checks == []


def test_configured_secret_prepared_once(key_checks: list[Any]) -> None:
    algorithm = CheckedSecretHMAC(HMACAlgorithm.SHA256, SECRET)
    assert key_checks == [SECRET]

    assert algorithm.prepare_key(SECRET) == SECRET
    # An equal secret in another bytes object matches too.
    copy = bytes(list(SECRET))
    assert copy is not SECRET
    assert algorithm.prepare_key(copy) == SECRET
    assert key_checks == [SECRET]


def test_other_keys_still_checked(key_checks: list[Any]) -> None:
    algorithm = CheckedSecretHMAC(HMACAlgorithm.SHA256, SECRET)

    assert algorithm.prepare_key(SECRET.decode()) == SECRET
    with pytest.raises(InvalidKeyError):
        algorithm.prepare_key(PEM_KEY)
    assert key_checks == [SECRET, SECRET.decode(), PEM_KEY]


def test_key_like_secret_rejected() -> None:
    with pytest.raises(InvalidKeyError):
        CheckedSecretHMAC(HMACAlgorithm.SHA256, PEM_KEY)


def test_instance_verifies_signature_and_algorithm() -> None:
    instance = pyjwt_for("HS256", SECRET)
    token = jwt.encode({"sub": "1"}, SECRET, algorithm="HS256")
    other = jwt.encode({"sub": "1"}, SECRET, algorithm="HS512")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")

    assert instance.decode(token, SECRET, algorithms=["HS256"]) == {"sub": "1"}
    with pytest.raises(jwt.InvalidSignatureError):
        instance.decode(tampered, SECRET, algorithms=["HS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        instance.decode(token, b"t" * 64, algorithms=["HS256"])
    with pytest.raises(jwt.InvalidAlgorithmError):
        instance.decode(other, SECRET, algorithms=["HS256"])
