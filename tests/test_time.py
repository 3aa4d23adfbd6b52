"""Instants on every backend: UTC in Python, microseconds kept, expiry in SQL.

SQLite stores no zone and MariaDB's DATETIME none either, so UTCDateTime
stores naive UTC there; PostgreSQL stores ``timestamp with time zone``. Every
test runs twice: once as configured, once with the Python process and the
database session in UTC+05:30, where a value read or compared as local time
would be off by hours.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import FakeClock, create_user, login, refresh

from example_app import auth, db
from flask_refresh.tokens import hash_refresh_token

IDLE_TIMEOUT = timedelta(seconds=1.5)
MICROSECOND = timedelta(microseconds=1)
#: .987654 s past a whole second: 1.5 s later crosses into the next second, so
#: a backend that dropped the fraction would move the expiry by most of a second.
LOGIN_INSTANT = datetime(2031, 3, 4, 5, 6, 7, 987654, tzinfo=UTC)
INDIA = timezone(timedelta(hours=5, minutes=30))
SESSION_ZONE_ARGS = {
    "postgresql": {"options": "-c timezone=Asia/Kolkata"},
    "mariadb": {"init_command": "SET time_zone = '+05:30'"},
}
ZONE_QUERIES = {
    "postgresql": "SHOW timezone",
    "mariadb": "SELECT @@session.time_zone",
}
EXPECTED_ZONES = {"postgresql": "Asia/Kolkata", "mariadb": "+05:30"}


@pytest.fixture(params=["configured zones", "UTC+05:30 zones"])
def local_zone(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Whether the process's local zone is moved to UTC+05:30 for the test."""
    moved = request.param == "UTC+05:30 zones"
    if not moved:
        yield False
        return

    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    yield True
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.fixture
def config_overrides(backend: str, local_zone: bool) -> dict[str, Any]:
    overrides: dict[str, Any] = {"REFRESH_IDLE_TIMEOUT": IDLE_TIMEOUT.total_seconds()}
    if local_zone and backend in SESSION_ZONE_ARGS:
        overrides["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "connect_args": SESSION_ZONE_ARGS[backend]
        }
    return overrides


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def login_clock(clock: FakeClock) -> FakeClock:
    clock.now = LOGIN_INSTANT
    return clock


def token_row(app: Flask, presented: str) -> Any:
    token = auth.models.token
    with app.app_context():
        return db.session.execute(
            sa.select(token).where(token.token_hash == hash_refresh_token(presented))
        ).scalar_one()


def family_row(app: Flask, family_id: str) -> Any:
    with app.app_context():
        return db.session.get(auth.models.family, family_id)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize("local_zone", ["UTC+05:30 zones"], indirect=True)
def test_moved_zones_apply(app: Flask, backend: str) -> None:
    """The UTC+05:30 runs really move the process's and the session's zone."""
    with app.app_context():
        zone = db.session.execute(sa.text(ZONE_QUERIES[backend])).scalar()

    assert zone == EXPECTED_ZONES[backend]
    assert time.strftime("%z") == "+0530"


def test_instants_read_back_as_utc(
    app: Flask, client: FlaskClient, login_clock: FakeClock, alice: int
) -> None:
    presented = login(client)["refresh_token"]

    token = token_row(app, presented)
    family = family_row(app, token.family_id)

    for value in (token.created_at, token.expires_at, family.created_at):
        assert value.tzinfo is UTC
    assert token.created_at == LOGIN_INSTANT
    assert token.created_at.microsecond == LOGIN_INSTANT.microsecond
    assert token.expires_at == LOGIN_INSTANT + IDLE_TIMEOUT
    assert family.created_at == LOGIN_INSTANT
    assert family.expires_at == LOGIN_INSTANT + timedelta(days=30)


def test_refresh_valid_until_last_microsecond(
    app: Flask, client: FlaskClient, login_clock: FakeClock, alice: int
) -> None:
    presented = login(client)["refresh_token"]

    last_valid_instant = LOGIN_INSTANT + IDLE_TIMEOUT - MICROSECOND
    login_clock.advance((IDLE_TIMEOUT - MICROSECOND).total_seconds())
    response = refresh(client, presented)

    assert response.status_code == 200
    assert token_row(app, presented).used_at == last_valid_instant


def test_refresh_rejected_at_expiry_instant(
    app: Flask, client: FlaskClient, login_clock: FakeClock, alice: int
) -> None:
    presented = login(client)["refresh_token"]

    login_clock.advance(IDLE_TIMEOUT.total_seconds())
    response = refresh(client, presented)

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token expired.",
    }
    assert token_row(app, presented).used_at is None


def test_successor_expiry_counts_from_rotation(
    app: Flask, client: FlaskClient, login_clock: FakeClock, alice: int
) -> None:
    first = login(client)["refresh_token"]
    login_clock.advance(1.0)
    second = refresh(client, first).json["refresh_token"]  # type: ignore[index]

    login_clock.advance((IDLE_TIMEOUT - MICROSECOND).total_seconds())
    response = refresh(client, second)

    assert response.status_code == 200
    rotated_at = LOGIN_INSTANT + timedelta(seconds=1)
    assert token_row(app, second).expires_at == rotated_at + IDLE_TIMEOUT


@pytest.mark.parametrize("config_overrides", [{"REFRESH_SESSION_LIFETIME": 1.5}])
def test_session_end_decided_in_sql(
    app: Flask, client: FlaskClient, login_clock: FakeClock, alice: int
) -> None:
    """A family past its end rejects a token whose own expiry is far off.

    The spending UPDATE checks the family's end in SQL. The token's row is moved
    a day ahead so that only that check can reject it.
    """
    presented = login(client)["refresh_token"]
    token = auth.models.token
    with app.app_context():
        db.session.execute(
            sa.update(token)
            .where(token.token_hash == hash_refresh_token(presented))
            .values(expires_at=LOGIN_INSTANT + timedelta(days=1))
        )
        db.session.commit()

    login_clock.advance(1.5)
    response = refresh(client, presented)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error_description"] == "The refresh token expired."
    assert token_row(app, presented).used_at is None


@pytest.mark.parametrize(
    ("offset", "live"),
    [
        (-MICROSECOND, True),
        (timedelta(0), False),
        (MICROSECOND, False),
    ],
)
@pytest.mark.parametrize(
    "expires_at",
    [
        datetime(2031, 3, 4, 5, 6, 8, 0, tzinfo=UTC),
        datetime(2031, 3, 4, 5, 6, 8, 999999, tzinfo=UTC),
        datetime(2031, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_sql_comparison_to_the_microsecond(
    app: Flask,
    client: FlaskClient,
    alice: int,
    expires_at: datetime,
    offset: timedelta,
    live: bool,
) -> None:
    presented = login(client)["refresh_token"]
    token = auth.models.token
    digest = hash_refresh_token(presented)
    with app.app_context():
        db.session.execute(
            sa.update(token)
            .where(token.token_hash == digest)
            .values(expires_at=expires_at)
        )
        db.session.commit()

        # The same comparison as the spending UPDATE, with "now" in another zone.
        now = (expires_at + offset).astimezone(INDIA)
        unexpired = sa.select(token.id).where(
            token.token_hash == digest, token.expires_at > now
        )
        found = db.session.execute(unexpired).scalar_one_or_none()

    assert (found is not None) is live


def test_naive_datetime_rejected(app: Flask, alice: int) -> None:
    family = auth.models.family
    with app.app_context():
        statement = sa.insert(family).values(
            id="0" * 32,
            user_id=alice,
            created_at=datetime(2031, 1, 1, 12, 0),
            expires_at=datetime(2031, 2, 1, 12, 0),
        )
        with pytest.raises(sa.exc.StatementError, match="timezone-aware"):
            db.session.execute(statement)
        db.session.rollback()


def test_other_zone_stored_as_same_instant(app: Flask, alice: int) -> None:
    family = auth.models.family
    created = datetime(2031, 1, 1, 17, 30, 0, 250000, tzinfo=INDIA)
    with app.app_context():
        db.session.execute(
            sa.insert(family).values(
                id="1" * 32,
                user_id=alice,
                created_at=created,
                expires_at=created + timedelta(days=30),
            )
        )
        db.session.commit()
        db.session.expunge_all()

        stored = db.session.get(family, "1" * 32)

    assert stored is not None
    assert stored.created_at == datetime(2031, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert stored.created_at.tzinfo is UTC


def test_stored_value_is_utc(
    app: Flask, client: FlaskClient, login_clock: FakeClock, alice: int, backend: str
) -> None:
    """What the database itself holds, read without UTCDateTime."""
    presented = login(client)["refresh_token"]
    with app.app_context():
        raw = db.session.execute(
            sa.text("SELECT created_at FROM refresh_token WHERE token_hash = :digest"),
            {"digest": hash_refresh_token(presented)},
        ).scalar_one()

    if backend == "sqlite":
        # SQLAlchemy's SQLite DATETIME: an ISO string, always with microseconds.
        assert raw == "2031-03-04 05:06:07.987654"
    elif backend == "mariadb":
        assert raw == datetime(2031, 3, 4, 5, 6, 7, 987654)
        assert raw.tzinfo is None
    else:
        assert raw == LOGIN_INSTANT
        assert raw.tzinfo is not None
