"""Host user models with integer, UUID and string primary keys.

Each test builds its own ``db`` (see host_apps.py) and, where it needs tables, runs
on a new empty database of every backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import SECRET_KEY, bearer, login, refresh
from host_apps import PRIMARY_KEY_KINDS, USER_TABLE, Host, build_host

from flask_refresh import RefreshAuth
from flask_refresh.models import FAMILY_TABLE, TOKEN_TABLE

TOKEN_TABLES = (TOKEN_TABLE, FAMILY_TABLE)
PRIMARY_KEY_TYPES = {"integer": int, "uuid": uuid.UUID, "string": str}


@pytest.fixture(params=PRIMARY_KEY_KINDS)
def host(request: pytest.FixtureRequest) -> Host:
    return build_host(request.param)


@pytest.fixture
def auth(host: Host) -> RefreshAuth:
    return RefreshAuth(db=host.db, user_model=host.user_model)


@pytest.fixture
def app(host: Host, auth: RefreshAuth, fresh_database_url: str) -> Iterator[Flask]:
    app = host.new_app(fresh_database_url)
    auth.init_app(app)
    host.create_tables(app)
    yield app
    host.close(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def alice(host: Host, app: Flask) -> Any:
    return host.add_user(app, "alice")


def reflected_columns(app: Flask, host: Host, table: str) -> dict[str, Any]:
    with app.app_context():
        inspector = sa.inspect(host.db.engine)
        return {column["name"]: column for column in inspector.get_columns(table)}


def reflected_user_foreign_key(app: Flask, host: Host, table: str) -> dict[str, Any]:
    with app.app_context():
        inspector = sa.inspect(host.db.engine)
        keys = [
            key
            for key in inspector.get_foreign_keys(table)
            if key["constrained_columns"] == ["user_id"]
        ]
    assert len(keys) == 1, keys
    return keys[0]


def compiled_type(app: Flask, host: Host, column: dict[str, Any]) -> str:
    with app.app_context():
        return str(column["type"].compile(dialect=host.db.engine.dialect))


def test_token_tables_on_host_metadata(host: Host, auth: RefreshAuth) -> None:
    # Flask-Migrate's autogenerate compares db.metadata with the database, so the
    # token tables must be on the host's metadata, next to the user table.
    assert set(host.db.metadata.tables) == {USER_TABLE, *TOKEN_TABLES}
    assert auth.models.token.__table__ is host.db.metadata.tables[TOKEN_TABLE]
    assert auth.models.family.__table__ is host.db.metadata.tables[FAMILY_TABLE]


def test_foreign_key_type_copies_primary_key(host: Host, auth: RefreshAuth) -> None:
    primary_key = host.user_model.__table__.c.id

    for model in (auth.models.token, auth.models.family):
        user_id = model.__table__.c.user_id
        assert type(user_id.type) is type(primary_key.type), model.__tablename__
        assert repr(user_id.type) == repr(primary_key.type), model.__tablename__
        assert user_id.nullable is False, model.__tablename__


def test_foreign_key_cascades_in_metadata(host: Host, auth: RefreshAuth) -> None:
    for model in (auth.models.token, auth.models.family):
        (foreign_key,) = model.__table__.c.user_id.foreign_keys
        assert foreign_key.column is host.user_model.__table__.c.id
        assert foreign_key.ondelete == "CASCADE"


def test_reflected_foreign_key_type_matches(app: Flask, host: Host) -> None:
    primary_key = reflected_columns(app, host, USER_TABLE)["id"]
    expected = compiled_type(app, host, primary_key)

    for table in TOKEN_TABLES:
        user_id = reflected_columns(app, host, table)["user_id"]
        assert compiled_type(app, host, user_id) == expected, table
        assert user_id["nullable"] is False, table


def test_reflected_foreign_key_cascades(app: Flask, host: Host) -> None:
    for table in TOKEN_TABLES:
        foreign_key = reflected_user_foreign_key(app, host, table)
        assert foreign_key["referred_table"] == USER_TABLE, table
        assert foreign_key["referred_columns"] == ["id"], table
        assert foreign_key["options"].get("ondelete") == "CASCADE", table


def test_deleting_user_deletes_tokens(
    app: Flask, host: Host, auth: RefreshAuth, client: FlaskClient, alice: Any
) -> None:
    login(client)

    with app.app_context():
        # A bulk DELETE bypasses the ORM's relationship cascades, so only the
        # database's ON DELETE CASCADE can remove the token rows.
        host.db.session.execute(
            sa.delete(host.user_model).where(host.user_model.id == alice)
        )
        host.db.session.commit()
        tokens = host.db.session.execute(sa.select(auth.models.token)).all()
        families = host.db.session.execute(sa.select(auth.models.family)).all()

    assert tokens == []
    assert families == []


def test_login_refresh_and_me_work(client: FlaskClient, host: Host, alice: Any) -> None:
    body = login(client)
    me = client.get("/me", headers=bearer(body["access_token"]))
    refreshed = refresh(client, body["refresh_token"])

    assert me.status_code == 200
    assert me.json == {"id": str(alice), "username": "alice", "sub": str(alice)}
    assert refreshed.status_code == 200
    assert refreshed.json is not None
    me_again = client.get("/me", headers=bearer(refreshed.json["access_token"]))
    assert me_again.status_code == 200
    assert me_again.json == me.json


def test_token_rows_store_primary_key(
    app: Flask, host: Host, auth: RefreshAuth, client: FlaskClient, alice: Any
) -> None:
    body = login(client)
    assert refresh(client, body["refresh_token"]).status_code == 200

    with app.app_context():
        tokens = host.db.session.execute(sa.select(auth.models.token)).scalars().all()
        family = host.db.session.execute(sa.select(auth.models.family)).scalar_one()

    assert isinstance(alice, PRIMARY_KEY_TYPES[host.primary_key_kind])
    assert len(tokens) == 2
    for token in tokens:
        assert token.user_id == alice
        assert type(token.user_id) is type(alice)
    assert family.user_id == alice
    assert type(family.user_id) is type(alice)


def test_user_relationships_navigable(
    app: Flask, host: Host, auth: RefreshAuth, client: FlaskClient, alice: Any
) -> None:
    body = login(client)
    assert refresh(client, body["refresh_token"]).status_code == 200
    session_id = jwt.decode(body["access_token"], SECRET_KEY, algorithms=["HS256"])[
        "sid"
    ]

    with app.app_context():
        user = host.db.session.get(host.user_model, alice)
        token_ids = set(
            host.db.session.execute(sa.select(auth.models.token.id)).scalars()
        )

        assert {token.id for token in user.refresh_tokens} == token_ids
        assert [family.id for family in user.refresh_token_families] == [session_id]
        family = user.refresh_token_families[0]
        assert family.user is user
        assert {token.id for token in family.tokens} == token_ids
        for token in user.refresh_tokens:
            assert token.user is user
            assert token.family is family


def test_uuid_subject_round_trips(fresh_database_url: str) -> None:
    host = build_host("uuid")
    auth = RefreshAuth(db=host.db, user_model=host.user_model)
    app = host.new_app(fresh_database_url)
    auth.init_app(app)
    host.create_tables(app)
    try:
        user_id = host.add_user(app, "alice")
        client = app.test_client()
        body = login(client)
        claims = jwt.decode(body["access_token"], SECRET_KEY, algorithms=["HS256"])
        me = client.get("/me", headers=bearer(body["access_token"]))
    finally:
        host.close(app)

    # Flask-Login's get_id() gives the canonical hyphenated form, and the user
    # loader turns it back into the UUID primary key.
    assert claims["sub"] == str(user_id)
    assert uuid.UUID(claims["sub"]) == user_id
    assert host.loaded_subjects == [str(user_id)]
    assert me.status_code == 200
    assert me.json is not None
    assert me.json["id"] == str(user_id)
