"""Throttling of failed logins per account and per client address, and the cost of
each kind of failed login.

The limits are small here (3 failures per account and 5 per address a minute) so
that the tests stay short. Flask-Limiter's in-memory storage reads ``time.time()``;
the ``limiter_time`` fixture points it, and the 429's Retry-After, at the app's
fake clock, so windows pass by moving the clock instead of sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import limits.storage.memory
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_limiter import Limiter
from helpers import (
    PASSWORD,
    FakeClock,
    bearer,
    create_user,
    family_rows,
    token_rows,
    verified_claims,
)

import example_app.models
from flask_refresh import authentication, get_state, throttling
from flask_refresh.throttling import account_key, normalize_account

SMALL_LIMITS = {
    "REFRESH_LOGIN_LIMIT_PER_ACCOUNT": "3 per minute",
    "REFRESH_LOGIN_LIMIT_PER_ADDRESS": "5 per minute",
}
WRONG_PASSWORD = "wrong password"
ADDRESS_A = "203.0.113.10"
ADDRESS_B = "198.51.100.20"
THROTTLED = {
    "error": "too_many_requests",
    "error_description": (
        "Too many failed logins. Retry after the number of seconds in Retry-After."
    ),
}
INCORRECT = {
    "error": "invalid_grant",
    "error_description": "The username or password is incorrect.",
}


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Small limits for every test here, unless a test parametrises its own."""
    return dict(SMALL_LIMITS)


class FakeTime:
    """Stands in for the ``time`` module where the limiter reads the time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def time(self) -> float:
        return self.clock.now.timestamp()


@pytest.fixture
def limiter_time(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Make the limiter's storage and Retry-After follow the app's fake clock."""
    fake = FakeTime(clock)
    monkeypatch.setattr(limits.storage.memory, "time", fake)
    monkeypatch.setattr(throttling, "time", fake)
    return clock


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def hash_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password hash checked, by the user model or as the dummy hash."""
    checked: list[str] = []

    def spy(real: Any) -> Any:
        def check(pwhash: str, password: str) -> bool:
            checked.append(pwhash)
            return bool(real(pwhash, password))

        return check

    monkeypatch.setattr(
        example_app.models,
        "check_password_hash",
        spy(example_app.models.check_password_hash),
    )
    monkeypatch.setattr(
        authentication, "check_password_hash", spy(authentication.check_password_hash)
    )
    return checked


def attempt(
    client: FlaskClient,
    username: str = "alice",
    password: str = WRONG_PASSWORD,
    address: str = ADDRESS_A,
) -> Any:
    return client.post(
        "/auth/login",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def fail(client: FlaskClient, times: int, **kwargs: Any) -> None:
    for number in range(times):
        response = attempt(client, **kwargs)
        assert response.status_code == 400, number
        assert response.json == INCORRECT, number


def assert_throttled(response: Any, retry_after: int) -> None:
    assert response.status_code == 429
    assert response.json == THROTTLED
    assert response.headers["Retry-After"] == str(retry_after)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"


# ---------------------------------------------------------------------------
# Per account
# ---------------------------------------------------------------------------


def test_account_blocked_after_its_failures(
    app: Flask, client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    fail(client, 3)

    response = attempt(client, password=PASSWORD)

    assert_throttled(response, 60)
    assert family_rows(app) == []
    assert token_rows(app) == []


def test_throttled_login_checks_no_password(
    client: FlaskClient, limiter_time: FakeClock, alice: int, hash_checks: list[str]
) -> None:
    fail(client, 3)
    hash_checks.clear()

    response = attempt(client, password=PASSWORD)

    assert response.status_code == 429
    assert hash_checks == []


@pytest.mark.parametrize(
    "variants",
    [
        ["ALICE", "Alice", "alice"],
        ["\uff41\uff4c\uff49\uff43\uff45", "aLiCe", "alice"],
        [" alice", "alice ", "alice"],
    ],
    ids=["case", "full-width", "white-space"],
)
def test_account_variants_share_one_budget(
    app: Flask,
    client: FlaskClient,
    limiter_time: FakeClock,
    alice: int,
    variants: list[str],
) -> None:
    for variant in variants:
        attempt(client, username=variant)

    response = attempt(client, username="alice", password=PASSWORD)

    assert_throttled(response, 60)


#: Users and spellings that MariaDB's default collation, utf8mb4_general_ci,
#: finds as that user: accents, dotless i, sharp s and upper case.
COLLATION_VARIANTS = [
    ("demo", ["d\u00e9mo", "d\u00eamo", "dem\u00f3"]),
    ("iris", ["\u0131ris", "iri\u00df", "\u00cdRI\u015e"]),
]


@pytest.mark.parametrize(
    ("username", "variants"), COLLATION_VARIANTS, ids=["accents", "i-and-s"]
)
def test_collation_variants_share_one_budget(
    app: Flask,
    client: FlaskClient,
    limiter_time: FakeClock,
    username: str,
    variants: list[str],
) -> None:
    create_user(app, username)
    for variant in variants:
        assert attempt(client, username=variant).status_code == 400, variant

    response = attempt(client, username=username, password=PASSWORD)

    assert_throttled(response, 60)
    assert family_rows(app) == []


@pytest.mark.parametrize(
    ("username", "variants"), COLLATION_VARIANTS, ids=["accents", "i-and-s"]
)
def test_collation_variants_find_user(
    app: Flask,
    client: FlaskClient,
    limiter_time: FakeClock,
    backend: str,
    username: str,
    variants: list[str],
) -> None:
    """On MariaDB each spelling logs in as the user, which is why they share."""
    user_id = create_user(app, username)

    responses = [
        attempt(client, username=variant, password=PASSWORD) for variant in variants
    ]

    for variant, response in zip(variants, responses, strict=True):
        if backend == "mariadb":
            assert response.status_code == 200, variant
            claims = verified_claims(response.json["access_token"])
            assert claims["sub"] == str(user_id), variant
        else:
            # SQLite and PostgreSQL compare the names exactly.
            assert response.status_code == 400, variant


def test_normalised_names() -> None:
    assert normalize_account("\uff21\uff2c\uff29\uff23\uff25") == "alice"
    assert normalize_account("  Stra\u00dfe ") == "strase"
    assert normalize_account("\ufb01ne") == "fine"
    assert normalize_account("D\u00c9MO") == "demo"
    assert normalize_account("de\u0301mo") == "demo"
    assert normalize_account("de\u200bmo\u00ad") == "demo"
    assert normalize_account("de\u0640mo") == "demo"
    assert normalize_account("\u0131ris") == "iris"
    assert normalize_account("\u2102af\u00e9") == "cafe"
    assert normalize_account("mississippi") == "misisippi"
    assert account_key(b"k", "Alice") == account_key(b"k", "alice ")
    assert account_key(b"k", "alice") != account_key(b"other key", "alice")
    assert "alice" not in account_key(b"k", "alice")


def test_other_account_from_other_address_logs_in(
    app: Flask, client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    create_user(app, "bob")
    fail(client, 3)

    response = attempt(client, username="bob", password=PASSWORD, address=ADDRESS_B)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert len(family_rows(app)) == 1


def test_same_account_from_other_address_blocked(
    client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    fail(client, 3)

    response = attempt(client, password=PASSWORD, address=ADDRESS_B)

    assert_throttled(response, 60)


def test_unknown_account_is_throttled_alike(
    client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    """An unknown name is counted like a real one, so 429 reveals no account."""
    fail(client, 3, username="nobody")

    response = attempt(client, username="nobody")

    assert_throttled(response, 60)


def test_successful_logins_are_not_counted(
    app: Flask, client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    for number in range(10):
        assert attempt(client, password=PASSWORD).status_code == 200, number
    fail(client, 3)

    response = attempt(client, password=PASSWORD)

    assert_throttled(response, 60)
    assert len(family_rows(app)) == 10


def test_malformed_requests_are_not_counted(
    client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    for body in [{"username": "alice"}, {"username": "alice", "password": 5}] * 5:
        response = client.post(
            "/auth/login", json=body, environ_base={"REMOTE_ADDR": ADDRESS_A}
        )
        assert response.status_code == 400
        assert response.json is not None
        assert response.json["error"] == "invalid_request"

    assert attempt(client, password=PASSWORD).status_code == 200


def test_budget_returns_after_the_window(
    client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    fail(client, 3)
    limiter_time.advance(20)
    assert_throttled(attempt(client, password=PASSWORD), 40)

    # One second past the window: the limits package counts an entry exactly
    # one window old as inside it when counting a hit, not when testing.
    limiter_time.advance(41)
    response = attempt(client, password=PASSWORD)

    assert response.status_code == 200


def test_moving_window_releases_one_failure_at_a_time(
    client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    fail(client, 1)
    limiter_time.advance(30)
    fail(client, 2)
    assert_throttled(attempt(client), 30)

    limiter_time.advance(31)
    fail(client, 1)

    # The failures at 30 s and 61 s are in the window; the oldest leaves at 90 s.
    assert_throttled(attempt(client), 29)


# ---------------------------------------------------------------------------
# Per address
# ---------------------------------------------------------------------------


def test_address_blocked_across_accounts(
    app: Flask, client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    for number in range(5):
        fail(client, 1, username=f"user-{number}")

    from_a = attempt(client, password=PASSWORD)
    from_b = attempt(client, password=PASSWORD, address=ADDRESS_B)

    assert_throttled(from_a, 60)
    assert from_b.status_code == 200
    assert len(family_rows(app)) == 1


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            "REFRESH_LOGIN_LIMIT_PER_ACCOUNT": None,
            "REFRESH_LOGIN_LIMIT_PER_ADDRESS": "5 per minute",
        }
    ],
)
def test_account_limit_can_be_off(
    client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    fail(client, 4)
    fail(client, 1, address=ADDRESS_B)

    assert attempt(client, password=PASSWORD, address=ADDRESS_B).status_code == 200


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            "REFRESH_LOGIN_LIMIT_PER_ACCOUNT": None,
            "REFRESH_LOGIN_LIMIT_PER_ADDRESS": None,
        }
    ],
)
def test_both_limits_can_be_off(app: Flask, client: FlaskClient, alice: int) -> None:
    fail(client, 30)

    assert get_state(app).login_limiter is None
    assert attempt(client, password=PASSWORD).status_code == 200


# ---------------------------------------------------------------------------
# Defaults, storage and hosts that use Flask-Limiter themselves
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{}])
def test_default_limits_are_on(
    client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    fail(client, 10)

    assert_throttled(attempt(client, password=PASSWORD), 60)


@pytest.mark.parametrize(
    "config_overrides",
    [{**SMALL_LIMITS, "REFRESH_LOGIN_LIMIT_STORAGE_URI": "redis://127.0.0.1:1"}],
)
def test_storage_failure_fails_closed(
    app: Flask,
    client: FlaskClient,
    alice: int,
    hash_checks: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Port 1 of 127.0.0.1 refuses connections: the limiter cannot count."""
    with caplog.at_level(logging.ERROR, logger="flask_refresh"):
        response = attempt(client, password=PASSWORD)

    assert response.status_code == 503
    assert response.json == {
        "error": "temporarily_unavailable",
        "error_description": "The service is temporarily unavailable. Retry shortly.",
    }
    assert response.headers["Retry-After"] == "1"
    assert family_rows(app) == []
    assert hash_checks == []
    messages = [r.getMessage() for r in caplog.records if r.name == "flask_refresh"]
    assert messages == [
        "Login rate limit storage failed, responded 503: ConnectionError"
    ]


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            **SMALL_LIMITS,
            "RATELIMIT_ENABLED": False,
            "RATELIMIT_DEFAULT": "1 per minute",
            "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1",
        }
    ],
)
def test_host_ratelimit_keys_leave_throttle_alone(
    app: Flask, client: FlaskClient, limiter_time: FakeClock, alice: int
) -> None:
    """RATELIMIT_* keys configure the host's Flask-Limiter, not this one."""
    for _ in range(2):
        assert attempt(client, password=PASSWORD).status_code == 200
    fail(client, 3)

    assert_throttled(attempt(client, password=PASSWORD), 60)
    assert "RATELIMIT_STRATEGY" not in app.config


@pytest.fixture
def host_limiter(app: Flask) -> Iterator[Limiter]:
    """A Flask-Limiter of the host app, with a default limit on every route."""
    limiter = Limiter(
        lambda: "everyone",
        app=app,
        default_limits=["4 per minute"],
        storage_uri="memory://",
        headers_enabled=True,
    )
    yield limiter
    limiter.reset()


def test_host_limiter_keeps_working(
    client: FlaskClient, limiter_time: FakeClock, alice: int, host_limiter: Limiter
) -> None:
    access = attempt(client, password=PASSWORD).json["access_token"]  # type: ignore[index]

    responses = [client.get("/api/me", headers=bearer(access)) for _ in range(4)]

    # The host's limit counts every request of the route, its own header included.
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    assert responses[0].headers["X-RateLimit-Limit"] == "4"
    assert client.get("/api/me", headers=bearer(access)).status_code == 429


def test_throttle_works_beside_host_limiter(
    client: FlaskClient, limiter_time: FakeClock, alice: int, host_limiter: Limiter
) -> None:
    fail(client, 3)

    response = attempt(client, password=PASSWORD)

    # The host's limit of 4 requests a minute is not reached by 4 requests, so
    # the 429 is this library's, with its JSON body.
    assert_throttled(response, 60)


# ---------------------------------------------------------------------------
# The cost of each kind of failed login
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["unknown", WRONG_PASSWORD, "inactive"])
def test_each_failure_checks_one_hash(
    app: Flask, client: FlaskClient, alice: int, hash_checks: list[str], case: str
) -> None:
    create_user(app, "mallory", active=False)
    username, password = {
        "unknown": ("nobody", PASSWORD),
        WRONG_PASSWORD: ("alice", WRONG_PASSWORD),
        "inactive": ("mallory", PASSWORD),
    }[case]

    response = attempt(client, username=username, password=password)

    assert response.status_code == 400
    assert response.json == INCORRECT
    assert len(hash_checks) == 1
    assert family_rows(app) == []


@pytest.mark.parametrize(
    ("password", "description"),
    [
        ("x" * 1025, "The password parameter is longer than 1024 characters."),
        (["a password"], "The password parameter must be a string."),
        ({"value": "a password"}, "The password parameter must be a string."),
        (None, "The password parameter must be a string."),
        (True, "The password parameter must be a string."),
        ("pass\x00word", "The password parameter contains a NUL character."),
    ],
    ids=["too-long", "list", "object", "null", "bool", "nul"],
)
def test_unusable_password_costs_no_hash(
    client: FlaskClient,
    limiter_time: FakeClock,
    alice: int,
    hash_checks: list[str],
    password: Any,
    description: str,
) -> None:
    response = attempt(client, password=password)

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": description,
    }
    assert hash_checks == []


@pytest.mark.parametrize(
    "password",
    ["p\u00e4ssw\u00f6rd \u6f22\u5b57 \U0001f511", "\U0001f511" * 1024],
    ids=["mixed-scripts", "longest-astral"],
)
def test_non_ascii_password_logs_in(
    app: Flask, client: FlaskClient, limiter_time: FakeClock, password: str
) -> None:
    create_user(app, "alice", password=password)

    right = attempt(client, password=password)
    wrong = attempt(client, password=password[:-1] + "x")

    assert right.status_code == 200
    assert wrong.status_code == 400
    assert wrong.json == INCORRECT


def test_unknown_storage_scheme_stops_start_up(database_url: str) -> None:
    from helpers import app_config

    from example_app import create_app
    from flask_refresh import ConfigError

    config = app_config(
        database_url, REFRESH_LOGIN_LIMIT_STORAGE_URI="nosuchstore://127.0.0.1"
    )

    with pytest.raises(ConfigError, match="REFRESH_LOGIN_LIMIT_STORAGE_URI") as error:
        create_app(config)

    assert "'nosuchstore' storage" in str(error.value)
    assert "127.0.0.1" not in str(error.value)
