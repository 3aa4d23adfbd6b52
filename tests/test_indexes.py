"""Token lookups use an index, and no client-supplied value overflows a column.

Each database's EXPLAIN checks the statements that the library sends, captured
with their parameters during refresh, retry and logout requests. The tables
first get enough rows and fresh statistics that a planner would choose a full
scan if no index served the lookup.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD, bearer, create_user, login, refresh

from example_app import auth, db
from flask_refresh.tokens import hash_refresh_token, new_id

FILLER_ROWS = 3000
#: InnoDB's index key limit for the COMPACT and REDUNDANT row formats; the
#: default DYNAMIC format allows 3072 bytes.
INNODB_SMALLEST_KEY_BYTES = 767


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def fill_token_tables(user_id: int) -> None:
    """Insert FILLER_ROWS families with one token each, then refresh statistics."""
    family, token = auth.models.family, auth.models.token
    now = datetime.now(UTC)
    family_ids = [new_id() for _ in range(FILLER_ROWS)]
    db.session.execute(
        sa.insert(family),
        [
            {
                "id": family_id,
                "user_id": user_id,
                "created_at": now,
                "expires_at": now + timedelta(days=30),
            }
            for family_id in family_ids
        ],
    )
    db.session.execute(
        sa.insert(token),
        [
            {
                "id": new_id(),
                "token_hash": secrets.token_hex(32),
                "family_id": family_id,
                "user_id": user_id,
                "jwt_id": secrets.token_hex(16),
                "created_at": now,
                "expires_at": now + timedelta(days=14),
            }
            for family_id in family_ids
        ],
    )
    db.session.commit()

    dialect = db.engine.dialect.name
    with db.engine.connect() as connection:
        for table in ("user", "refresh_token_family", "refresh_token"):
            quoted = connection.dialect.identifier_preparer.quote(table)
            if dialect == "sqlite" or dialect == "postgresql":
                connection.exec_driver_sql(f"ANALYZE {quoted}")
            else:
                connection.exec_driver_sql(f"ANALYZE TABLE {quoted}").all()
        connection.commit()


@pytest.fixture
def captured_lookups(app: Flask) -> Iterator[list[tuple[str, Any]]]:
    """Capture every statement, with its parameters, that filters on token_hash."""
    with app.app_context():
        engine = db.engine
    captured: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any):
        if "refresh_token.token_hash =" in statement:
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    yield captured
    sa.event.remove(engine, "before_cursor_execute", record)


def explain(statement: str, parameters: Any) -> list[Any]:
    """Return the plan rows of ``statement`` without running it."""
    prefix = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
    with db.engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement, parameters).all()
        connection.rollback()
    return rows


def unique_index_name() -> str | None:
    """Return the name of the unique index on token_hash; None on SQLite."""
    constraints = sa.inspect(db.engine).get_unique_constraints("refresh_token")
    (constraint,) = [c for c in constraints if c["column_names"] == ["token_hash"]]
    return constraint["name"]


def assert_plan_uses_index(backend: str, statement: str, rows: list[Any]) -> None:
    if backend == "sqlite":
        # Rows are (id, parent, notused, detail).
        details = [row[-1] for row in rows]
        assert any(
            re.fullmatch(
                r"SEARCH refresh_token USING (COVERING )?INDEX \S+ \(token_hash=\?\)",
                detail,
            )
            for detail in details
        ), (statement, details)
        assert not any(
            re.match(r"SCAN refresh_token\b(?!_)", detail) for detail in details
        ), (statement, details)
    elif backend == "postgresql":
        plan = "\n".join(row[0] for row in rows)
        index = unique_index_name()
        assert re.search(
            rf"Index (Only )?Scan using {index} on refresh_token\b", plan
        ), (statement, plan)
        assert not re.search(r"Seq Scan on refresh_token\b(?!_)", plan), (
            statement,
            plan,
        )
    else:
        tables = [
            row._mapping for row in rows if row._mapping["table"] == "refresh_token"
        ]
        assert len(tables) == 1, (statement, rows)
        assert tables[0]["key"] == unique_index_name(), (statement, rows)
        assert tables[0]["type"] in ("const", "eq_ref", "ref", "range"), (
            statement,
            rows,
        )


def test_token_lookups_use_index(
    app: Flask,
    client: FlaskClient,
    alice: int,
    backend: str,
    captured_lookups: list[tuple[str, Any]],
) -> None:
    with app.app_context():
        fill_token_tables(alice)
    first = login(client)["refresh_token"]
    second = refresh(client, first).json["refresh_token"]  # type: ignore[index]
    assert refresh(client, first).status_code == 200  # a retry within the grace
    client.post("/auth/logout", json={"refresh_token": second})

    statements = dict(captured_lookups)
    kinds = {statement.split()[0] for statement in statements}
    # The spending UPDATE, the winner's and the loser's reads, and logout's. On
    # PostgreSQL the spend and the winner's read are one statement with CTEs.
    combined = backend == "postgresql"
    assert kinds == {"WITH" if combined else "UPDATE", "SELECT"}
    assert len(statements) >= (3 if combined else 4), list(statements)
    with app.app_context():
        for statement, parameters in statements.items():
            assert_plan_uses_index(backend, statement, explain(statement, parameters))


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_indexes_fit_mariadb_key_limit(app: Flask) -> None:
    """Every index of the token tables fits InnoDB's smallest key limit in utf8mb4."""
    query = sa.text(
        "SELECT s.INDEX_NAME, s.COLUMN_NAME, s.SUB_PART, c.CHARACTER_SET_NAME,"
        " c.CHARACTER_OCTET_LENGTH"
        " FROM information_schema.STATISTICS s"
        " JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA"
        " AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME"
        " WHERE s.TABLE_SCHEMA = DATABASE()"
        " AND s.TABLE_NAME IN ('refresh_token', 'refresh_token_family')"
    )
    with app.app_context():
        rows = [row._mapping for row in db.session.execute(query)]

    token_hash = [row for row in rows if row["COLUMN_NAME"] == "token_hash"]
    assert [row["INDEX_NAME"] for row in token_hash] == ["token_hash"]
    assert token_hash[0]["SUB_PART"] is None  # the whole column, not a prefix
    assert token_hash[0]["CHARACTER_SET_NAME"] == "utf8mb4"
    assert token_hash[0]["CHARACTER_OCTET_LENGTH"] == 64 * 4
    key_bytes: dict[str, int] = {}
    for row in rows:
        key_bytes.setdefault(row["INDEX_NAME"], 0)
        key_bytes[row["INDEX_NAME"]] += row["CHARACTER_OCTET_LENGTH"] or 8
    assert max(key_bytes.values()) <= INNODB_SMALLEST_KEY_BYTES, key_bytes


# ---------------------------------------------------------------------------
# Long values
# ---------------------------------------------------------------------------


def test_long_client_details_truncated(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    """A long User-Agent of 4-byte characters and a long address are cut to fit.

    PostgreSQL and MariaDB in strict mode reject values longer than the column,
    which would turn the login into a 503.
    """
    user_agent = "\N{GRINNING FACE}" * 5000
    address = "2001:db8::" + "f" * 100
    response = client.post(
        "/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"User-Agent": user_agent},
        environ_base={"REMOTE_ADDR": address},
    )
    assert response.status_code == 200
    rotated = client.post(
        "/auth/refresh",
        json={"refresh_token": response.json["refresh_token"]},  # type: ignore[index]
        headers={"User-Agent": user_agent},
        environ_base={"REMOTE_ADDR": address},
    )
    assert rotated.status_code == 200

    token = auth.models.token
    with app.app_context():
        rows = db.session.execute(sa.select(token.user_agent, token.ip_address)).all()
    assert len(rows) == 2
    for stored_agent, stored_address in rows:
        assert stored_agent == user_agent[:255]
        assert stored_address == address[:45]


@pytest.mark.parametrize(
    ("path", "field", "status"),
    [
        ("/auth/refresh", "refresh_token", 400),
        ("/auth/logout", "refresh_token", 204),
        ("/auth/revoke", "token", 200),
    ],
)
def test_long_token_never_reaches_database(
    client: FlaskClient,
    alice: int,
    captured_lookups: list[tuple[str, Any]],
    path: str,
    field: str,
    status: int,
) -> None:
    """Tokens up to REFRESH_MAX_TOKEN_LENGTH (4096) get the route's response
    for an unknown token, and longer ones are an invalid request: 400, or 413
    when the body is also longer than REFRESH_MAX_CONTENT_LENGTH (16 KiB)."""
    at_limit = client.post(path, json={field: "A" * 4096})
    over_limit = [
        (client.post(path, json={field: "A" * length}), expected)
        for length, expected in ((4097, 400), (100_000, 413))
    ]

    assert at_limit.status_code == status
    for response, expected in over_limit:
        assert response.status_code == expected
        assert response.json is not None
        assert response.json["error"] == "invalid_request"
    assert captured_lookups == []


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_ISSUER": "https://" + "i" * 1200, "REFRESH_AUDIENCE": "a" * 1200}],
)
def test_large_claims_stay_out_of_columns(
    app: Flask, client: FlaskClient, alice: int
) -> None:
    """Claims live in the signed access token; the table keeps a 32-character id."""
    first = login(client)
    response = refresh(client, first["refresh_token"])

    assert response.status_code == 200
    access_token = response.json["access_token"]  # type: ignore[index]
    assert len(access_token) > 3000
    assert client.get("/api/me", headers=bearer(access_token)).status_code == 200
    token = auth.models.token
    with app.app_context():
        jwt_ids = db.session.execute(sa.select(token.jwt_id)).scalars().all()
    assert [len(jwt_id) for jwt_id in jwt_ids] == [32, 32]


def test_longest_username_logs_in(app: Flask, client: FlaskClient) -> None:
    username = "u" * 80  # the width of the example app's username column
    create_user(app, username)

    assert login(client, username)["token_type"] == "Bearer"
    too_long = client.post(
        "/auth/login", json={"username": "u" * 255, "password": PASSWORD}
    )
    assert too_long.status_code == 400
    assert too_long.json is not None
    assert too_long.json["error"] == "invalid_grant"


def test_hash_is_the_stored_width() -> None:
    assert len(hash_refresh_token("A" * 43)) == 64
