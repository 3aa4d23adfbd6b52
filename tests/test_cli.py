"""``flask tokens ...``: purge, sessions and revoke."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from helpers import (
    PASSWORD,
    FakeClock,
    StatementCounter,
    bearer,
    create_user,
    family_rows,
    login,
    refresh,
    session_of,
    token_rows,
)

DAY = 24 * 3600
PURGE_AFTER = timedelta(days=14)


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def bob(app: Flask) -> int:
    return create_user(app, "bob")


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["tokens", *args])


def minutes(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M UTC")


def login_from(client: FlaskClient, agent: str, ip: str) -> dict[str, Any]:
    response = client.post(
        "/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"User-Agent": agent},
        environ_base={"REMOTE_ADDR": ip},
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def family_ids(app: Flask) -> set[str]:
    return {row.id for row in family_rows(app)}


def reasons(app: Flask) -> dict[str, str | None]:
    return {row.id: row.revoked_reason for row in family_rows(app)}


# flask tokens purge


def make_old_sessions(client: FlaskClient, clock: FakeClock) -> dict[str, Any]:
    """Create an idle, a logged-out and a live session, then move to day 29.

    With the defaults (14-day idle timeout, purge after 14 days) the purge cutoff
    is day 15. The idle session's only token expired on day 14 and the logged-out
    session was revoked on day 0, so both go with their tokens. The session
    started on day 20 stays.
    """
    idle = login(client)
    logged_out = login(client)
    client.post("/auth/logout", json={"refresh_token": logged_out["refresh_token"]})
    clock.advance(20 * DAY)
    live = login(client)
    clock.advance(9 * DAY)
    return {"idle": idle, "logged_out": logged_out, "live": live}


def test_purge_dry_run_deletes_nothing(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    make_old_sessions(client, clock)

    result = run(app, "purge", "--dry-run")

    assert result.exit_code == 0, result.output
    assert result.output == (
        "Would delete 2 refresh token(s) and 2 session(s) that ended before"
        f" {minutes(clock.now - PURGE_AFTER)}.\n"
    )
    assert len(token_rows(app)) == 3
    assert len(family_rows(app)) == 3


def test_purge_deletes_what_dry_run_counts(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    sessions = make_old_sessions(client, clock)
    dry_run = run(app, "purge", "--dry-run")

    result = run(app, "purge")

    assert result.exit_code == 0, result.output
    assert dry_run.output.startswith("Would delete 2 refresh token(s) and 2 session(s)")
    assert result.output.endswith(
        "Deleted 2 refresh token(s) and 2 session(s) with the tokens they still had.\n"
    )
    assert family_ids(app) == {session_of(sessions["live"]["access_token"])}
    assert len(token_rows(app)) == 1
    assert refresh(client, sessions["live"]["refresh_token"]).status_code == 200


def test_purge_shows_progress(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    make_old_sessions(client, clock)

    result = run(app, "purge")

    assert result.exit_code == 0, result.output
    assert "Deleting tokens" in result.output
    assert "Deleting sessions" in result.output


def test_purge_works_in_batches(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    old = [login(client) for _ in range(5)]
    clock.advance(20 * DAY)
    live = login(client)
    clock.advance(9 * DAY)

    with StatementCounter(app) as counter:
        result = run(app, "purge", "--batch-size", "2")

    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        "Deleted 5 refresh token(s) and 5 session(s) with the tokens they still had.\n"
    )
    deletes = [s for s in counter.statements if s.lstrip().upper().startswith("DELETE")]
    token_deletes = [s for s in deletes if "refresh_token_family" not in s]
    family_deletes = [s for s in deletes if "refresh_token_family" in s]
    # Five rows of each table, two per batch: three DELETEs each.
    assert len(token_deletes) == 3
    assert len(family_deletes) == 3
    assert family_ids(app) == {session_of(live["access_token"])}
    for body in old:
        assert session_of(body["access_token"]) not in family_ids(app)


def test_purge_keeps_recent_rows(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    expired = login(client)
    revoked = login(client)
    client.post("/auth/logout", json={"refresh_token": revoked["refresh_token"]})
    # Day 20, cutoff day 6: the first session's token expired on day 14, too
    # recently to go, while the second session was revoked on day 0.
    clock.advance(20 * DAY)

    result = run(app, "purge")

    assert result.exit_code == 0, result.output
    # The revoked session goes, and its token with it through the foreign key's
    # ON DELETE CASCADE, which the token count leaves out.
    assert result.output.endswith(
        "Deleted 0 refresh token(s) and 1 session(s) with the tokens they still had.\n"
    )
    assert family_ids(app) == {session_of(expired["access_token"])}
    assert len(token_rows(app)) == 1


def test_purge_with_nothing_to_do(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    login(client)
    clock.advance(DAY)

    result = run(app, "purge")

    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        "Deleted 0 refresh token(s) and 0 session(s) with the tokens they still had.\n"
    )
    assert len(token_rows(app)) == 1


def test_purge_rejects_zero_batch_size(app: Flask, alice: int) -> None:
    result = run(app, "purge", "--batch-size", "0")

    assert result.exit_code == 2
    assert "--batch-size" in result.output
    assert "Traceback" not in result.output


def test_replay_before_purge_revokes_family(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    first = login(client)
    clock.advance(10 * DAY)
    second = refresh(client, first["refresh_token"]).json
    assert second is not None
    # Day 15: the spent first token expired on day 14, but its row is kept until
    # day 28, so a replay is still recognised.
    clock.advance(5 * DAY)
    purge = run(app, "purge")
    assert purge.exit_code == 0, purge.output
    assert len(token_rows(app)) == 2

    replay = refresh(client, first["refresh_token"])

    assert replay.status_code == 400
    assert replay.json is not None
    assert replay.json["error_description"] == "The refresh token was already used."
    assert reasons(app) == {session_of(first["access_token"]): "reuse_detected"}
    assert refresh(client, second["refresh_token"]).status_code == 400


def test_replay_after_purge_is_invalid(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int
) -> None:
    first = login(client)
    token = first["refresh_token"]
    for _ in range(2):
        clock.advance(10 * DAY)
        body = refresh(client, token).json
        assert body is not None
        token = body["refresh_token"]
    # Day 29: the first token expired on day 14, more than 14 days ago.
    clock.advance(9 * DAY)
    purge = run(app, "purge")
    assert purge.exit_code == 0, purge.output
    assert purge.output.endswith(
        "Deleted 1 refresh token(s) and 0 session(s) with the tokens they still had.\n"
    )

    replay = refresh(client, first["refresh_token"])

    # The evidence is gone: the replay is an unknown token and revokes nothing.
    assert replay.status_code == 400
    assert replay.json is not None
    assert replay.json["error_description"] == "The refresh token is invalid."
    assert reasons(app) == {session_of(first["access_token"]): None}
    assert refresh(client, token).status_code == 200


# flask tokens sessions


def test_sessions_lists_live_sessions(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: int, bob: int
) -> None:
    phone = login_from(client, "Phone/1.0", "198.51.100.4")
    phone_login = clock.now
    clock.advance(3600)
    laptop = login_from(client, "Laptop/2.0", "2001:db8::1")
    laptop_login = clock.now
    logged_out = login(client)
    client.post("/auth/logout", json={"refresh_token": logged_out["refresh_token"]})
    login(client, "bob")

    result = run(app, "sessions", str(alice))

    assert result.exit_code == 0, result.output
    expires = timedelta(days=14)
    assert result.output.splitlines() == [
        f"{session_of(laptop['access_token'])}  created {minutes(laptop_login)}"
        f"  last used {minutes(laptop_login)}"
        f"  expires {minutes(laptop_login + expires)}  2001:db8::1  Laptop/2.0",
        f"{session_of(phone['access_token'])}  created {minutes(phone_login)}"
        f"  last used {minutes(phone_login)}"
        f"  expires {minutes(phone_login + expires)}  198.51.100.4  Phone/1.0",
    ]


def test_sessions_without_sessions(app: Flask, alice: int) -> None:
    result = run(app, "sessions", str(alice))

    assert result.exit_code == 0, result.output
    assert result.output == "No live sessions.\n"


@pytest.mark.parametrize("command", ["sessions", "revoke"])
@pytest.mark.parametrize("user_id", ["abc", "1.5", ""])
def test_bad_user_id_is_clean_error(
    app: Flask, alice: int, command: str, user_id: str
) -> None:
    result = run(app, command, user_id)

    assert result.exit_code == 2
    assert f"{user_id!r} is not a valid int user id." in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


# flask tokens revoke


def test_revoke_all_sessions_of_user(
    app: Flask, client: FlaskClient, alice: int, bob: int
) -> None:
    alices = [login(client) for _ in range(2)]
    bobs = login(client, "bob")

    result = run(app, "revoke", str(alice))

    assert result.exit_code == 0, result.output
    assert result.output == f"Revoked 2 session(s) of user {alice}.\n"
    assert reasons(app) == {
        session_of(alices[0]["access_token"]): "admin",
        session_of(alices[1]["access_token"]): "admin",
        session_of(bobs["access_token"]): None,
    }
    for body in alices:
        assert refresh(client, body["refresh_token"]).status_code == 400
    assert refresh(client, bobs["refresh_token"]).status_code == 200


def test_revoke_stores_given_reason(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    body = login(client)

    result = run(app, "revoke", str(alice), "--reason", "compromised")

    assert result.exit_code == 0, result.output
    assert reasons(app) == {session_of(body["access_token"]): "compromised"}


def test_revoke_rejects_long_reason(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    body = login(client)

    result = run(app, "revoke", str(alice), "--reason", "x" * 33)

    assert result.exit_code == 2
    assert "--reason" in result.output
    assert "at most 32 characters" in result.output
    assert reasons(app) == {session_of(body["access_token"]): None}


def test_revoke_one_session(app: Flask, client: FlaskClient, alice: int) -> None:
    target = login(client)
    other = login(client)
    target_id = session_of(target["access_token"])

    result = run(app, "revoke", str(alice), "--session", target_id)

    assert result.exit_code == 0, result.output
    assert result.output == f"Revoked session {target_id}.\n"
    assert reasons(app) == {
        target_id: "admin",
        session_of(other["access_token"]): None,
    }


def test_revoke_other_users_session_fails(
    app: Flask, client: FlaskClient, alice: int, bob: int
) -> None:
    bobs = login(client, "bob")
    bob_session = session_of(bobs["access_token"])

    result = run(app, "revoke", str(alice), "--session", bob_session)

    assert result.exit_code == 1
    assert result.output == (
        f"Error: User {alice} has no live session {bob_session}.\n"
    )
    assert reasons(app) == {bob_session: None}


def test_revoke_unknown_session_fails(app: Flask, alice: int) -> None:
    result = run(app, "revoke", str(alice), "--session", "0" * 32)

    assert result.exit_code == 1
    assert result.output == f"Error: User {alice} has no live session {'0' * 32}.\n"


def test_revoke_user_without_sessions(app: Flask, alice: int) -> None:
    result = run(app, "revoke", "999999")

    assert result.exit_code == 0, result.output
    assert result.output == "Revoked 0 session(s) of user 999999.\n"


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_CHECK_REVOKED": True, "REFRESH_REVOCATION_CACHE_TTL": 60}],
)
def test_revoke_kills_cached_access_tokens(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    body = login(client)
    assert client.get("/api/me", headers=bearer(body["access_token"])).status_code == (
        200
    )

    result = run(app, "revoke", str(alice))

    assert result.exit_code == 0, result.output
    response = client.get("/api/me", headers=bearer(body["access_token"]))
    assert response.status_code == 401
