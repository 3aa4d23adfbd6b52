"""Configuration: every ``REFRESH_*`` key, its default, and the parser.

The app config is read once, at :meth:`RefreshAuth.init_app`, into a frozen
:class:`Settings`. A wrong value stops start-up with a message that names the key,
because an auth setting that is silently ignored is a security bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .config_values import (
    HMAC_KEY_BYTES,
    parse_algorithm,
    parse_audience,
    parse_bool,
    parse_duration,
    parse_http_token,
    parse_locations,
    parse_optional_str,
    parse_positive_int,
    parse_rate_limit,
    parse_samesite,
    parse_str,
    parse_url_prefix,
)
from .config_values import (
    ConfigError as ConfigError,
)
from .cookie_settings import check_cookie_settings

if TYPE_CHECKING:
    from .keys import KeySet

PREFIX = "REFRESH_"

#: Places that ``@jwt_required`` may read an access token from, and places that the
#: token routes may read a refresh token from. "headers" and "body" are the
#: defaults, the places OAuth uses.
ACCESS_TOKEN_LOCATIONS = ("headers", "cookies", "query_string")
REFRESH_TOKEN_LOCATIONS = ("body", "cookies")


@dataclass(frozen=True)
class Settings:
    """Parsed ``REFRESH_*`` configuration of one app."""

    secret_key: bytes
    algorithm: str
    access_token_lifetime: timedelta
    idle_timeout: timedelta
    session_lifetime: timedelta
    reuse_grace: timedelta
    reuse_report_only: bool
    leeway: timedelta
    issuer: str | None
    #: One audience, or several: a token is accepted when its ``aud`` names one.
    audience: str | tuple[str, ...] | None
    url_prefix: str
    login_field: str
    check_revoked: bool
    realm: str | None
    max_token_length: int
    max_password_length: int
    revocation_cache_ttl: timedelta
    redis_url: str | None
    purge_after: timedelta
    #: Failed logins allowed per account and per client address, in Flask-Limiter's
    #: rate limit syntax; None turns that limit off.
    login_limit_per_account: str | None
    login_limit_per_address: str | None
    #: The Flask-Limiter storage URI of the failed login counts.
    login_limit_storage_uri: str
    #: Maximum body size, in bytes, that the token routes read.
    max_content_length: int
    serve_openapi: bool
    #: The keys that sign and verify access tokens: ``REFRESH_SIGNING_KEYS``, or
    #: ``REFRESH_SECRET_KEY`` with ``REFRESH_ALGORITHM`` when that is unset.
    signing_keys: KeySet
    jwks_max_age: timedelta
    header_name: str
    #: The scheme before the token in ``header_name``; empty for the bare token.
    header_type: str
    #: Places searched for an access token, in this order; the first place that
    #: carries one is used.
    access_token_location: tuple[str, ...]
    #: The same for refresh tokens at the refresh and logout routes.
    refresh_token_location: tuple[str, ...]
    cookie_domain: str | None
    cookie_secure: bool
    cookie_samesite: str
    access_cookie_name: str
    access_cookie_path: str
    refresh_cookie_name: str
    csrf_cookie_name: str
    csrf_header_name: str


#: Every key with its default. Durations accept seconds or a timedelta, so values
#: read from environment variables (``FLASK_REFRESH_...``) work unchanged.
DEFAULTS: dict[str, object] = {
    "REFRESH_SECRET_KEY": None,
    "REFRESH_ALGORITHM": "HS256",
    "REFRESH_ACCESS_TOKEN_LIFETIME": timedelta(minutes=15),
    "REFRESH_IDLE_TIMEOUT": timedelta(days=14),
    "REFRESH_SESSION_LIFETIME": timedelta(days=30),
    "REFRESH_REUSE_GRACE": timedelta(seconds=10),
    "REFRESH_REUSE_REPORT_ONLY": False,
    "REFRESH_LEEWAY": timedelta(0),
    "REFRESH_ISSUER": None,
    "REFRESH_AUDIENCE": None,
    "REFRESH_URL_PREFIX": "/auth",
    "REFRESH_LOGIN_FIELD": "username",
    "REFRESH_CHECK_REVOKED": False,
    "REFRESH_REALM": None,
    "REFRESH_MAX_TOKEN_LENGTH": 4096,
    "REFRESH_MAX_PASSWORD_LENGTH": 1024,
    "REFRESH_REVOCATION_CACHE_TTL": timedelta(0),
    "REFRESH_REDIS_URL": None,
    "REFRESH_PURGE_AFTER": timedelta(days=14),
    "REFRESH_LOGIN_LIMIT_PER_ACCOUNT": "10 per minute; 100 per day",
    "REFRESH_LOGIN_LIMIT_PER_ADDRESS": "30 per minute; 1000 per day",
    "REFRESH_LOGIN_LIMIT_STORAGE_URI": "memory://",
    "REFRESH_MAX_CONTENT_LENGTH": 16 * 1024,
    "REFRESH_SERVE_OPENAPI": False,
    "REFRESH_SIGNING_KEYS": None,
    "REFRESH_JWKS_MAX_AGE": timedelta(minutes=5),
    "REFRESH_HEADER_NAME": "Authorization",
    "REFRESH_HEADER_TYPE": "Bearer",
    "REFRESH_ACCESS_TOKEN_LOCATION": "headers",
    "REFRESH_REFRESH_TOKEN_LOCATION": "body",
    "REFRESH_COOKIE_DOMAIN": None,
    "REFRESH_COOKIE_SECURE": True,
    "REFRESH_COOKIE_SAMESITE": "Strict",
    "REFRESH_ACCESS_COOKIE_NAME": "access_token",
    "REFRESH_ACCESS_COOKIE_PATH": "/",
    "REFRESH_REFRESH_COOKIE_NAME": "refresh_token",
    "REFRESH_CSRF_COOKIE_NAME": "csrf_token",
    "REFRESH_CSRF_HEADER_NAME": "X-CSRF-Token",
}


def _check_known_keys(config: Mapping[str, Any]) -> None:
    for key in config:
        if not key.startswith(PREFIX) or key in DEFAULTS:
            continue

        close = difflib.get_close_matches(key, DEFAULTS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"Unknown config key {key}: keys starting with {PREFIX} are reserved"
            f" for flask-refresh.{hint}"
        )


def _secret_key(value: object, algorithm: str) -> bytes:
    key = "REFRESH_SECRET_KEY"
    minimum = HMAC_KEY_BYTES[algorithm]
    if value is None:
        raise ConfigError(
            f"{key} is not set. Set it to a random secret of at least {minimum}"
            " bytes, for example the output of"
            " `python -c 'import secrets; print(secrets.token_urlsafe(64))'`."
        )

    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise ConfigError(f"{key} must be a str or bytes, got {type(value).__name__}.")

    from .keys import is_encoded_key

    # Checked also with REFRESH_SIGNING_KEYS set, because the secret derives
    # rotated refresh tokens, which a public value would let anyone compute.
    if is_encoded_key(value):
        raise ConfigError(
            f"{key} is an encoded public or private key (PEM, DER, OpenSSH or JWK),"
            f" not a secret. Set it to a random secret of at least {minimum} bytes,"
            " and list RSA, EC and Ed25519 keys in REFRESH_SIGNING_KEYS."
        )
    if len(value) < minimum:
        raise ConfigError(
            f"{key} is {len(value)} bytes long, but {algorithm} needs at least"
            f" {minimum} bytes (RFC 7518 section 3.2)."
        )

    return value


def load_settings(config: Mapping[str, Any]) -> Settings:
    """Parse and validate the ``REFRESH_*`` keys of an app config.

    :raises ConfigError: a key is unknown, missing or has an invalid value.
    """
    _check_known_keys(config)

    def get(key: str) -> object:
        return config.get(key, DEFAULTS[key])

    def duration(key: str, *, allow_zero: bool = False) -> timedelta:
        return parse_duration(key, get(key), allow_zero=allow_zero)

    algorithm = parse_algorithm("REFRESH_ALGORITHM", get("REFRESH_ALGORITHM"))
    secret_key = _secret_key(get("REFRESH_SECRET_KEY"), algorithm)
    cookie_secure = parse_bool("REFRESH_COOKIE_SECURE", get("REFRESH_COOKIE_SECURE"))

    settings = Settings(
        secret_key=secret_key,
        algorithm=algorithm,
        access_token_lifetime=duration("REFRESH_ACCESS_TOKEN_LIFETIME"),
        idle_timeout=duration("REFRESH_IDLE_TIMEOUT"),
        session_lifetime=duration("REFRESH_SESSION_LIFETIME"),
        reuse_grace=duration("REFRESH_REUSE_GRACE", allow_zero=True),
        reuse_report_only=parse_bool(
            "REFRESH_REUSE_REPORT_ONLY", get("REFRESH_REUSE_REPORT_ONLY")
        ),
        leeway=duration("REFRESH_LEEWAY", allow_zero=True),
        issuer=parse_optional_str("REFRESH_ISSUER", get("REFRESH_ISSUER")),
        audience=parse_audience("REFRESH_AUDIENCE", get("REFRESH_AUDIENCE")),
        url_prefix=parse_url_prefix("REFRESH_URL_PREFIX", get("REFRESH_URL_PREFIX")),
        login_field=parse_str("REFRESH_LOGIN_FIELD", get("REFRESH_LOGIN_FIELD")),
        check_revoked=parse_bool("REFRESH_CHECK_REVOKED", get("REFRESH_CHECK_REVOKED")),
        realm=parse_optional_str("REFRESH_REALM", get("REFRESH_REALM")),
        max_token_length=parse_positive_int(
            "REFRESH_MAX_TOKEN_LENGTH", get("REFRESH_MAX_TOKEN_LENGTH")
        ),
        max_password_length=parse_positive_int(
            "REFRESH_MAX_PASSWORD_LENGTH", get("REFRESH_MAX_PASSWORD_LENGTH")
        ),
        revocation_cache_ttl=duration("REFRESH_REVOCATION_CACHE_TTL", allow_zero=True),
        redis_url=parse_optional_str("REFRESH_REDIS_URL", get("REFRESH_REDIS_URL")),
        purge_after=duration("REFRESH_PURGE_AFTER", allow_zero=True),
        login_limit_per_account=parse_rate_limit(
            "REFRESH_LOGIN_LIMIT_PER_ACCOUNT", get("REFRESH_LOGIN_LIMIT_PER_ACCOUNT")
        ),
        login_limit_per_address=parse_rate_limit(
            "REFRESH_LOGIN_LIMIT_PER_ADDRESS", get("REFRESH_LOGIN_LIMIT_PER_ADDRESS")
        ),
        login_limit_storage_uri=parse_str(
            "REFRESH_LOGIN_LIMIT_STORAGE_URI", get("REFRESH_LOGIN_LIMIT_STORAGE_URI")
        ),
        max_content_length=parse_positive_int(
            "REFRESH_MAX_CONTENT_LENGTH", get("REFRESH_MAX_CONTENT_LENGTH")
        ),
        serve_openapi=parse_bool("REFRESH_SERVE_OPENAPI", get("REFRESH_SERVE_OPENAPI")),
        signing_keys=_signing_keys(config, secret_key, algorithm),
        jwks_max_age=duration("REFRESH_JWKS_MAX_AGE", allow_zero=True),
        header_name=parse_http_token("REFRESH_HEADER_NAME", get("REFRESH_HEADER_NAME")),
        header_type=parse_http_token(
            "REFRESH_HEADER_TYPE", get("REFRESH_HEADER_TYPE"), allow_empty=True
        ),
        access_token_location=parse_locations(
            "REFRESH_ACCESS_TOKEN_LOCATION",
            get("REFRESH_ACCESS_TOKEN_LOCATION"),
            ACCESS_TOKEN_LOCATIONS,
        ),
        refresh_token_location=parse_locations(
            "REFRESH_REFRESH_TOKEN_LOCATION",
            get("REFRESH_REFRESH_TOKEN_LOCATION"),
            REFRESH_TOKEN_LOCATIONS,
        ),
        cookie_domain=parse_optional_str(
            "REFRESH_COOKIE_DOMAIN", get("REFRESH_COOKIE_DOMAIN")
        ),
        cookie_secure=cookie_secure,
        cookie_samesite=parse_samesite(
            "REFRESH_COOKIE_SAMESITE",
            get("REFRESH_COOKIE_SAMESITE"),
            secure=cookie_secure,
        ),
        access_cookie_name=_cookie_name(config, "REFRESH_ACCESS_COOKIE_NAME"),
        access_cookie_path=parse_url_prefix(
            "REFRESH_ACCESS_COOKIE_PATH", get("REFRESH_ACCESS_COOKIE_PATH")
        ),
        refresh_cookie_name=_cookie_name(config, "REFRESH_REFRESH_COOKIE_NAME"),
        csrf_cookie_name=_cookie_name(config, "REFRESH_CSRF_COOKIE_NAME"),
        csrf_header_name=parse_http_token(
            "REFRESH_CSRF_HEADER_NAME", get("REFRESH_CSRF_HEADER_NAME")
        ),
    )
    check_cookie_settings(settings)
    return settings


_COOKIE_NAME_KEYS = (
    "REFRESH_ACCESS_COOKIE_NAME",
    "REFRESH_REFRESH_COOKIE_NAME",
    "REFRESH_CSRF_COOKIE_NAME",
)


def _cookie_name(config: Mapping[str, Any], key: str) -> str:
    """Check one cookie name, and that no other flask-refresh cookie shares it."""
    name = parse_http_token(key, config.get(key, DEFAULTS[key]))
    for other in _COOKIE_NAME_KEYS:
        if other != key and config.get(other, DEFAULTS[other]) == name:
            raise ConfigError(f"{key} and {other} are both {name!r}; use two names.")

    return name


def _signing_keys(
    config: Mapping[str, Any], secret_key: bytes, algorithm: str
) -> KeySet:
    from .keys import load_key_set, single_secret_key_set

    value = config.get("REFRESH_SIGNING_KEYS")
    if value is None:
        return single_secret_key_set(secret_key, algorithm)

    if "REFRESH_ALGORITHM" in config:
        raise ConfigError(
            "REFRESH_ALGORITHM applies only to REFRESH_SECRET_KEY used alone. With"
            " REFRESH_SIGNING_KEYS each key names its algorithm: remove"
            " REFRESH_ALGORITHM."
        )

    return load_key_set(value)
