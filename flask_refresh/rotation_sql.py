"""The SQL of a rotation's winning path, built once, and its isolation level.

Building SQLAlchemy statements costs more Python time than running them, so the
statements a winning rotation sends are built once per set of models, with bound
parameters, and SQLAlchemy's compiled cache does the rest.

PostgreSQL runs the whole winning path as one statement: the spending UPDATE and
the successor's INSERT are data-modifying CTEs, so a refresh costs three round
trips (BEGIN, the statement, COMMIT) instead of five. SQLite and MariaDB cannot
modify data in a CTE, and MariaDB has no ``UPDATE ... RETURNING``, so they send the
UPDATE, a SELECT and the INSERT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

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
#: The successor's columns, as parameters of the combined statement.
SUCCESSOR_HASH = "successor_hash"
JWT_ID = "successor_jwt_id"
#: ``now`` plus ``REFRESH_IDLE_TIMEOUT``, capped by the session's end in SQL.
IDLE_END = "idle_end"
USER_AGENT = "successor_user_agent"
IP_ADDRESS = "successor_ip_address"


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


def _tables(models: Models) -> tuple[sa.Table, sa.Table]:
    """Return the token and family tables of ``models``."""
    token = sa.inspect(models.token).local_table
    family = sa.inspect(models.family).local_table
    return cast(sa.Table, token), cast(sa.Table, family)


def _spendable(token: sa.Table) -> list[sa.ColumnElement[bool]]:
    """Return the conditions on the presented token's row for it to be spent."""
    return [
        token.c.token_hash == sa.bindparam(SPENT_HASH),
        token.c.used_at.is_(None),
        token.c.expires_at > _cutoff_parameter(),
    ]


def _family_live(token: sa.Table, family: sa.Table) -> list[sa.ColumnElement[bool]]:
    """Return the conditions for the token's family to be live."""
    return [
        family.c.id == token.c.family_id,
        family.c.revoked_at.is_(None),
        family.c.expires_at > _cutoff_parameter(),
    ]


def _now_parameter() -> sa.BindParameter[Any]:
    """Return the bound parameter of the rotation's instant."""
    return sa.bindparam(NOW, type_=UTCDateTime())


def _cutoff_parameter() -> sa.BindParameter[Any]:
    """Return the bound parameter that live expiry dates are after."""
    return sa.bindparam(EXPIRY_CUTOFF, type_=UTCDateTime())


@functools.cache
def rotation_statements(models: Models) -> RotationStatements:
    """Build the rotation statements for ``models``."""
    token, family = _tables(models)
    user = models.user
    user_pk = getattr(user, models.user_id_attribute)

    family_is_live = sa.select(family.c.id).where(*_family_live(token, family)).exists()
    spend = (
        sa.update(token)
        .where(*_spendable(token), family_is_live)
        .values(used_at=_now_parameter(), replaced_by_id=sa.bindparam(SUCCESSOR_ID))
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
        # Outer, so that a user the host's loader criteria hide reads as None
        # instead of losing the whole row.
        .outerjoin(user, user_pk == token.c.user_id)
        .where(token.c.token_hash == sa.bindparam(SPENT_HASH))
    )

    return RotationStatements(
        spend=spend, read_spent=read_spent, insert_successor=sa.insert(token)
    )


@functools.cache
def combined_rotation(models: Models) -> sa.Select[Any]:
    """Build PostgreSQL's one-statement rotation for ``models``.

    It spends the token, inserts the successor and returns what
    :attr:`RotationStatements.read_spent` returns, followed by the successor's
    expiry. It returns no row when the token was not spent, and then wrote
    nothing. The user's row is read, not locked, as in the other path.
    """
    token, family = _tables(models)
    user = models.user
    user_pk = getattr(user, models.user_id_attribute)

    def column_value(name: str, column: str) -> sa.BindParameter[Any]:
        return sa.bindparam(name, type_=token.c[column].type)

    spent = (
        sa.update(token)
        # With the family's conditions in the WHERE clause, this renders UPDATE
        # ... FROM, so that RETURNING can give the family's columns.
        .where(*_spendable(token), *_family_live(token, family))
        .values(used_at=_now_parameter(), replaced_by_id=sa.bindparam(SUCCESSOR_ID))
        .returning(
            token.c.user_id,
            token.c.family_id,
            family.c.expires_at.label("session_expires_at"),
            family.c.claims,
        )
        .cte("spent")
    )
    successor_columns = {
        "id": column_value(SUCCESSOR_ID, "id"),
        "token_hash": column_value(SUCCESSOR_HASH, "token_hash"),
        "family_id": spent.c.family_id,
        "user_id": spent.c.user_id,
        "jwt_id": column_value(JWT_ID, "jwt_id"),
        "created_at": _now_parameter(),
        "expires_at": sa.func.least(
            sa.bindparam(IDLE_END, type_=UTCDateTime()),
            spent.c.session_expires_at,
            type_=UTCDateTime(),
        ),
        "user_agent": column_value(USER_AGENT, "user_agent"),
        "ip_address": column_value(IP_ADDRESS, "ip_address"),
    }
    successor = (
        sa.insert(token)
        .from_select(
            list(successor_columns),
            sa.select(*successor_columns.values()).select_from(spent),
        )
        .returning(token.c.expires_at)
        .cte("successor")
    )
    return (
        sa.select(
            spent.c.user_id,
            spent.c.family_id,
            spent.c.session_expires_at,
            spent.c.claims,
            user,
            successor.c.expires_at,
        )
        .select_from(spent)
        .join(successor, sa.true())
        .outerjoin(user, user_pk == spent.c.user_id)
    )


def use_read_committed(state: State) -> str:
    """Run the next transaction at READ COMMITTED on PostgreSQL and MariaDB.

    Return the name of the database's dialect, which decides the statements.

    The conditional UPDATE's row lock is all rotation needs, and stricter levels
    turn waiting losers into errors. At MariaDB's default REPEATABLE READ the
    spending UPDATE takes a next-key lock, and when the winner inserts its successor
    into the token_hash gap that lock covers, InnoDB rolls back the waiting losers
    as deadlock victims. At PostgreSQL's REPEATABLE READ or SERIALIZABLE, every
    loser that waited for the row fails with a serialization failure.
    """
    session = state.db.session()
    mapper = state.models.token
    engine = session.get_bind(mapper=mapper)
    dialect = engine.dialect.name
    # NOTE: a transaction the host app began in this request before the refresh
    # keeps its isolation level, because it cannot change midway.
    if (
        dialect == "sqlite"
        or session.in_transaction()
        or _starts_at_read_committed(engine)
    ):
        return dialect

    bind_arguments: dict[str, Any] = {"mapper": mapper}
    if dialect == "postgresql":
        # psycopg sends the level with its BEGIN, so this costs no round trip.
        session.connection(
            bind_arguments=bind_arguments,
            execution_options={"isolation_level": "READ COMMITTED"},
        )
    elif dialect in ("mysql", "mariadb"):
        # Applies to the next transaction only, so nothing has to be reset when
        # the connection returns to the pool: one statement instead of four.
        session.execute(
            sa.text("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            bind_arguments=bind_arguments,
        )
    return dialect


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
