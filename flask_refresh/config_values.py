"""Parsers of single ``REFRESH_*`` values, each raising :class:`ConfigError`.

Every parser takes the key and the raw value, so that its message names the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import timedelta

from limits import parse_many


class ConfigError(RuntimeError):
    """A ``REFRESH_*`` config value is missing, misspelt or invalid."""


#: Minimum key length in bytes for each HMAC algorithm. RFC 7518 section 3.2
#: requires a key at least as long as the hash output.
HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

#: RFC 9110 section 5.6.2: the characters of a header name (a token).
_HTTP_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


#: Longest accepted duration. Instants are computed as now plus a few of these
#: (a session's end plus leeway), and must stay within datetime's year 9999.
MAX_DURATION = timedelta(days=100 * 365)


def parse_duration(key: str, value: object, *, allow_zero: bool = False) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise ConfigError(
            f"{key} must be a number of seconds or a timedelta, got {value!r}."
        )

    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif math.isfinite(value):
        seconds = float(value)
    else:
        raise ConfigError(f"{key} must be a finite number of seconds.")

    # Checked in seconds, before timedelta() would overflow on a huge number.
    if seconds < 0 or (seconds == 0 and not allow_zero):
        limit = "zero or more" if allow_zero else "more than zero"
        raise ConfigError(f"{key} must be {limit} seconds, got {value!r}.")
    if seconds > MAX_DURATION.total_seconds():
        raise ConfigError(
            f"{key} must be at most {MAX_DURATION.days} days"
            f" ({int(MAX_DURATION.total_seconds())} seconds), got {value!r}."
        )

    return value if isinstance(value, timedelta) else timedelta(seconds=value)


def parse_bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be True or False, got {value!r}.")

    return value


def parse_optional_str(key: str, value: object) -> str | None:
    if value is None:
        return None

    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string or None, got {value!r}.")

    return value


def parse_str(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}.")

    return value


def parse_positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}.")

    return value


def parse_algorithm(key: str, value: object) -> str:
    if value not in HMAC_KEY_BYTES:
        allowed = ", ".join(HMAC_KEY_BYTES)
        raise ConfigError(f"{key} must be one of {allowed}, got {value!r}.")

    return str(value)


def parse_audience(key: str, value: object) -> str | tuple[str, ...] | None:
    if value is None or isinstance(value, str):
        return parse_optional_str(key, value)

    if (
        not isinstance(value, Sequence)
        or not value
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise ConfigError(
            f"{key} must be a non-empty string, a non-empty list of them or None,"
            f" got {value!r}."
        )

    return tuple(value)


def parse_http_token(key: str, value: object, *, allow_empty: bool = False) -> str:
    if allow_empty and value == "":
        return ""

    if not isinstance(value, str) or _HTTP_TOKEN.fullmatch(value) is None:
        raise ConfigError(
            f"{key} must be a header name or cookie name: letters, digits and"
            f" !#$%&'*+-.^_`|~ only, got {value!r}."
        )

    return value


def parse_locations(
    key: str, value: object, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    places = [value] if isinstance(value, str) else value
    if (
        not isinstance(places, Sequence)
        or not places
        or any(place not in allowed for place in places)
        or len(set(places)) != len(places)
    ):
        choices = ", ".join(f'"{place}"' for place in allowed)
        raise ConfigError(
            f"{key} must be one of {choices}, or a list of them without repeats in"
            f" order of precedence, got {value!r}."
        )

    return tuple(places)


def parse_samesite(key: str, value: object, *, secure: bool) -> str:
    canonical = {"strict": "Strict", "lax": "Lax", "none": "None"}
    samesite = canonical.get(value.lower()) if isinstance(value, str) else None
    if samesite is None:
        raise ConfigError(f'{key} must be "Strict", "Lax" or "None", got {value!r}.')
    if samesite == "None" and not secure:
        raise ConfigError(
            f'{key} is "None", which browsers accept only on Secure cookies. Set'
            " REFRESH_COOKIE_SECURE to True."
        )

    return samesite


def parse_url_prefix(key: str, value: object) -> str:
    prefix = parse_str(key, value)
    if not prefix.startswith("/"):
        raise ConfigError(f"{key} must start with '/', got {value!r}.")

    return prefix.rstrip("/") or "/"


def parse_rate_limit(key: str, value: object) -> str | None:
    if value is None:
        return None

    if isinstance(value, str) and value.strip():
        try:
            parse_many(value)
        except ValueError:
            pass
        else:
            return value

    raise ConfigError(
        f"{key} must be a rate limit such as '10 per minute; 100 per day', or None"
        f" to turn it off, got {value!r}."
    )
