"""Database failures between spending a refresh token and committing its successor.

Each test makes the database fail during a refresh with a real mechanism. A
second connection terminates or kills the app's connection, holds a lock that
the app's INSERT needs, closes a deadlock cycle, or commits a conflicting
serializable transaction, and a trigger rejects the INSERT. SQLAlchemy engine
events pick the moment: before or after the statement that spends the token (on
PostgreSQL it also inserts the successor), or just before COMMIT.

Every failure must give 503 ``temporarily_unavailable`` with Retry-After, roll
the transaction back (``used_at`` NULL again, no successor row), and leave the
token usable: the retry rotates it to the successor the failed attempt would
have issued.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import create_user, login, refresh

from example_app import auth, db
from example_app.models import User
from flask_refresh import get_state
from flask_refresh.tokens import derive_successor, hash_refresh_token

SPEND = "UPDATE refresh_token SET used_at"
SERVER_BACKENDS = pytest.mark.parametrize(
    "backend", ["postgresql", "mariadb"], indirect=True
)
WAIT_TIMEOUT_SECONDS = 10.0

DBAPIAction = Callable[[Any], None]


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


@pytest.fixture
def other_engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine of its own: a second client of the database under test."""
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    yield engine
    engine.dispose()


@contextlib.contextmanager
def after_statement(app: Flask, part: str, action: DBAPIAction) -> Iterator[list[str]]:
    """Call ``action(dbapi_connection)`` once, after the first statement containing
    ``part``.

    Yields the list of statements the action ran after, to check it fired.
    """
    with app.app_context():
        engine = db.engine
    fired: list[str] = []

    def listener(conn: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
        if not fired and part in statement:
            fired.append(statement)
            action(conn.connection.dbapi_connection)

    sa.event.listen(engine, "after_cursor_execute", listener)
    try:
        yield fired
    finally:
        sa.event.remove(engine, "after_cursor_execute", listener)


@contextlib.contextmanager
def before_statement(app: Flask, part: str, action: DBAPIAction) -> Iterator[list[str]]:
    """Call ``action(dbapi_connection)`` once, before the first statement containing
    ``part``."""
    with app.app_context():
        engine = db.engine
    fired: list[str] = []

    def listener(conn: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
        if not fired and part in statement:
            fired.append(statement)
            action(conn.connection.dbapi_connection)

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield fired
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


@contextlib.contextmanager
def before_commit(app: Flask, action: DBAPIAction) -> Iterator[list[str]]:
    """Call ``action(dbapi_connection)`` once, before the next COMMIT is sent."""
    with app.app_context():
        engine = db.engine
    fired: list[str] = []

    def listener(conn: sa.Connection) -> None:
        if not fired:
            fired.append("COMMIT")
            action(conn.connection.dbapi_connection)

    sa.event.listen(engine, "commit", listener)
    try:
        yield fired
    finally:
        sa.event.remove(engine, "commit", listener)


def before_insert(
    backend: str, app: Flask, action: DBAPIAction
) -> contextlib.AbstractContextManager[list[str]]:
    """Call ``action(dbapi_connection)`` once, before the successor's INSERT.

    On PostgreSQL the spending UPDATE and the INSERT are one statement, so the
    action runs before that statement. On MariaDB it runs after the UPDATE.
    """
    if backend == "postgresql":
        return before_statement(app, SPEND, action)
    return after_statement(app, SPEND, action)


def run_query(dbapi_connection: Any, statement: str) -> Any:
    """Run ``statement`` on a DBAPI connection and return the first value."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
        row = cursor.fetchone() if cursor.description else None
    finally:
        cursor.close()
    return None if row is None else row[0]


def session_id(backend: str, dbapi_connection: Any) -> int:
    """Return the server's id of a connection: its PID or connection id."""
    if backend == "postgresql":
        return int(run_query(dbapi_connection, "SELECT pg_backend_pid()"))
    return int(run_query(dbapi_connection, "SELECT CONNECTION_ID()"))


def wait_until(condition: Callable[[], bool], description: str) -> None:
    """Poll ``condition`` until it holds; fail after WAIT_TIMEOUT_SECONDS."""
    deadline = time.monotonic() + WAIT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out waiting until {description}")


def drop_connection(backend: str, engine: sa.Engine, server_id: int) -> None:
    """End another client's connection from the server side, and wait for it."""
    with engine.connect() as connection:
        if backend == "postgresql":
            # With a timeout, pg_terminate_backend waits until the backend ended.
            ended = connection.execute(
                sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": server_id}
            ).scalar()
            assert ended is True
            return

        connection.execute(sa.text(f"KILL CONNECTION {int(server_id)}"))
        listed = sa.text(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = :id"
        )
        wait_until(
            lambda: connection.execute(listed, {"id": server_id}).scalar() == 0,
            f"MariaDB connection {server_id} is gone",
        )


def family_tokens(app: Flask, presented: str) -> list[Any]:
    """Return the token rows of the family of ``presented``, oldest first."""
    token = auth.models.token
    with app.app_context():
        spent = db.session.execute(
            sa.select(token).where(token.token_hash == hash_refresh_token(presented))
        ).scalar_one()
        return list(
            db.session.execute(
                sa.select(token)
                .where(token.family_id == spent.family_id)
                .order_by(token.id)
            ).scalars()
        )


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json == {
        "error": "temporarily_unavailable",
        "error_description": "The service is temporarily unavailable. Retry shortly.",
    }


def assert_logged(caplog: pytest.LogCaptureFixture, cause: str) -> None:
    """Check that the 503 came from the database error the test caused."""
    messages = [
        record.getMessage()
        for record in caplog.records
        if record.name == "flask_refresh" and record.levelno == logging.ERROR
    ]
    assert len(messages) == 1, messages
    assert messages[0].startswith("Database error while rotating a refresh token")
    assert cause in messages[0]


def assert_rolled_back(app: Flask, presented: str) -> None:
    (row,) = family_tokens(app, presented)
    assert row.used_at is None
    assert row.replaced_by_id is None


def assert_retry_rotates(app: Flask, client: FlaskClient, presented: str) -> None:
    response = refresh(client, presented)

    assert response.status_code == 200
    assert response.json is not None
    successor = derive_successor(get_state(app).successor_key, presented)
    assert response.json["refresh_token"] == successor
    spent, child = family_tokens(app, presented)
    assert spent.used_at is not None
    assert spent.replaced_by_id == child.id
    assert child.token_hash == hash_refresh_token(successor)


# ---------------------------------------------------------------------------
# Connection dropped
# ---------------------------------------------------------------------------


@SERVER_BACKENDS
@pytest.mark.parametrize("moment", ["after spend", "before commit"])
def test_dropped_connection_rolls_back(
    backend: str,
    app: Flask,
    client: FlaskClient,
    alice: int,
    other_engine: sa.Engine,
    moment: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    presented = login(client)["refresh_token"]

    def terminate(dbapi_connection: Any) -> None:
        drop_connection(backend, other_engine, session_id(backend, dbapi_connection))

    hook = (
        after_statement(app, SPEND, terminate)
        if moment == "after spend"
        else before_commit(app, terminate)
    )
    with hook as fired:
        response = refresh(client, presented)

    assert fired
    assert_unavailable(response)
    # psycopg's AdminShutdown, and the MySQL client error CR_SERVER_LOST.
    causes = {"postgresql": "AdminShutdown", "mariadb": "(2013,"}
    assert_logged(caplog, causes[backend])
    assert_rolled_back(app, presented)
    assert_retry_rotates(app, client, presented)


# ---------------------------------------------------------------------------
# Statement error
# ---------------------------------------------------------------------------

REJECT_MESSAGE = "refresh_token insert rejected by the test trigger"
REJECT_TRIGGER = {
    "sqlite": [
        "CREATE TRIGGER reject_refresh_token BEFORE INSERT ON refresh_token"
        f" BEGIN SELECT RAISE(ABORT, '{REJECT_MESSAGE}'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION reject_refresh_token() RETURNS trigger LANGUAGE plpgsql"
        f" AS $$ BEGIN RAISE EXCEPTION '{REJECT_MESSAGE}'; END $$",
        "CREATE TRIGGER reject_refresh_token BEFORE INSERT ON refresh_token"
        " FOR EACH ROW EXECUTE FUNCTION reject_refresh_token()",
    ],
    "mariadb": [
        "CREATE TRIGGER reject_refresh_token BEFORE INSERT ON refresh_token"
        " FOR EACH ROW SIGNAL SQLSTATE '45000'"
        f" SET MESSAGE_TEXT = '{REJECT_MESSAGE}'"
    ],
}
DROP_TRIGGER = {
    "sqlite": ["DROP TRIGGER IF EXISTS reject_refresh_token"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS reject_refresh_token ON refresh_token",
        "DROP FUNCTION IF EXISTS reject_refresh_token()",
    ],
    "mariadb": ["DROP TRIGGER IF EXISTS reject_refresh_token"],
}


@pytest.fixture
def reject_inserts(
    backend: str, other_engine: sa.Engine
) -> Iterator[Callable[[bool], None]]:
    """Return a switch for a trigger that makes every token INSERT fail.

    The trigger is dropped at teardown, because the tables outlive the test.
    """

    def run(statements: list[str]) -> None:
        with other_engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    def switch(on: bool) -> None:
        run(REJECT_TRIGGER[backend] if on else DROP_TRIGGER[backend])

    yield switch
    run(DROP_TRIGGER[backend])


def test_rejected_insert_rolls_back(
    backend: str,
    app: Flask,
    client: FlaskClient,
    alice: int,
    reject_inserts: Callable[[bool], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    presented = login(client)["refresh_token"]
    reject_inserts(True)

    response = refresh(client, presented)

    assert_unavailable(response)
    # The log names only the class of integrity errors, which SQLite's
    # RAISE(ABORT) gives; MariaDB's SIGNAL is error 1644.
    causes = {
        "sqlite": "IntegrityError",
        "postgresql": "RaiseException",
        "mariadb": "(1644,",
    }
    assert_logged(caplog, causes[backend])
    assert_rolled_back(app, presented)
    reject_inserts(False)
    assert_retry_rotates(app, client, presented)


# ---------------------------------------------------------------------------
# Lock timeout and deadlock
# ---------------------------------------------------------------------------


def lock_user_row(connection: sa.Connection, user_id: int) -> None:
    """Lock a user row so that INSERTs referencing it wait.

    The foreign key check of an INSERT into refresh_token takes a shared lock on
    the user row (FOR KEY SHARE on PostgreSQL), which FOR UPDATE blocks.
    """
    connection.execute(sa.select(User.id).where(User.id == user_id).with_for_update())


@SERVER_BACKENDS
def test_lock_timeout_rolls_back(
    backend: str,
    app: Flask,
    client: FlaskClient,
    alice: int,
    other_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    presented = login(client)["refresh_token"]

    def shorten_lock_wait(dbapi_connection: Any) -> None:
        if backend == "postgresql":
            run_query(dbapi_connection, "SET LOCAL lock_timeout = '100ms'")
        else:
            # Whole seconds; the pooled connection keeps it until the app
            # fixture disposes of the engine.
            run_query(dbapi_connection, "SET SESSION innodb_lock_wait_timeout = 1")

    with other_engine.connect() as holder:
        lock_user_row(holder, alice)
        with before_insert(backend, app, shorten_lock_wait) as fired:
            response = refresh(client, presented)
        holder.rollback()

    assert fired
    assert_unavailable(response)
    causes = {"postgresql": "LockNotAvailable", "mariadb": "(1205,"}
    assert_logged(caplog, causes[backend])
    assert_rolled_back(app, presented)
    assert_retry_rotates(app, client, presented)


def wait_for_lock(backend: str, engine: sa.Engine, server_id: int) -> None:
    """Wait until connection ``server_id`` waits for a lock.

    On PostgreSQL, also until it has waited 200 ms by the server's clock: each
    backend checks for a deadlock once, deadlock_timeout (1 s by default) after
    it began to wait, and the one that finds the cycle is rolled back. The app's
    connection must wait first, by a margin, to be the one.
    """
    if backend == "postgresql":
        query = sa.text(
            "SELECT clock_timestamp() - waitstart >= interval '200 milliseconds'"
            " FROM pg_locks WHERE pid = :id AND NOT granted"
        )
    else:
        query = sa.text(
            "SELECT trx_state = 'LOCK WAIT' FROM information_schema.INNODB_TRX"
            " WHERE trx_mysql_thread_id = :id"
        )

    with engine.connect() as connection:
        wait_until(
            lambda: bool(connection.execute(query, {"id": server_id}).scalar()),
            f"connection {server_id} waits for a lock",
        )
        connection.rollback()


@SERVER_BACKENDS
def test_deadlock_rolls_back(
    backend: str,
    app: Flask,
    client: FlaskClient,
    alice: int,
    other_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The app's INSERT waits for the user row that a second transaction locked,
    and that transaction then requests the token row that the app's UPDATE locked.
    """
    # MariaDB rolls back the deadlocked transaction that wrote fewer rows, so
    # the second transaction first updates these users to outweigh the app's.
    others = [create_user(app, f"ballast-{number}") for number in range(20)]
    presented = login(client)["refresh_token"]
    (spent,) = family_tokens(app, presented)
    token = auth.models.token
    app_connection: list[int] = []
    connection_known = threading.Event()
    responses: list[Any] = []

    def remember_connection(dbapi_connection: Any) -> None:
        app_connection.append(session_id(backend, dbapi_connection))
        connection_known.set()

    def send_refresh() -> None:
        responses.append(refresh(client, presented))

    with other_engine.connect() as second:
        second.execute(
            sa.update(User)
            .where(User.id.in_(others))
            .values(username=User.username + "-renamed")
        )
        lock_user_row(second, alice)

        with before_insert(backend, app, remember_connection) as fired:
            request = threading.Thread(target=send_refresh)
            request.start()
            assert connection_known.wait(WAIT_TIMEOUT_SECONDS)
            wait_for_lock(backend, other_engine, app_connection[0])
            # Closes the cycle, and returns once the app's transaction is gone.
            second.execute(
                sa.select(token.id).where(token.id == spent.id).with_for_update()
            )
            request.join(WAIT_TIMEOUT_SECONDS)
        second.rollback()

    assert fired
    assert not request.is_alive()
    (response,) = responses
    assert_unavailable(response)
    causes = {"postgresql": "DeadlockDetected", "mariadb": "(1213,"}
    assert_logged(caplog, causes[backend])
    assert_rolled_back(app, presented)
    assert_retry_rotates(app, client, presented)


# ---------------------------------------------------------------------------
# Serialization failure
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "config_overrides",
    [{"SQLALCHEMY_ENGINE_OPTIONS": {"isolation_level": "SERIALIZABLE"}}],
)
def test_serialization_failure_rolls_back(
    app: Flask,
    client: FlaskClient,
    alice: int,
    other_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A serializable transaction that the host app began before the refresh.

    flask-refresh runs a transaction it begins itself at READ COMMITTED, where
    this cannot happen. Here a second serializable transaction reads the token
    the app spent and writes the family the spend read, and commits first: a
    read/write cycle that PostgreSQL breaks by failing the app's transaction.
    """

    @app.before_request
    def read_before_the_view() -> None:
        db.session.execute(sa.select(sa.literal(1)))

    presented = login(client)["refresh_token"]
    (spent,) = family_tokens(app, presented)
    family = auth.models.family
    token = auth.models.token

    def commit_conflict(dbapi_connection: Any) -> None:
        serializable = other_engine.execution_options(isolation_level="SERIALIZABLE")
        with serializable.begin() as second:
            second.execute(sa.select(token.used_at).where(token.id == spent.id))
            second.execute(
                sa.update(family)
                .where(family.id == spent.family_id)
                .values(expires_at=family.expires_at)
            )

    with after_statement(app, SPEND, commit_conflict) as fired:
        response = refresh(client, presented)

    assert fired
    assert_unavailable(response)
    assert_logged(caplog, "SerializationFailure")
    assert_rolled_back(app, presented)
    assert_retry_rotates(app, client, presented)


# ---------------------------------------------------------------------------
# SQLite: database is locked
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_locked_database_rolls_back(
    app: Flask,
    client: FlaskClient,
    alice: int,
    other_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another connection holds SQLite's write lock past the app's busy timeout.

    In WAL mode only the spending UPDATE, the transaction's first write, can
    meet "database is locked": from then on the app holds the write lock until
    it commits, and a commit in WAL mode needs no further lock.
    """
    presented = login(client)["refresh_token"]

    def shorten_busy_timeout(dbapi_connection: Any) -> None:
        # The example app sets 5000 ms; the app fixture disposes of the
        # pooled connection after the test.
        run_query(dbapi_connection, "PRAGMA busy_timeout = 50")

    with other_engine.connect() as holder:
        holder.exec_driver_sql("BEGIN IMMEDIATE")
        with before_statement(app, SPEND, shorten_busy_timeout) as fired:
            response = refresh(client, presented)
        holder.rollback()

    assert fired
    assert_unavailable(response)
    assert_logged(caplog, "database is locked")
    assert_rolled_back(app, presented)
    assert_retry_rotates(app, client, presented)
