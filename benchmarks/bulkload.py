"""Filling flask-refresh's tables with many stored tokens, fast.

Rows are shaped like those of a busy app: families of :data:`TOKENS_PER_FAMILY`
tokens, all but the newest spent, spread over :data:`USER_COUNT` users. PostgreSQL
gets them through COPY; SQLite and MariaDB through executemany in chunks, which
PyMySQL sends as multi-row INSERTs.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from benchmarks.common import log

TOKENS_PER_FAMILY = 10
USER_COUNT = 1000
CHUNK_ROWS = 10_000

TOKEN_COLUMNS = (
    "id",
    "token_hash",
    "family_id",
    "user_id",
    "jwt_id",
    "created_at",
    "expires_at",
    "used_at",
    "replaced_by_id",
    "user_agent",
    "ip_address",
)
FAMILY_COLUMNS = (
    "id",
    "user_id",
    "created_at",
    "expires_at",
    "revoked_at",
    "revoked_reason",
)


def _row_id(milliseconds: int) -> str:
    # The layout of flask-refresh's ids: 48 bits of milliseconds, 80 random bits.
    return f"{milliseconds:012x}{secrets.token_hex(10)}"


def ensure_users(engine: sa.Engine, user_table: sa.Table) -> list[Any]:
    """Create :data:`USER_COUNT` users without passwords; return their ids."""
    with engine.begin() as connection:
        existing = connection.execute(
            sa.select(sa.func.count()).select_from(user_table)
        ).scalar_one()
        missing = USER_COUNT - existing
        if missing > 0:
            connection.execute(
                user_table.insert(),
                [
                    {
                        "username": f"load-{existing + i}",
                        "password_hash": "!",
                        "active": True,
                    }
                    for i in range(missing)
                ],
            )
        return list(
            connection.execute(sa.select(user_table.c.id).order_by(user_table.c.id))
            .scalars()
            .all()
        )


def generate_rows(
    count: int, user_ids: list[Any], *, expired: bool
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Yield chunks of (families, tokens) rows, ``count`` tokens in all.

    ``expired`` rows ended 60 days ago, past ``REFRESH_PURGE_AFTER``'s default;
    the others are live for two weeks, so no query can skip them by date.
    """
    now = datetime.now(UTC)
    if expired:
        created = now - timedelta(days=90)
        expires = now - timedelta(days=60)
    else:
        created = now - timedelta(hours=1)
        expires = now + timedelta(days=14)
    family_expires = expires + timedelta(days=16)
    # Ids older than any the app will issue, increasing like real ones.
    first_millisecond = int(created.timestamp() * 1000)

    produced = 0
    while produced < count:
        families: list[dict[str, Any]] = []
        tokens: list[dict[str, Any]] = []
        chunk = min(CHUNK_ROWS, count - produced)
        for start in range(0, chunk, TOKENS_PER_FAMILY):
            index = produced + start
            family_id = _row_id(first_millisecond + index)
            user_id = user_ids[(index // TOKENS_PER_FAMILY) % len(user_ids)]
            families.append(
                {
                    "id": family_id,
                    "user_id": user_id,
                    "created_at": created,
                    "expires_at": family_expires,
                    "revoked_at": None,
                    "revoked_reason": None,
                }
            )
            size = min(TOKENS_PER_FAMILY, chunk - start)
            ids = [_row_id(first_millisecond + index + k) for k in range(size)]
            for k in range(size):
                last = k == size - 1
                tokens.append(
                    {
                        "id": ids[k],
                        "token_hash": hashlib.sha256(
                            secrets.token_bytes(32)
                        ).hexdigest(),
                        "family_id": family_id,
                        "user_id": user_id,
                        "jwt_id": secrets.token_hex(16),
                        "created_at": created,
                        "expires_at": expires,
                        "used_at": None if last else created,
                        "replaced_by_id": None if last else ids[k + 1],
                        "user_agent": "bench-loader",
                        "ip_address": "127.0.0.1",
                    }
                )
        produced += chunk
        yield families, tokens


def load_tokens(app: Flask, count: int, *, expired: bool = False) -> float:
    """Insert ``count`` token rows (and their families); return the seconds taken."""
    from example_app import auth, db
    from example_app.models import User

    with app.app_context():
        engine = db.engine
    token_table: sa.Table = auth.models.token.__table__  # type: ignore[attr-defined]
    family_table: sa.Table = auth.models.family.__table__  # type: ignore[attr-defined]
    user_ids = ensure_users(engine, User.__table__)

    start = time.perf_counter()
    chunks = generate_rows(count, user_ids, expired=expired)
    if engine.dialect.name == "postgresql":
        _copy_postgresql(engine, chunks)
    else:
        with engine.begin() as connection:
            if engine.dialect.name in ("mysql", "mariadb"):
                # Only this loading session skips the checks; the rows are valid.
                connection.exec_driver_sql("SET unique_checks=0, foreign_key_checks=0")
            for families, tokens in chunks:
                connection.execute(family_table.insert(), families)
                connection.execute(token_table.insert(), tokens)
    _analyze(engine)
    elapsed = time.perf_counter() - start
    log(f"  loaded {count:,} tokens into {engine.url.database} in {elapsed:.0f} s")
    return elapsed


def _copy_postgresql(
    engine: sa.Engine,
    chunks: Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
) -> None:
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        for families, tokens in chunks:
            with cursor.copy(  # type: ignore[attr-defined]
                f"COPY refresh_token_family ({', '.join(FAMILY_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in families:
                    copy.write_row([row[name] for name in FAMILY_COLUMNS])
            with cursor.copy(  # type: ignore[attr-defined]
                f"COPY refresh_token ({', '.join(TOKEN_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in tokens:
                    copy.write_row([row[name] for name in TOKEN_COLUMNS])
        connection.commit()
    finally:
        connection.close()


def _analyze(engine: sa.Engine) -> None:
    """Refresh the planner statistics, as autovacuum or InnoDB would soon do.

    SQLite gets ANALYZE too, so that all three plan with statistics.
    """
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE refresh_token_family, refresh_token")
        elif engine.dialect.name in ("mysql", "mariadb"):
            connection.exec_driver_sql(
                "ANALYZE TABLE refresh_token_family, refresh_token"
            )
        else:
            connection.exec_driver_sql("ANALYZE")
