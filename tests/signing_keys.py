"""Signing keys for tests of REFRESH_SIGNING_KEYS, made once per test run."""

from __future__ import annotations

import functools
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

#: The asymmetric algorithms flask-refresh signs with.
ASYMMETRIC_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")


def private_key(algorithm: str, name: str = "ours") -> Any:
    """Return a private key for ``algorithm``; another ``name`` gives another key.

    The same arguments return the same key for the whole test run.
    """
    return _new_private_key(algorithm, name)


# functools.cache keys on the arguments as passed, so the default of ``name`` is
# filled in by the wrapper above.
@functools.cache
def _new_private_key(algorithm: str, name: str) -> Any:
    if algorithm in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no private key for {algorithm}")


def hmac_secret(name: str = "ours") -> str:
    """Return a 64-character random secret, long enough for HS512."""
    return _new_hmac_secret(name)


@functools.cache
def _new_hmac_secret(name: str) -> str:
    return secrets.token_hex(32)


def private_pem(key: Any) -> str:
    """Return an unencrypted PKCS#8 PEM of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: Any) -> bytes:
    """Return the SubjectPublicKeyInfo PEM of a private key's public key."""
    public: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public


def public_der(key: Any) -> bytes:
    """Return the SubjectPublicKeyInfo DER of a private key's public key."""
    public: bytes = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public


def key_entry(kid: str, algorithm: str, name: str = "ours") -> dict[str, str]:
    """Return a REFRESH_SIGNING_KEYS entry with a cached key of that algorithm."""
    if algorithm.startswith("HS"):
        return {"kid": kid, "algorithm": algorithm, "key": hmac_secret(name)}

    return {
        "kid": kid,
        "algorithm": algorithm,
        "key": private_pem(private_key(algorithm, name)),
    }
