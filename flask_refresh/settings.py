"""Configuration: every ``REFRESH_*`` key, its default, and the parser.

The app config is read once, at :meth:`RefreshAuth.init_app`, into a frozen
:class:`Settings`. A wrong value stops start-up with a message that names the key,
because an auth setting that is silently ignored is a security bug.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

PREFIX = "REFRESH_"

#: Minimum key length in bytes for each HMAC algorithm. RFC 7518 section 3.2
#: requires a key at least as long as the hash output.
HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class ConfigError(RuntimeError):
    """A ``REFRESH_*`` config value is missing, misspelt or invalid."""


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
    audience: str | None
    url_prefix: str
    login_field: str
    check_revoked: bool
    realm: str | None
    max_token_length: int
    max_password_length: int
    revocation_cache_ttl: timedelta
    redis_url: str | None
    purge_after: timedelta


def _duration(key: str, value: object, *, allow_zero: bool = False) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise ConfigError(
            f"{key} must be a number of seconds or a timedelta, got {value!r}."
        )

    if isinstance(value, timedelta):
        duration = value
    else:
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number of seconds.")
        duration = timedelta(seconds=value)

    if duration < timedelta(0) or (duration == timedelta(0) and not allow_zero):
        limit = "zero or more" if allow_zero else "more than zero"
        raise ConfigError(f"{key} must be {limit} seconds, got {value!r}.")

    return duration


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be True or False, got {value!r}.")

    return value


def _optional_str(key: str, value: object) -> str | None:
    if value is None:
        return None

    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string or None, got {value!r}.")

    return value


def _str(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}.")

    return value


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}.")

    return value


def _algorithm(key: str, value: object) -> str:
    if value not in HMAC_KEY_BYTES:
        allowed = ", ".join(HMAC_KEY_BYTES)
        raise ConfigError(f"{key} must be one of {allowed}, got {value!r}.")

    return str(value)


def _url_prefix(key: str, value: object) -> str:
    prefix = _str(key, value)
    if not prefix.startswith("/"):
        raise ConfigError(f"{key} must start with '/', got {value!r}.")

    return prefix.rstrip("/") or "/"


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
        return _duration(key, get(key), allow_zero=allow_zero)

    algorithm = _algorithm("REFRESH_ALGORITHM", get("REFRESH_ALGORITHM"))

    return Settings(
        secret_key=_secret_key(get("REFRESH_SECRET_KEY"), algorithm),
        algorithm=algorithm,
        access_token_lifetime=duration("REFRESH_ACCESS_TOKEN_LIFETIME"),
        idle_timeout=duration("REFRESH_IDLE_TIMEOUT"),
        session_lifetime=duration("REFRESH_SESSION_LIFETIME"),
        reuse_grace=duration("REFRESH_REUSE_GRACE", allow_zero=True),
        reuse_report_only=_bool(
            "REFRESH_REUSE_REPORT_ONLY", get("REFRESH_REUSE_REPORT_ONLY")
        ),
        leeway=duration("REFRESH_LEEWAY", allow_zero=True),
        issuer=_optional_str("REFRESH_ISSUER", get("REFRESH_ISSUER")),
        audience=_optional_str("REFRESH_AUDIENCE", get("REFRESH_AUDIENCE")),
        url_prefix=_url_prefix("REFRESH_URL_PREFIX", get("REFRESH_URL_PREFIX")),
        login_field=_str("REFRESH_LOGIN_FIELD", get("REFRESH_LOGIN_FIELD")),
        check_revoked=_bool("REFRESH_CHECK_REVOKED", get("REFRESH_CHECK_REVOKED")),
        realm=_optional_str("REFRESH_REALM", get("REFRESH_REALM")),
        max_token_length=_positive_int(
            "REFRESH_MAX_TOKEN_LENGTH", get("REFRESH_MAX_TOKEN_LENGTH")
        ),
        max_password_length=_positive_int(
            "REFRESH_MAX_PASSWORD_LENGTH", get("REFRESH_MAX_PASSWORD_LENGTH")
        ),
        revocation_cache_ttl=duration("REFRESH_REVOCATION_CACHE_TTL", allow_zero=True),
        redis_url=_optional_str("REFRESH_REDIS_URL", get("REFRESH_REDIS_URL")),
        purge_after=duration("REFRESH_PURGE_AFTER", allow_zero=True),
    )
