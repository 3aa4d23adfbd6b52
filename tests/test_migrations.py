"""The example app's migrations, from an empty database to the models and back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from helpers import app_config
from sqlalchemy.dialects import mysql

from example_app import create_app, db

APP_TABLES = {"user", "refresh_token_family", "refresh_token"}
VERSION_TABLE = "alembic_version"
DATETIME_COLUMNS = {
    "refresh_token_family": ["created_at", "expires_at", "revoked_at"],
    "refresh_token": ["created_at", "expires_at", "used_at"],
}


@pytest.fixture
def migration_app(fresh_database_url: str) -> Iterator[Flask]:
    """The example app on an empty database of its own."""
    app = create_app(app_config(fresh_database_url))
    with app.app_context():
        yield app
        db.engine.dispose()


def table_names() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def schema_differences() -> list[Any]:
    """Compare the database with the models as ``flask db migrate`` would."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, db.metadata))


def current_revision() -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(app: Flask) -> str | None:
    config = app.extensions["migrate"].migrate.get_config()
    return ScriptDirectory.from_config(config).get_current_head()


def test_upgrade_from_empty_matches_models(migration_app: Flask) -> None:
    assert table_names() == set()

    flask_migrate.upgrade()

    assert table_names() == APP_TABLES | {VERSION_TABLE}
    assert current_revision() == head_revision(migration_app)
    assert schema_differences() == []


def test_comparison_sees_missing_index(migration_app: Flask) -> None:
    """The comparison above can fail: a dropped index is reported."""
    flask_migrate.upgrade()
    name = "ix_refresh_token_family_expires_at"
    family = db.metadata.tables["refresh_token_family"]
    (index,) = [index for index in family.indexes if index.name == name]
    with db.engine.begin() as connection:
        index.drop(connection)

    differences = schema_differences()

    assert [(kind, index.name) for kind, index in differences] == [("add_index", name)]


def test_downgrade_to_base_drops_tables(migration_app: Flask) -> None:
    flask_migrate.upgrade()

    flask_migrate.downgrade(revision="base")

    assert table_names() == {VERSION_TABLE}
    assert current_revision() is None
    with db.engine.connect() as connection:
        versions = connection.execute(sa.text("SELECT * FROM alembic_version"))
        assert versions.all() == []


def test_upgrade_after_downgrade(migration_app: Flask) -> None:
    flask_migrate.upgrade()
    flask_migrate.downgrade(revision="base")

    flask_migrate.upgrade()

    assert table_names() == APP_TABLES | {VERSION_TABLE}
    assert schema_differences() == []


def test_datetime_columns_keep_microseconds(migration_app: Flask, backend: str) -> None:
    """Check the column types that the comparison cannot.

    Alembic compares type arguments only when both sides have the same number
    of them, so it would not report a MariaDB DATETIME without fsp=6.
    """
    flask_migrate.upgrade()
    inspector = sa.inspect(db.engine)

    for table, names in DATETIME_COLUMNS.items():
        columns = inspector.get_columns(table)
        types = {column["name"]: column["type"] for column in columns}
        for name in names:
            column_type = types[name]
            if backend == "mariadb":
                assert isinstance(column_type, mysql.DATETIME), (table, name)
                assert column_type.fsp == 6, (table, name)
            elif backend == "postgresql":
                assert isinstance(column_type, sa.TIMESTAMP), (table, name)
                assert column_type.timezone is True, (table, name)
            else:
                assert isinstance(column_type, sa.DATETIME), (table, name)


def test_upgrade_keeps_loggers_enabled(migration_app: Flask) -> None:
    """Migrations run in the app's process leave the app's loggers working.

    Alembic's env.py configures logging from alembic.ini, which by default
    disables every logger that exists at that moment.
    """
    library_logger = logging.getLogger("flask_refresh")
    app_logger = logging.getLogger("example_app")

    flask_migrate.upgrade()

    assert library_logger.disabled is False
    assert app_logger.disabled is False
