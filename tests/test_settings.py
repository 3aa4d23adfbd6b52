"""Parsing and validation of the REFRESH_* config keys."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from flask_refresh.config_values import MAX_DURATION
from flask_refresh.settings import DEFAULTS, ConfigError, load_settings

SECRET = "s" * 32


def test_defaults_are_safe() -> None:
    settings = load_settings({"REFRESH_SECRET_KEY": SECRET})

    assert settings.algorithm == "HS256"
    assert settings.access_token_lifetime == timedelta(minutes=15)
    assert settings.reuse_grace <= timedelta(seconds=10)
    assert settings.session_lifetime >= settings.idle_timeout
    assert settings.url_prefix == "/auth"
    assert settings.check_revoked is False


def test_missing_secret_key_names_key() -> None:
    with pytest.raises(ConfigError, match="REFRESH_SECRET_KEY is not set"):
        load_settings({})


@pytest.mark.parametrize(
    ("algorithm", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)]
)
def test_short_secret_key_rejected(algorithm: str, minimum: int) -> None:
    config = {"REFRESH_SECRET_KEY": "k" * (minimum - 1), "REFRESH_ALGORITHM": algorithm}

    with pytest.raises(ConfigError, match=f"REFRESH_SECRET_KEY.*at least {minimum}"):
        load_settings(config)


def test_secret_key_length_counts_bytes() -> None:
    # 16 characters of two bytes each in UTF-8: 32 bytes.
    settings = load_settings({"REFRESH_SECRET_KEY": "é" * 16})

    assert len(settings.secret_key) == 32


@pytest.mark.parametrize(
    "key",
    [
        "REFRESH_ACCESS_TOKEN_LIFETIME",
        "REFRESH_IDLE_TIMEOUT",
        "REFRESH_SESSION_LIFETIME",
    ],
)
@pytest.mark.parametrize("value", [0, -1, timedelta(0), timedelta(seconds=-5)])
def test_non_positive_lifetime_rejected(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings({"REFRESH_SECRET_KEY": SECRET, key: value})


@pytest.mark.parametrize("value", ["600", True, None, [60], float("inf")])
def test_lifetime_of_wrong_type_rejected(value: object) -> None:
    with pytest.raises(ConfigError, match="REFRESH_ACCESS_TOKEN_LIFETIME"):
        load_settings(
            {"REFRESH_SECRET_KEY": SECRET, "REFRESH_ACCESS_TOKEN_LIFETIME": value}
        )


DURATION_KEYS = [
    "REFRESH_ACCESS_TOKEN_LIFETIME",
    "REFRESH_IDLE_TIMEOUT",
    "REFRESH_SESSION_LIFETIME",
    "REFRESH_REUSE_GRACE",
    "REFRESH_LEEWAY",
    "REFRESH_REVOCATION_CACHE_TTL",
    "REFRESH_PURGE_AFTER",
    "REFRESH_JWKS_MAX_AGE",
]


@pytest.mark.parametrize("key", DURATION_KEYS)
@pytest.mark.parametrize(
    "value",
    [MAX_DURATION.total_seconds() + 1, 10**12, 1e20, timedelta(days=40_000)],
    ids=["one-second-over", "1e12-int", "1e20-float", "timedelta"],
)
def test_overlong_duration_rejected(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"REFRESH_SECRET_KEY": SECRET, key: value})

    assert str(error.value).startswith(f"{key} must be at most 36500 days")


@pytest.mark.parametrize("key", DURATION_KEYS)
def test_longest_duration_accepted(key: str) -> None:
    settings = load_settings(
        {"REFRESH_SECRET_KEY": SECRET, key: MAX_DURATION.total_seconds()}
    )

    assert MAX_DURATION in vars(settings).values()


def test_durations_accept_seconds_and_timedelta() -> None:
    settings = load_settings(
        {
            "REFRESH_SECRET_KEY": SECRET,
            "REFRESH_ACCESS_TOKEN_LIFETIME": 60,
            "REFRESH_IDLE_TIMEOUT": 1.5,
            "REFRESH_SESSION_LIFETIME": timedelta(hours=2),
        }
    )

    assert settings.access_token_lifetime == timedelta(seconds=60)
    assert settings.idle_timeout == timedelta(seconds=1.5)
    assert settings.session_lifetime == timedelta(hours=2)


def test_zero_grace_allowed() -> None:
    settings = load_settings({"REFRESH_SECRET_KEY": SECRET, "REFRESH_REUSE_GRACE": 0})

    assert settings.reuse_grace == timedelta(0)


def test_misspelt_key_suggests_the_right_one() -> None:
    config = {"REFRESH_SECRET_KEY": SECRET, "REFRESH_ACESS_TOKEN_LIFETIME": 60}

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert "REFRESH_ACESS_TOKEN_LIFETIME" in str(error.value)
    assert "Did you mean REFRESH_ACCESS_TOKEN_LIFETIME?" in str(error.value)


def test_keys_without_the_prefix_are_ignored() -> None:
    settings = load_settings({"REFRESH_SECRET_KEY": SECRET, "SECRET_KEY": "x"})

    assert settings.secret_key == SECRET.encode()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REFRESH_ALGORITHM", "none"),
        ("REFRESH_ALGORITHM", "RS256"),
        ("REFRESH_URL_PREFIX", "auth"),
        ("REFRESH_LOGIN_FIELD", ""),
        ("REFRESH_CHECK_REVOKED", "yes"),
        ("REFRESH_ISSUER", 5),
        ("REFRESH_MAX_TOKEN_LENGTH", 0),
        ("REFRESH_MAX_PASSWORD_LENGTH", True),
    ],
)
def test_invalid_value_names_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings({"REFRESH_SECRET_KEY": SECRET, key: value})


def test_readme_documents_every_key() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    documented = set(re.findall(r"^\| `(REFRESH_[A-Z_]+)` \|", readme, re.MULTILINE))

    assert documented == set(DEFAULTS)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REFRESH_LOGIN_LIMIT_PER_ACCOUNT", "ten per minute"),
        ("REFRESH_LOGIN_LIMIT_PER_ACCOUNT", ""),
        ("REFRESH_LOGIN_LIMIT_PER_ADDRESS", 10),
        ("REFRESH_LOGIN_LIMIT_STORAGE_URI", ""),
        ("REFRESH_MAX_CONTENT_LENGTH", 0),
        ("REFRESH_MAX_CONTENT_LENGTH", "16k"),
        ("REFRESH_SERVE_OPENAPI", "yes"),
    ],
)
def test_invalid_limit_names_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings({"REFRESH_SECRET_KEY": SECRET, key: value})


def test_login_limits_default_on_and_can_be_off() -> None:
    default = load_settings({"REFRESH_SECRET_KEY": SECRET})
    off = load_settings(
        {
            "REFRESH_SECRET_KEY": SECRET,
            "REFRESH_LOGIN_LIMIT_PER_ACCOUNT": None,
            "REFRESH_LOGIN_LIMIT_PER_ADDRESS": None,
        }
    )

    assert default.login_limit_per_account == "10 per minute; 100 per day"
    assert default.login_limit_per_address == "30 per minute; 1000 per day"
    assert default.login_limit_storage_uri == "memory://"
    assert off.login_limit_per_account is None
    assert off.login_limit_per_address is None
