"""Signing and verifying access tokens (JWTs, RFC 7519) with PyJWT.

Verification follows RFC 8725: the algorithm list is pinned, the token type is
checked in the header and in a claim, and every claim the library relies on must be
present with the right JSON type. PyJWT checks the signature, issuer and audience.
The time claims are checked here against the extension's clock, so that tests can
move time instead of sleeping.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from .errors import InvalidToken
from .settings import Settings

#: RFC 9068 section 2.1: the ``typ`` header of a JWT access token.
ACCESS_TOKEN_TYP = "at+jwt"
#: Value of the ``type`` claim; a refresh token is opaque and never a JWT.
ACCESS_TOKEN_TYPE = "access"

REQUIRED_CLAIMS = ("sub", "iat", "nbf", "exp", "jti", "type", "fresh", "sid")


@dataclass(frozen=True)
class IssuedAccessToken:
    """A signed access token and the values the token response needs."""

    token: str
    jti: str
    expires_in: int


def new_jti() -> str:
    """Return a random JWT id."""
    return uuid.uuid4().hex


def encode_access_token(
    settings: Settings,
    *,
    subject: str,
    session_id: str,
    fresh: bool,
    now: datetime,
    jti: str | None = None,
) -> IssuedAccessToken:
    """Sign an access token for ``subject`` in family ``session_id``."""
    issued_at = int(now.timestamp())
    lifetime = int(settings.access_token_lifetime.total_seconds())
    jti = jti or new_jti()

    claims: dict[str, Any] = {
        "sub": subject,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + lifetime,
        "jti": jti,
        "type": ACCESS_TOKEN_TYPE,
        "fresh": fresh,
        "sid": session_id,
    }
    if settings.issuer is not None:
        claims["iss"] = settings.issuer
    if settings.audience is not None:
        claims["aud"] = settings.audience

    token = jwt.encode(
        claims,
        settings.secret_key,
        algorithm=settings.algorithm,
        headers={"typ": ACCESS_TOKEN_TYP},
    )
    return IssuedAccessToken(token=token, jti=jti, expires_in=lifetime)


def decode_access_token(
    settings: Settings, token: str, *, now: datetime
) -> dict[str, Any]:
    """Verify ``token`` and return its claims.

    :raises InvalidToken: the token is malformed, forged, of the wrong type, expired,
        not yet valid, or a claim is missing or of the wrong JSON type.
    """
    try:
        decoded = jwt.decode_complete(
            token,
            settings.secret_key,
            algorithms=[settings.algorithm],
            audience=settings.audience,
            issuer=settings.issuer,
            options={
                "require": list(REQUIRED_CLAIMS),
                # Checked below against the extension's clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": settings.audience is not None,
                "verify_iss": settings.issuer is not None,
            },
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(_describe(error)) from None

    header: dict[str, Any] = decoded["header"]
    claims: dict[str, Any] = decoded["payload"]
    if header.get("typ") != ACCESS_TOKEN_TYP or claims.get("type") != ACCESS_TOKEN_TYPE:
        raise InvalidToken("The token is not an access token.")

    _check_claim_types(claims)
    _check_times(settings, claims, now)
    return claims


def _check_claim_types(claims: dict[str, Any]) -> None:
    for name in ("sub", "jti", "sid"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise InvalidToken(f"The {name} claim must be a non-empty string.")

    if not isinstance(claims["fresh"], bool):
        raise InvalidToken("The fresh claim must be a boolean.")

    for name in ("iat", "nbf", "exp"):
        value = claims[name]
        # bool is a subclass of int, and JSON true is not a NumericDate.
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidToken(f"The {name} claim must be a number of seconds.")


def _check_times(settings: Settings, claims: dict[str, Any], now: datetime) -> None:
    timestamp = now.timestamp()
    leeway = settings.leeway.total_seconds()

    if claims["exp"] <= timestamp - leeway:
        raise InvalidToken("The access token expired.")
    if claims["nbf"] > timestamp + leeway:
        raise InvalidToken("The access token is not valid yet.")
    if claims["iat"] > timestamp + leeway:
        raise InvalidToken("The access token was issued in the future.")


def _describe(error: jwt.PyJWTError) -> str:
    # PyJWT's messages can echo parts of the token; these fixed texts cannot.
    if isinstance(error, jwt.InvalidSignatureError):
        return "The access token signature is invalid."
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "The access token is signed with an algorithm that is not allowed."
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"The access token has no {error.claim} claim."
    if isinstance(error, jwt.InvalidAudienceError):
        return "The access token is not meant for this audience."
    if isinstance(error, jwt.InvalidIssuerError):
        return "The access token comes from another issuer."
    if isinstance(error, InvalidSubjectError):
        return "The sub claim must be a non-empty string."
    if isinstance(error, InvalidJTIError):
        return "The jti claim must be a non-empty string."

    return "The access token is malformed."
