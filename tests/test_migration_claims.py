"""The revision that adds ``refresh_token_family.claims``, on a database with data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask
from helpers import app_config

from example_app import create_app, db
from flask_refresh.types import UTCDateTime

BEFORE_CLAIMS = "d615e10e2fd7"
CLAIMS_REVISION = "5b2c9e41d7a3"


@pytest.fixture
def migration_app(fresh_database_url: str) -> Iterator[Flask]:
    app = create_app(app_config(fresh_database_url))
    with app.app_context():
        yield app
        db.engine.dispose()


def family_columns() -> set[str]:
    inspector = sa.inspect(db.engine)
    return {column["name"] for column in inspector.get_columns("refresh_token_family")}


def insert_session() -> None:
    """Insert a user and a family as the schema before the revision has them."""
    now = datetime.now(UTC)
    user = sa.table(
        "user",
        sa.column("id"),
        sa.column("username"),
        sa.column("password_hash"),
        sa.column("active"),
    )
    family = sa.table(
        "refresh_token_family",
        sa.column("id"),
        sa.column("user_id"),
        sa.column("created_at", UTCDateTime()),
        sa.column("expires_at", UTCDateTime()),
    )
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(user).values(
                id=1, username="alice", password_hash="x", active=True
            )
        )
        connection.execute(
            sa.insert(family).values(
                id="f" * 32,
                user_id=1,
                created_at=now,
                expires_at=now + timedelta(days=1),
            )
        )


def family_ids() -> list[str]:
    with db.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id FROM refresh_token_family"))
        return [row[0] for row in rows]


def test_upgrade_adds_empty_claims(migration_app: Flask) -> None:
    flask_migrate.upgrade(revision=BEFORE_CLAIMS)
    assert "claims" not in family_columns()
    insert_session()

    flask_migrate.upgrade(revision=CLAIMS_REVISION)

    assert "claims" in family_columns()
    with db.engine.connect() as connection:
        claims = connection.execute(
            sa.text("SELECT claims FROM refresh_token_family")
        ).scalar_one()
    assert claims is None


def test_downgrade_drops_claims_keeps_rows(migration_app: Flask) -> None:
    flask_migrate.upgrade(revision=BEFORE_CLAIMS)
    insert_session()
    flask_migrate.upgrade(revision=CLAIMS_REVISION)

    flask_migrate.downgrade(revision=BEFORE_CLAIMS)

    assert "claims" not in family_columns()
    assert family_ids() == ["f" * 32]
