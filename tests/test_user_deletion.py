"""Deleting a user deletes its sessions and tokens, on every backend.

The foreign keys from both token tables to the user table cascade on delete, so
a bulk DELETE that bypasses the ORM removes the rows too. SQLite enforces foreign
keys only on connections with ``PRAGMA foreign_keys=ON``, which the extension
sets on every connection of the app's engines.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import bearer, create_user, login, refresh

from example_app import auth, db
from example_app.models import User

INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The refresh token is invalid.",
}


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def bob(app: Flask) -> int:
    return create_user(app, "bob")


def rows_of(app: Flask, user_id: int) -> tuple[int, int]:
    """Return how many families and tokens the user has."""
    family, token = auth.models.family, auth.models.token
    with app.app_context():
        families = db.session.execute(
            sa.select(sa.func.count()).where(family.user_id == user_id)
        ).scalar_one()
        tokens = db.session.execute(
            sa.select(sa.func.count()).where(token.user_id == user_id)
        ).scalar_one()
    return families, tokens


def delete_with_loaded_collections(user_id: int) -> None:
    user = db.session.get(User, user_id)
    assert user is not None
    # Loaded collections make the ORM delete the children itself.
    assert len(user.refresh_tokens) == 3
    assert len(user.refresh_token_families) == 2
    db.session.delete(user)


def delete_with_core_statement(user_id: int) -> None:
    db.session.execute(sa.delete(User).where(User.id == user_id))


def delete_with_sql_text(user_id: int) -> None:
    table = db.engine.dialect.identifier_preparer.quote(User.__tablename__)
    # The table name comes from the model, quoted for the dialect ("user" is a
    # reserved word); the id is a bound parameter.
    statement = sa.text(f"DELETE FROM {table} WHERE id = :id")  # noqa: S608
    db.session.execute(statement, {"id": user_id})


DELETIONS = {
    "orm": delete_with_loaded_collections,
    "core": delete_with_core_statement,
    "sql": delete_with_sql_text,
}


@pytest.fixture
def alice_sessions(client: FlaskClient, alice: int) -> dict[str, Any]:
    """Two logins of alice, one of them refreshed once: 2 families, 3 tokens."""
    first = login(client)
    spent = first["refresh_token"]
    rotated = refresh(client, spent).json
    assert rotated is not None
    second = login(client)
    return {
        "refresh_tokens": [spent, rotated["refresh_token"], second["refresh_token"]],
        "access_token": second["access_token"],
    }


@pytest.mark.parametrize("deletion", list(DELETIONS))
def test_user_deletion_removes_tokens(
    app: Flask,
    client: FlaskClient,
    alice: int,
    bob: int,
    alice_sessions: dict[str, Any],
    deletion: str,
) -> None:
    bob_token = login(client, "bob")["refresh_token"]
    assert rows_of(app, alice) == (2, 3)

    with app.app_context():
        DELETIONS[deletion](alice)
        db.session.commit()

    assert rows_of(app, alice) == (0, 0)
    assert rows_of(app, bob) == (1, 1)
    for presented in alice_sessions["refresh_tokens"]:
        response = refresh(client, presented)
        assert response.status_code == 400
        assert response.json == INVALID_GRANT
    assert refresh(client, bob_token).status_code == 200


def test_deleted_user_access_token_rejected(
    app: Flask, client: FlaskClient, alice: int, alice_sessions: dict[str, Any]
) -> None:
    with app.app_context():
        delete_with_core_statement(alice)
        db.session.commit()

    response = client.get("/api/me", headers=bearer(alice_sessions["access_token"]))

    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_token",
        "error_description": (
            "The user of this access token no longer exists or is inactive."
        ),
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_connections_enforce_foreign_keys(app: Flask) -> None:
    with app.app_context():
        enabled = db.session.execute(sa.text("PRAGMA foreign_keys")).scalar_one()

    assert enabled == 1
