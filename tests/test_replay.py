"""Replay of refresh tokens, and revocation racing rotation (RFC 9700 section 4.14).

Every test checks the token tables' invariants (see ``TokenInvariants`` in
helpers.py) after each step: at most one unspent token per family, ``used_at``
written once, no token stored in clear, and an absolute expiry that never moves.
tests/test_refresh.py covers single replays and the grace interval;
tests/test_revocation_race.py races revocation against chains of rotations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    FakeClock,
    TokenInvariants,
    bearer,
    create_user,
    family_rows,
    login,
    refresh,
    session_of,
)

REVOKED = {
    "error": "invalid_grant",
    "error_description": "The refresh token was revoked.",
}
ALREADY_USED = {
    "error": "invalid_grant",
    "error_description": "The refresh token was already used.",
}
ROUNDS = 15
CHECK = {"REFRESH_CHECK_REVOKED": True}


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def rotate(client: FlaskClient, token: str) -> dict[str, Any]:
    response = refresh(client, token)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    return body


def assert_all_rejected(client: FlaskClient, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        response = refresh(client, body["refresh_token"])
        assert response.status_code == 400
        assert response.json == REVOKED


def test_replay_of_middle_token_revokes_family(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    invariants: TokenInvariants,
) -> None:
    chain = [login(client)]
    for _ in range(3):
        clock.advance(60)
        chain.append(rotate(client, chain[-1]["refresh_token"]))
        invariants.check(*chain)

    clock.advance(60)
    replay = refresh(client, chain[1]["refresh_token"])

    assert replay.status_code == 400
    assert replay.json == ALREADY_USED
    assert replay.headers["Cache-Control"] == "no-store"
    (family,) = family_rows(app)
    assert family.revoked_reason == "reuse_detected"
    invariants.check()
    assert_all_rejected(client, chain)
    invariants.check()


def test_thief_within_grace_ends_in_revocation(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: int,
    invariants: TokenInvariants,
) -> None:
    """The thief refreshes first and the victim retries within the grace interval.

    Both then hold the same successor, as a client retrying a lost response
    would. The first of them to present it after the interval wins; the other's
    later attempt is reuse, which ends the session for both.
    """
    stolen = login(client)
    thief = rotate(client, stolen["refresh_token"])
    clock.advance(5)
    victim = rotate(client, stolen["refresh_token"])
    assert victim["refresh_token"] == thief["refresh_token"]
    invariants.check(stolen, thief, victim)

    clock.advance(30)
    thief_next = rotate(client, thief["refresh_token"])
    clock.advance(30)
    victim_next = refresh(client, victim["refresh_token"])

    assert victim_next.status_code == 400
    assert victim_next.json == ALREADY_USED
    assert family_rows(app)[0].revoked_reason == "reuse_detected"
    assert_all_rejected(client, [thief_next])
    invariants.check(thief_next)


@pytest.mark.parametrize("config_overrides", [CHECK])
def test_reuse_kills_thiefs_access_token(
    client: FlaskClient, clock: FakeClock, alice: int, invariants: TokenInvariants
) -> None:
    stolen = login(client)
    thief = rotate(client, stolen["refresh_token"])
    assert (
        client.get("/api/me", headers=bearer(thief["access_token"])).status_code == 200
    )

    clock.advance(11)
    assert refresh(client, stolen["refresh_token"]).json == ALREADY_USED
    response = client.get("/api/me", headers=bearer(thief["access_token"]))

    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_token",
        "error_description": "The session of this access token was revoked.",
    }
    invariants.check(stolen, thief)


# ---------------------------------------------------------------------------
# Revocation racing rotation
# ---------------------------------------------------------------------------

Revoker = Callable[[FlaskClient, dict[str, Any]], Any]


def by_logout(client: FlaskClient, tokens: dict[str, Any]) -> Any:
    return client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})


def by_logout_all(client: FlaskClient, tokens: dict[str, Any]) -> Any:
    return client.post("/auth/logout-all", headers=bearer(tokens["access_token"]))


def by_rfc7009(client: FlaskClient, tokens: dict[str, Any]) -> Any:
    return client.post(
        "/auth/revoke",
        data={"token": tokens["access_token"], "token_type_hint": "access_token"},
    )


REVOKERS: dict[str, tuple[Revoker, int, str]] = {
    "logout": (by_logout, 204, "logout"),
    "logout_all": (by_logout_all, 200, "logout_all"),
    "rfc7009": (by_rfc7009, 200, "revoked"),
}


def race(
    app: Flask, tokens: dict[str, Any], revoker: Revoker, refreshers: int
) -> tuple[list[Any], Any]:
    """Send ``refreshers`` refreshes of one token and a revocation at once."""
    barrier = threading.Barrier(refreshers + 1)

    def send_refresh() -> Any:
        barrier.wait()
        return refresh(app.test_client(), tokens["refresh_token"])

    def send_revocation() -> Any:
        barrier.wait()
        return revoker(app.test_client(), tokens)

    with ThreadPoolExecutor(max_workers=refreshers + 1) as pool:
        refreshes = [pool.submit(send_refresh) for _ in range(refreshers)]
        revocation = pool.submit(send_revocation)
        return [f.result(timeout=60) for f in refreshes], revocation.result(timeout=60)


@pytest.mark.parametrize("kind", list(REVOKERS))
def test_revocation_racing_refreshes_leaves_no_live_token(
    app: Flask,
    client: FlaskClient,
    alice: int,
    invariants: TokenInvariants,
    kind: str,
) -> None:
    """Three refreshes of one token race a revocation of its session.

    Whichever wins, the session ends revoked, with no live token, and every
    token a client received is refused afterwards.
    """
    revoker, revocation_status, reason = REVOKERS[kind]

    for number in range(ROUNDS):
        tokens = login(client)
        refreshes, revocation = race(app, tokens, revoker, refreshers=3)

        assert revocation.status_code == revocation_status, number
        received = [tokens]
        for response in refreshes:
            # 200: a winner or a retry within the grace interval; 400: the
            # session was revoked first; 503: lost to a rolled-back transaction.
            assert response.status_code in (200, 400, 503), (number, response.json)
            if response.status_code == 200:
                received.append(response.json)
            elif response.status_code == 400:
                assert response.json == REVOKED, number
        successors = {body["refresh_token"] for body in received[1:]}
        assert len(successors) <= 1, number

        family = next(
            f for f in family_rows(app) if f.id == session_of(tokens["access_token"])
        )
        assert family.revoked_reason == reason, number
        invariants.check(*received)
        assert_all_rejected(client, received)
        invariants.check()
