"""The SQL of a rotation's winning path, built once, and its isolation level.

Building SQLAlchemy statements costs more Python time than running them, so the
three statements a winning rotation sends are built once per set of models, with
bound parameters, and SQLAlchemy's compiled cache does the rest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .models import Models
from .types import UTCDateTime

if TYPE_CHECKING:
    from .extension import State

# Parameter names differ from column names: SQLAlchemy rejects a bound parameter
# named like a column in the SET clause of that column's table.
SPENT_HASH = "spent_hash"
NOW = "rotation_now"
#: ``now`` minus ``REFRESH_LEEWAY``: a token or session is live while its expiry is
#: after this instant.
EXPIRY_CUTOFF = "expiry_cutoff"
SUCCESSOR_ID = "successor_id"


@dataclass(frozen=True)
class RotationStatements:
    """The statements of a winning rotation, in the order they run."""

    #: Spends the token: matches exactly one row for exactly one caller.
    spend: sa.Update
    #: Reads the spent token's user id, family, session end, the family's
    #: additional claims and the user object.
    read_spent: sa.Select[Any]
    #: Inserts the successor; takes the token table's columns as parameters.
    insert_successor: sa.Insert


@functools.cache
def rotation_statements(models: Models) -> RotationStatements:
    """Build the rotation statements for ``models``."""
    token = sa.inspect(models.token).local_table
    family = sa.inspect(models.family).local_table
    user = models.user
    user_pk = getattr(user, models.user_id_attribute)

    def now() -> sa.BindParameter[Any]:
        return sa.bindparam(NOW, type_=UTCDateTime())

    def expiry_cutoff() -> sa.BindParameter[Any]:
        return sa.bindparam(EXPIRY_CUTOFF, type_=UTCDateTime())

    family_is_live = (
        sa.select(family.c.id)
        .where(
            family.c.id == token.c.family_id,
            family.c.revoked_at.is_(None),
            family.c.expires_at > expiry_cutoff(),
        )
        .exists()
    )
    spend = (
        sa.update(token)
        .where(
            token.c.token_hash == sa.bindparam(SPENT_HASH),
            token.c.used_at.is_(None),
            token.c.expires_at > expiry_cutoff(),
            family_is_live,
        )
        .values(used_at=now(), replaced_by_id=sa.bindparam(SUCCESSOR_ID))
    )
    read_spent = (
        sa.select(
            token.c.user_id,
            family.c.id.label("family_id"),
            family.c.expires_at.label("session_expires_at"),
            family.c.claims,
            user,
        )
        .join_from(token, family, family.c.id == token.c.family_id)
        .join(user, user_pk == token.c.user_id)
        .where(token.c.token_hash == sa.bindparam(SPENT_HASH))
    )

    return RotationStatements(
        spend=spend, read_spent=read_spent, insert_successor=sa.insert(token)
    )


def use_read_committed(state: State) -> None:
    """Run the next transaction at READ COMMITTED on PostgreSQL and MariaDB.

    The conditional UPDATE's row lock is all rotation needs, and stricter levels
    turn waiting losers into errors. At MariaDB's default REPEATABLE READ the
    spending UPDATE takes a next-key lock, and when the winner inserts its successor
    into the token_hash gap that lock covers, InnoDB rolls back the waiting losers
    as deadlock victims. At PostgreSQL's REPEATABLE READ or SERIALIZABLE, every
    loser that waited for the row fails with a serialization failure.
    """
    session = state.db.session()
    # NOTE: a transaction the host app began in this request before the refresh
    # keeps its isolation level, because it cannot change midway.
    if session.in_transaction():
        return

    mapper = state.models.token
    bind_arguments: dict[str, Any] = {"mapper": mapper}
    engine = session.get_bind(mapper=mapper)
    if engine.dialect.name == "sqlite" or _starts_at_read_committed(engine):
        return

    if engine.dialect.name == "postgresql":
        # psycopg sends the level with its BEGIN, so this costs no round trip.
        session.connection(
            bind_arguments=bind_arguments,
            execution_options={"isolation_level": "READ COMMITTED"},
        )
    elif engine.dialect.name in ("mysql", "mariadb"):
        # Applies to the next transaction only, so nothing has to be reset when
        # the connection returns to the pool: one statement instead of four.
        session.execute(
            sa.text("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            bind_arguments=bind_arguments,
        )


def _starts_at_read_committed(engine: sa.Engine | sa.Connection) -> bool:
    """Return whether the engine's connections begin at READ COMMITTED.

    PostgreSQL does by default, so most apps pay nothing here.
    """
    dialect = engine.dialect
    level = (
        engine.get_execution_options().get("isolation_level")
        # NOTE: create_engine(isolation_level=...) is kept only in this private
        # attribute; without it a configured level would go unnoticed.
        or getattr(dialect, "_on_connect_isolation_level", None)
        # Set by the engine's first connection, and missing before it.
        or getattr(dialect, "default_isolation_level", None)
    )
    return bool(level == "READ COMMITTED")
