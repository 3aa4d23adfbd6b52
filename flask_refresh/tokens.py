"""Opaque refresh token values: generation, digests and successor derivation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

#: 32 random bytes, 256 bits of entropy, URL-safe base64 without padding.
TOKEN_BYTES = 32
TOKEN_LENGTH = 43
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")

_SUCCESSOR_LABEL = b"flask-refresh successor key v1"


def generate_refresh_token() -> str:
    """Return a new random refresh token for the first token of a family."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_well_formed(token: str) -> bool:
    """Return whether ``token`` has the shape of a token this library issues.

    Anything else is rejected before it reaches the database.
    """
    return _TOKEN_PATTERN.fullmatch(token) is not None


def hash_refresh_token(token: str) -> str:
    """Return the hex SHA-256 digest stored in place of ``token``.

    A plain digest is enough because tokens carry 256 random bits: there is no
    dictionary to try, so a leaked table reveals no usable token.
    """
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def successor_key(secret_key: bytes) -> bytes:
    """Derive the key for :func:`derive_successor` from the app's secret key.

    A separate key keeps the two uses of the secret (signing access tokens and
    deriving refresh tokens) from ever producing the same MAC for the same input.
    """
    return hmac.new(secret_key, _SUCCESSOR_LABEL, hashlib.sha256).digest()


def derive_successor(key: bytes, token: str) -> str:
    """Return the refresh token that rotation issues in exchange for ``token``.

    The successor is an HMAC of its predecessor, so a client that retries a refresh
    within the grace interval gets the very same successor, recomputed instead of
    stored. Without the server key it is as unpredictable as a random token.
    """
    digest = hmac.new(key, token.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_id() -> str:
    """Return a 32-character hex row id that sorts by creation time.

    48 bits of milliseconds followed by 80 random bits: inserts land at the end of
    the primary key index instead of at random pages, which matters for InnoDB's
    clustered index.
    """
    milliseconds = time.time_ns() // 1_000_000
    return f"{milliseconds:012x}{secrets.token_hex(10)}"
