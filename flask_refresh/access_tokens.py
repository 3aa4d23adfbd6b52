"""Signing and verifying access tokens (JWTs, RFC 7519) with PyJWT.

Verification follows RFC 8725. The algorithm list is pinned to the one algorithm
of the key that the token names, and keys carried in the token header are
rejected. The token type is checked in the header and in a claim, and every claim
the library relies on must be present with the right JSON type. PyJWT checks the
signature, issuer and audience.
The time claims are checked here against the extension's clock, so that tests can
move time instead of sleeping.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from .errors import InvalidToken
from .keys import SigningKey
from .settings import Settings

#: RFC 9068 section 2.1: the ``typ`` header of a JWT access token.
ACCESS_TOKEN_TYP = "at+jwt"
#: Value of the ``type`` claim; a refresh token is opaque and never a JWT.
ACCESS_TOKEN_TYPE = "access"

REQUIRED_CLAIMS = ("sub", "iat", "nbf", "exp", "jti", "type", "fresh", "sid")
#: Claims that flask-refresh sets, which additional claims must not replace.
RESERVED_CLAIMS = frozenset((*REQUIRED_CLAIMS, "iss", "aud"))

#: Header parameters that carry a key or point to one (RFC 7515 section 4.1). The
#: verifying key always comes from the configured key set, so a token carrying any
#: of them was not issued here.
KEY_HEADER_PARAMETERS = ("jku", "jwk", "x5u", "x5c")

#: RFC 7515 section 7.1: three base64url segments without padding. PyJWT also
#: decodes a padded signature, so without this check one signature would have
#: several encodings. An ES256 signature (r, s) also has a second valid value,
#: (r, n - s), which is harmless because nothing here keys on the token string.
#: The signature may be empty so that an unsigned token is reported as using an
#: algorithm that is not allowed.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


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
    additional_claims: Mapping[str, Any] | None = None,
) -> IssuedAccessToken:
    """Sign an access token for ``subject`` in family ``session_id``.

    :param additional_claims: claims from the app's ``additional_claims_loader``,
        added to the token.
    :raises ValueError: ``additional_claims`` names a claim that flask-refresh sets.
    """
    issued_at = int(now.timestamp())
    lifetime = int(settings.access_token_lifetime.total_seconds())
    jti = jti or new_jti()

    claims: dict[str, Any] = dict(additional_claims or {})
    check_additional_claims(claims)
    claims |= {
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
    if isinstance(settings.audience, str):
        claims["aud"] = settings.audience
    elif settings.audience is not None:
        claims["aud"] = list(settings.audience)

    signer = settings.signing_keys.signer
    headers = {"typ": ACCESS_TOKEN_TYP}
    if signer.kid is not None:
        headers["kid"] = signer.kid

    token = signer.codec.encode(
        claims, signer.signing_key, algorithm=signer.algorithm, headers=headers
    )
    return IssuedAccessToken(token=token, jti=jti, expires_in=lifetime)


def check_additional_claims(claims: Mapping[str, Any]) -> None:
    """Check claims returned by an ``additional_claims_loader``.

    :raises ValueError: a claim is reserved or a name is not a string.
    """
    names = [name for name in claims if not isinstance(name, str)]
    if names:
        raise ValueError(f"Additional claim names must be strings, got {names!r}.")

    reserved = sorted(RESERVED_CLAIMS.intersection(claims))
    if reserved:
        raise ValueError(
            f"The additional_claims_loader returned reserved claims {reserved};"
            " flask-refresh sets these itself. Rename them."
        )


def decode_access_token(
    settings: Settings, token: str, *, now: datetime
) -> dict[str, Any]:
    """Verify ``token`` and return its claims.

    :raises InvalidToken: the token is malformed, forged, of the wrong type, expired,
        not yet valid, or a claim is missing or of the wrong JSON type.
    """
    if _COMPACT_JWS.fullmatch(token) is None:
        raise InvalidToken("The access token is malformed.")

    key = _verifying_key(settings, token)
    try:
        decoded = key.codec.decode_complete(
            token,
            key.verifying_key,
            algorithms=[key.algorithm],
            audience=_audience_argument(settings),
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
    if not header.keys().isdisjoint(KEY_HEADER_PARAMETERS):
        raise InvalidToken(
            "The access token header carries a key, which is not accepted."
        )
    if header.get("typ") != ACCESS_TOKEN_TYP or claims.get("type") != ACCESS_TOKEN_TYPE:
        raise InvalidToken("The token is not an access token.")

    _check_claim_types(claims)
    _check_times(settings, claims, now)
    return claims


def _verifying_key(settings: Settings, token: str) -> SigningKey:
    """Return the configured key that the token's ``kid`` header names.

    :raises InvalidToken: the header is malformed, or names no configured key.
    """
    key_set = settings.signing_keys
    if not key_set.uses_kid:
        return key_set.signer

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("The access token is malformed.") from None

    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("The access token header names no key (kid).")

    key = key_set.find(kid)
    if key is None:
        raise InvalidToken("The access token is signed with an unknown key.")

    return key


def _audience_argument(settings: Settings) -> str | list[str] | None:
    if settings.audience is None or isinstance(settings.audience, str):
        return settings.audience

    return list(settings.audience)


def _check_claim_types(claims: dict[str, Any]) -> None:
    for name in ("sub", "jti", "sid"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise InvalidToken(f"The {name} claim must be a non-empty string.")

    if not isinstance(claims["fresh"], bool):
        raise InvalidToken("The fresh claim must be a boolean.")

    for name in ("iat", "nbf", "exp"):
        value = claims[name]
        # bool is a subclass of int, and JSON true is not a NumericDate. Only
        # floats can be infinite or NaN; math.isfinite would raise OverflowError
        # for an int above the float range, which JSON can spell.
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not math.isfinite(value))
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
