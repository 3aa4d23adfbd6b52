"""Counting SQL statements and database round trips per operation.

Two independent counts are taken while an operation runs:

* What the library requested. For SQLAlchemy: ``before_cursor_execute`` events
  (statements), ``begin``, ``commit`` and ``rollback`` events of the connection,
  and the pool's ``reset`` event (the rollback SQLAlchemy's pool performs when a
  connection is returned). For Django: statements seen by
  ``connection.execute_wrapper``.
* What went to the database, counted at the driver:

  - PostgreSQL (psycopg on libpq): ReadyForQuery messages in libpq's protocol
    trace. The server sends one at the end of each client round trip, a simple
    query or an extended-protocol batch ending with Sync.
  - MariaDB (PyMySQL): calls of ``Connection._execute_command``, one per client
    command (query, COMMIT, ROLLBACK).
  - SQLite: calls of the sqlite3 module's trace callback, one per statement
    SQLite runs, the BEGIN and COMMIT that the module issues by itself included.
    These are function calls, not network round trips.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa


@dataclass
class Counts:
    """Totals over one counted run."""

    #: Statements the library executed, BEGIN and COMMIT excluded unless the
    #: library sent them as SQL itself (Django's savepoints, for example).
    statements: int = 0
    #: Statements by their first keyword (SELECT, UPDATE, ...).
    kinds: Counter[str] = field(default_factory=Counter)
    #: Transactions begun, committed and rolled back, as SQLAlchemy reports them.
    begins: int = 0
    commits: int = 0
    rollbacks: int = 0
    #: Connections reset (rolled back) by the pool on return.
    pool_resets: int = 0
    #: Round trips counted at the driver (see the module docstring).
    wire: int = 0

    def per(self, operations: int) -> dict[str, Any]:
        """Return the counts divided by the number of operations."""
        return {
            "statements": self.statements / operations,
            "kinds": {k: v / operations for k, v in sorted(self.kinds.items())},
            "begins": self.begins / operations,
            "commits": self.commits / operations,
            "rollbacks": self.rollbacks / operations,
            "pool_resets": self.pool_resets / operations,
            "wire": self.wire / operations,
        }


def first_keyword(statement: str) -> str:
    """Return the upper-cased first word of an SQL statement."""
    words = statement.lstrip().split(None, 1)
    return words[0].upper() if words else ""


# ---------------------------------------------------------------------------
# Driver-level round trips
# ---------------------------------------------------------------------------


class WireCounter:
    """Counts round trips of DBAPI connections at the driver, see the module doc."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._traced: dict[int, tuple[Any, Path | None]] = {}
        self._sqlite_count = 0
        self._mysql_count = 0
        self._directory = Path(tempfile.mkdtemp(prefix="bench-trace-"))
        self._restore: Callable[[], None] | None = None

    def start(self) -> None:
        """Start counting; call :meth:`attach` for every connection to count."""
        if self.backend == "mariadb":
            import pymysql.connections

            original = pymysql.connections.Connection._execute_command

            def counting(connection: Any, command: int, sql: Any) -> Any:
                self._mysql_count += 1
                return original(connection, command, sql)

            pymysql.connections.Connection._execute_command = counting  # type: ignore[method-assign]

            def restore() -> None:
                pymysql.connections.Connection._execute_command = original  # type: ignore[method-assign]

            self._restore = restore

    def attach(self, dbapi_connection: Any) -> None:
        """Count the round trips of one DBAPI connection from now on."""
        key = id(dbapi_connection)
        if key in self._traced:
            return
        if self.backend == "postgresql":
            path = self._directory / f"libpq-{len(self._traced)}.trace"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            dbapi_connection.pgconn.trace(descriptor)
            self._traced[key] = (dbapi_connection, path)
        elif self.backend == "sqlite":

            def count(statement: str) -> None:
                self._sqlite_count += 1

            dbapi_connection.set_trace_callback(count)
            self._traced[key] = (dbapi_connection, None)
        else:
            self._traced[key] = (dbapi_connection, None)

    def stop(self) -> int:
        """Stop counting and return the round trips counted."""
        if self._restore is not None:
            self._restore()
        total = 0
        for dbapi_connection, path in self._traced.values():
            if self.backend == "postgresql":
                dbapi_connection.pgconn.untrace()
                assert path is not None
                total += sum(
                    1
                    for line in path.read_text().splitlines()
                    if "ReadyForQuery" in line
                )
                path.unlink()
            elif self.backend == "sqlite":
                dbapi_connection.set_trace_callback(None)
        self._traced.clear()
        self._directory.rmdir()
        if self.backend == "sqlite":
            total = self._sqlite_count
        elif self.backend == "mariadb":
            total = self._mysql_count
        return total


# ---------------------------------------------------------------------------
# SQLAlchemy
# ---------------------------------------------------------------------------


@contextmanager
def count_sqlalchemy(engine: sa.Engine) -> Iterator[Counts]:
    """Count what ``engine`` executes inside the block.

    Connections are traced from their first checkout inside the block. Run the
    operation once before counting, so that opening connections is not counted.
    """
    counts = Counts()
    backend = engine.dialect.name
    wire = WireCounter("mariadb" if backend == "mysql" else backend)

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts.statements += 1
        counts.kinds[first_keyword(statement)] += 1

    def on_begin(conn: Any) -> None:
        counts.begins += 1

    def on_commit(conn: Any) -> None:
        counts.commits += 1

    def on_rollback(conn: Any) -> None:
        counts.rollbacks += 1

    def on_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
        counts.pool_resets += 1

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        wire.attach(dbapi_connection)

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        (engine, "before_cursor_execute", on_execute),
        (engine, "begin", on_begin),
        (engine, "commit", on_commit),
        (engine, "rollback", on_rollback),
        (engine.pool, "reset", on_reset),
        (engine.pool, "checkout", on_checkout),
    ]
    wire.start()
    for target, name, function in listeners:
        sa.event.listen(target, name, function)
    try:
        yield counts
    finally:
        for target, name, function in listeners:
            sa.event.remove(target, name, function)
        counts.wire = wire.stop()


# ---------------------------------------------------------------------------
# Django
# ---------------------------------------------------------------------------


@contextmanager
def count_django(connection: Any, backend: str) -> Iterator[Counts]:
    """Count what Django's ``connection`` executes inside the block.

    The connection must be open (run the operation once first); Django keeps it
    open between requests with ``CONN_MAX_AGE=None``.
    """
    counts = Counts()
    wire = WireCounter(backend)

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counts.statements += 1
        counts.kinds[first_keyword(sql)] += 1
        return execute(sql, params, many, context)

    wire.start()
    wire.attach(connection.connection)
    try:
        with connection.execute_wrapper(wrapper):
            yield counts
    finally:
        counts.wire = wire.stop()
