"""REFRESH_CHECK_REVOKED: access tokens die with their session.

Covers the database lookup (one primary key query per request), the in-process
cache, and the Redis cache shared by two app instances, with Redis up and down.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    FakeClock,
    StatementCounter,
    app_config,
    bearer,
    create_user,
    login,
    refresh,
    session_of,
)

from example_app import auth, create_app, db
from flask_refresh import get_claims, get_state, jwt_required
from flask_refresh.session_status import (
    REVOKED_TTL_SECONDS,
    MemoryStatusCache,
    RedisStatusCache,
)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CHECK = {"REFRESH_CHECK_REVOKED": True}
MEMORY_CACHE = {**CHECK, "REFRESH_REVOCATION_CACHE_TTL": 60}
REDIS_CACHE = {**MEMORY_CACHE, "REFRESH_REDIS_URL": REDIS_URL}
REVOKED_BODY = {
    "error": "invalid_token",
    "error_description": "The session of this access token was revoked.",
}


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def add_claims_view(app: Flask) -> None:
    """Add a protected view that never loads the user, so that the only query a
    request can make is the revocation check."""

    @app.get("/check/claims")
    @jwt_required()
    def claims() -> dict[str, Any]:
        return {"sid": get_claims()["sid"]}


@pytest.fixture
def claims_view(app: Flask) -> Flask:
    add_claims_view(app)
    return app


def get_claims_view(client: FlaskClient, access_token: str) -> Any:
    return client.get("/check/claims", headers=bearer(access_token))


def status(client: FlaskClient, access_token: str) -> int:
    return int(get_claims_view(client, access_token).status_code)


def revoke_in_database(app: Flask, session_id: str) -> None:
    """Revoke a session behind flask-refresh's back, as a SQL console would."""
    family = auth.models.family
    with app.app_context():
        db.session.execute(
            sa.update(family)
            .where(family.id == session_id)
            .values(revoked_at=get_state().clock(), revoked_reason="manual")
        )
        db.session.commit()


# Rejecting access tokens of revoked sessions


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_revoked_session_token_rejected(
    client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    current = login(client)
    other = login(client)

    deleted = client.delete(
        f"/auth/sessions/{session_of(other['access_token'])}",
        headers=bearer(current["access_token"]),
    )
    assert deleted.status_code == 204

    response = get_claims_view(client, other["access_token"])
    assert response.status_code == 401
    assert response.json == REVOKED_BODY
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert status(client, current["access_token"]) == 200


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_logout_all_kills_every_access_token(
    client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    outstanding = []
    for _ in range(3):
        body = login(client)
        outstanding.append(body["access_token"])
        # Each refresh hands out another access token of the same session.
        for _ in range(2):
            body = refresh(client, body["refresh_token"]).json
            outstanding.append(body["access_token"])
    assert all(status(client, access) == 200 for access in outstanding)

    response = client.post("/auth/logout-all", headers=bearer(outstanding[0]))

    assert response.json == {"revoked_sessions": 3}
    for access in outstanding:
        assert status(client, access) == 401


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_logout_others_keeps_current_token(
    client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    current = login(client)
    others = [login(client) for _ in range(2)]

    client.post("/auth/logout-others", headers=bearer(current["access_token"]))

    assert status(client, current["access_token"]) == 200
    for body in others:
        assert status(client, body["access_token"]) == 401


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_library_revocation_kills_tokens(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    sessions = [login(client) for _ in range(2)]

    with app.app_context():
        auth.revoke_user_sessions(alice)

    for body in sessions:
        assert status(client, body["access_token"]) == 401


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_reuse_kills_thief_access_token(
    client: FlaskClient, clock: FakeClock, claims_view: Flask, alice: int
) -> None:
    stolen = login(client)["refresh_token"]
    thief = refresh(client, stolen).json
    assert thief is not None
    assert status(client, thief["access_token"]) == 200

    clock.advance(60)
    assert refresh(client, stolen).status_code == 400

    assert status(client, thief["access_token"]) == 401


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_purged_session_token_rejected(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    body = login(client)
    with app.app_context():
        db.session.execute(sa.delete(auth.models.family))
        db.session.commit()

    assert status(client, body["access_token"]) == 401


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_fresh_view_checks_revocation_first(client: FlaskClient, alice: int) -> None:
    body = login(client)
    client.post("/auth/logout", json={"refresh_token": body["refresh_token"]})

    # /api/password needs a fresh token; a revoked one is 401, not a password change.
    response = client.post(
        "/api/password",
        json={"new_password": "a new password"},
        headers=bearer(body["access_token"]),
    )

    assert response.status_code == 401
    assert response.json == REVOKED_BODY


# Cost: SQL statements per protected request


def test_no_check_sends_no_statement(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    body = login(client)

    with StatementCounter(app) as counter:
        assert status(client, body["access_token"]) == 200

    assert counter.statements == []


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_check_sends_one_statement(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    body = login(client)

    for _ in range(3):
        with StatementCounter(app) as counter:
            assert status(client, body["access_token"]) == 200
        assert counter.count == 1
        (statement,) = counter.statements
        # A lookup of the family by its primary key.
        assert "FROM refresh_token_family" in statement
        assert "WHERE refresh_token_family.id =" in statement


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_revoked_check_sends_one_statement(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    body = login(client)
    client.post("/auth/logout", json={"refresh_token": body["refresh_token"]})

    with StatementCounter(app) as counter:
        assert status(client, body["access_token"]) == 401

    assert counter.count == 1


@pytest.mark.parametrize("config_overrides", [MEMORY_CACHE])
def test_cache_hit_sends_no_statement(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    body = login(client)

    with StatementCounter(app) as miss:
        assert status(client, body["access_token"]) == 200
    with StatementCounter(app) as hit:
        for _ in range(3):
            assert status(client, body["access_token"]) == 200

    assert miss.count == 1
    assert hit.count == 0


# The in-process cache


@pytest.mark.parametrize("config_overrides", [MEMORY_CACHE])
def test_memory_cache_sees_revocation_at_once(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    body = login(client)
    other = login(client)
    assert status(client, body["access_token"]) == 200
    assert status(client, other["access_token"]) == 200

    client.post("/auth/logout", json={"refresh_token": body["refresh_token"]})

    with StatementCounter(app) as counter:
        response = get_claims_view(client, body["access_token"])
        assert status(client, other["access_token"]) == 200
    assert response.status_code == 401
    assert response.json == REVOKED_BODY
    # Both states came from the cache, which the revocation overwrote.
    assert counter.count == 0


@pytest.mark.parametrize("config_overrides", [MEMORY_CACHE])
def test_memory_cache_keeps_revoked_answer(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    body = login(client)
    revoke_in_database(app, session_of(body["access_token"]))

    with StatementCounter(app) as counter:
        for _ in range(3):
            assert status(client, body["access_token"]) == 401

    assert counter.count == 1


#: Long enough that the two requests after caching fit in it on a loaded machine.
SHORT_TTL_SECONDS = 2.0


@pytest.mark.parametrize(
    "config_overrides",
    [{**CHECK, "REFRESH_REVOCATION_CACHE_TTL": SHORT_TTL_SECONDS}],
)
def test_memory_cache_outside_revocation_waits_ttl(
    app: Flask, client: FlaskClient, claims_view: Flask, alice: int
) -> None:
    body = login(client)
    # The entry expires between these two instants plus the TTL.
    before_caching = time.monotonic()
    assert status(client, body["access_token"]) == 200
    after_caching = time.monotonic()

    # Only revocations made through flask-refresh reach the cache. One made in SQL
    # takes effect once the cached "live" entry expires.
    revoke_in_database(app, session_of(body["access_token"]))
    assert status(client, body["access_token"]) == 200
    assert time.monotonic() < before_caching + SHORT_TTL_SECONDS

    time.sleep(max(0.0, after_caching + SHORT_TTL_SECONDS + 0.1 - time.monotonic()))
    assert status(client, body["access_token"]) == 401


def test_memory_cache_live_never_replaces_revoked() -> None:
    cache = MemoryStatusCache()

    cache.put("session", False, 60)
    cache.put("session", True, 60)

    assert cache.get("session") is False


def test_memory_cache_evicts_oldest_entry() -> None:
    cache = MemoryStatusCache(max_entries=2)

    for name in ("first", "second", "third"):
        cache.put(name, True, 60)

    assert cache.get("first") is None
    assert cache.get("second") is True
    assert cache.get("third") is True


# The Redis cache


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({error}).")
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"flask-refresh-test:{secrets.token_hex(8)}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


def use_prefix(app: Flask, prefix: str) -> RedisStatusCache:
    cache = get_state(app).status_cache
    assert isinstance(cache, RedisStatusCache)
    cache.KEY_PREFIX = prefix
    return cache


@pytest.fixture
def second_app(database_url: str, app: Flask) -> Iterator[Flask]:
    """Another instance of the example app on the same database and Redis."""
    other = create_app(app_config(database_url, **REDIS_CACHE))
    add_claims_view(other)
    yield other
    with other.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.mark.parametrize("config_overrides", [REDIS_CACHE])
def test_redis_cache_shared_by_instances(
    app: Flask,
    second_app: Flask,
    claims_view: Flask,
    redis_client: redis.Redis,
    redis_prefix: str,
    alice: int,
) -> None:
    use_prefix(app, redis_prefix)
    use_prefix(second_app, redis_prefix)
    client_a, client_b = app.test_client(), second_app.test_client()
    body = login(client_a)
    session_id = session_of(body["access_token"])

    with StatementCounter(app) as on_a:
        assert status(client_a, body["access_token"]) == 200
    with StatementCounter(second_app) as on_b:
        assert status(client_b, body["access_token"]) == 200

    assert on_a.count == 1
    # Instance B found the state that instance A cached in Redis.
    assert on_b.count == 0
    assert redis_client.get(f"{redis_prefix}{session_id}") == b"1"
    assert 0 < redis_client.pttl(f"{redis_prefix}{session_id}") <= 60_000


@pytest.mark.parametrize("config_overrides", [REDIS_CACHE])
def test_redis_revocation_seen_by_other_instance(
    app: Flask,
    second_app: Flask,
    claims_view: Flask,
    redis_client: redis.Redis,
    redis_prefix: str,
    alice: int,
) -> None:
    use_prefix(app, redis_prefix)
    use_prefix(second_app, redis_prefix)
    client_a, client_b = app.test_client(), second_app.test_client()
    body = login(client_a)
    other = login(client_a)
    key = f"{redis_prefix}{session_of(body['access_token'])}"
    # Both instances have cached "live" for this session.
    assert status(client_b, body["access_token"]) == 200
    assert status(client_a, body["access_token"]) == 200
    assert status(client_b, other["access_token"]) == 200

    client_a.post("/auth/logout", json={"refresh_token": body["refresh_token"]})

    with StatementCounter(second_app) as on_b:
        response = get_claims_view(client_b, body["access_token"])
        assert status(client_b, other["access_token"]) == 200
    assert response.status_code == 401
    assert response.json == REVOKED_BODY
    assert on_b.count == 0
    assert redis_client.get(key) == b"0"
    assert redis_client.pttl(key) > (REVOKED_TTL_SECONDS - 60) * 1000


def test_redis_live_never_replaces_revoked(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    cache = RedisStatusCache(REDIS_URL)
    cache.KEY_PREFIX = redis_prefix

    cache.put("session", False, 60)
    cache.put("session", True, 60)

    assert cache.get("session") is False


def closed_port() -> int:
    """Return a local TCP port that nothing listens on, most likely."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "config_overrides",
    [{**MEMORY_CACHE, "REFRESH_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}],
)
def test_redis_down_falls_back_to_database(
    app: Flask,
    client: FlaskClient,
    claims_view: Flask,
    alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = login(client)
    revoked = login(client)
    client.post("/auth/logout", json={"refresh_token": revoked["refresh_token"]})

    with (
        caplog.at_level(logging.WARNING, logger="flask_refresh"),
        StatementCounter(app) as counter,
    ):
        for _ in range(3):
            assert status(client, live["access_token"]) == 200
            assert status(client, revoked["access_token"]) == 401

    # Every state came from the database, one statement per request.
    assert counter.count == 6
    failures = [
        record
        for record in caplog.records
        if record.getMessage().startswith("Redis session cache failed")
    ]
    # Thirteen Redis calls failed, the logout's included, and logged one line,
    # because failures are logged at most once a minute.
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING
    assert "ConnectionError" in failures[0].getMessage()
