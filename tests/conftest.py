"""Shared pytest fixtures for flask-refresh.

Database backends
-----------------
Tests that request ``backend``, ``database_url`` or ``fresh_database_url`` run
once per database backend: SQLite, PostgreSQL and MariaDB. Each run gets
databases of its own, which are dropped again at the end.

Environment variables:

``TEST_DATABASES``
    Comma-separated subset of ``sqlite,postgresql,mariadb``. When it is unset
    or empty, all three are tried, and the tests of a server that cannot be
    reached (connection refused, timed out, driver not installed) are skipped.
    When it is set, only the listed backends run, the tests of the others are
    deselected, and a listed server that cannot be reached is a test error.
    CI sets it to all three so that nothing is skipped silently.

``TEST_POSTGRESQL_URL``
    SQLAlchemy URL of an existing database on the PostgreSQL server, used to
    create and drop the test databases. The user needs the CREATEDB privilege.
    Default: ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``.

``TEST_MARIADB_URL``
    The same for MariaDB; the user needs CREATE and DROP on ``flask_refresh_%``.
    Default: ``mysql+pymysql://root@127.0.0.1:3306/test``.

The terminal summary ends with one line per backend saying whether its tests
ran, were skipped (and why) or were not selected.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from helpers import FakeClock, TokenInvariants
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

# ---------------------------------------------------------------------------
# Database backends
# ---------------------------------------------------------------------------
# This section defines the hooks pytest_configure, pytest_collection_modifyitems
# and pytest_terminal_summary. Extend them here, because a second definition
# further down would replace them (ruff reports that as F811).

BACKENDS = ("sqlite", "postgresql", "mariadb")
SERVER_BACKENDS = ("postgresql", "mariadb")

DATABASES_ENV = "TEST_DATABASES"
ADMIN_URL_ENVS = {
    "postgresql": "TEST_POSTGRESQL_URL",
    "mariadb": "TEST_MARIADB_URL",
}
DEFAULT_ADMIN_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
# The library is tested with these drivers, so the URLs from the environment
# must use them too.
DRIVERS = {"postgresql": "postgresql+psycopg", "mariadb": "mysql+pymysql"}

CONNECT_TIMEOUT_SECONDS = 3
DATABASE_NAME_PREFIX = "flask_refresh_"
# Attached to each parametrised test item so that the terminal summary can
# count results per backend, also from pytest-xdist workers.
BACKEND_PROPERTY = "flask_refresh_backend"


@dataclass(frozen=True)
class BackendSelection:
    """Backends chosen by ``TEST_DATABASES`` for this run."""

    backends: tuple[str, ...]
    # True when the variable is set. Listed servers must then be reachable.
    required: bool
    admin_urls: dict[str, URL]


@dataclass
class BackendTally:
    """Test results of one backend, for the terminal summary."""

    ran: int = 0
    skipped: int = 0
    skip_reason: str = ""
    errors: int = 0
    error_reason: str = ""


SELECTION_KEY = pytest.StashKey[BackendSelection]()
# Backend name -> why its server is unreachable, or None if it accepted a
# connection.
PROBE_ERRORS_KEY = pytest.StashKey[dict[str, str | None]]()


def read_selection() -> BackendSelection:
    """Read the backends and server URLs from the environment.

    Raises ValueError with a message for the user when a value is invalid.
    """
    raw = os.environ.get(DATABASES_ENV, "").strip()
    required = bool(raw)
    backends: tuple[str, ...] = BACKENDS
    if required:
        names = [name.strip().lower() for name in raw.split(",") if name.strip()]
        unknown = sorted(set(names) - set(BACKENDS))
        if unknown or not names:
            raise ValueError(
                f"{DATABASES_ENV}={raw!r} is invalid (unknown backends: {unknown}). "
                f"Use a comma-separated subset of {','.join(BACKENDS)}."
            )
        backends = tuple(name for name in BACKENDS if name in names)

    admin_urls = {
        backend: read_admin_url(backend)
        for backend in backends
        if backend in SERVER_BACKENDS
    }
    return BackendSelection(backends, required, admin_urls)


def read_admin_url(backend: str) -> URL:
    """Return the admin URL of a server backend from its variable or default."""
    variable = ADMIN_URL_ENVS[backend]
    raw = os.environ.get(variable) or DEFAULT_ADMIN_URLS[backend]
    try:
        url = make_url(raw)
    except ArgumentError:
        # The parser's message would repeat the URL, password included.
        raise ValueError(
            f"{variable} is not a valid SQLAlchemy URL. "
            f"Expected a URL like {DEFAULT_ADMIN_URLS[backend]}."
        ) from None
    if url.drivername != DRIVERS[backend]:
        raise ValueError(
            f"{variable} must use the {DRIVERS[backend]} driver, "
            f"got {url.drivername!r} in {url.render_as_string()}."
        )
    return url


def create_admin_engine(admin_url: URL, *, probing: bool = False) -> sa.Engine:
    # psycopg and PyMySQL both take connect_timeout, in seconds.
    connect_args: dict[str, object] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if probing and admin_url.get_backend_name() == "mysql":
        # PyMySQL's connect_timeout covers only the TCP connect, so without
        # these a server that never sends its greeting would block the probe.
        connect_args["read_timeout"] = CONNECT_TIMEOUT_SECONDS
        connect_args["write_timeout"] = CONNECT_TIMEOUT_SECONDS
    return sa.create_engine(
        admin_url,
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
        connect_args=connect_args,
    )


def probe_server(backend: str, admin_url: URL) -> str | None:
    """Connect to a server backend and return why that failed, or None."""
    location = f"{admin_url.host}:{admin_url.port}"
    try:
        engine = create_admin_engine(admin_url, probing=True)
    except ImportError as error:
        return f"{backend}: driver {DRIVERS[backend]} is not installed ({error})"
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except DBAPIError as error:
        detail = str(error.orig).strip().splitlines()[0]
        return (
            f"{backend}: cannot connect to the server at {location} "
            f"({type(error.orig).__name__}: {detail}). "
            f"Set {ADMIN_URL_ENVS[backend]} to a reachable server"
        )
    finally:
        engine.dispose()
    return None


def new_database_name() -> str:
    """Return a database name that no other test run uses."""
    # pytest-xdist names its workers gw0, gw1 and so on. Only letters and
    # digits are selected because the name goes into SQL statements.
    worker = re.sub(r"[^a-z0-9]", "", os.environ.get("PYTEST_XDIST_WORKER", ""))
    worker_part = f"{worker}_" if worker else ""
    return f"{DATABASE_NAME_PREFIX}{worker_part}{secrets.token_hex(8)}"


def create_database(backend: str, admin_url: URL | None, directory: Path) -> str:
    """Create an empty database and return its SQLAlchemy URL.

    SQLite databases are files in ``directory``. Server databases are created
    through ``admin_url``, which is None for SQLite only.
    """
    if admin_url is None:
        return create_sqlite_database(directory)

    name = new_database_name()
    engine = create_admin_engine(admin_url)
    try:
        with engine.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote_identifier(name)
            statement = f"CREATE DATABASE {quoted}"
            if backend == "mariadb":
                statement += " CHARACTER SET utf8mb4"
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


def create_sqlite_database(directory: Path) -> str:
    path = directory / f"{new_database_name()}.sqlite"
    url = f"sqlite:///{path}"
    # WAL is stored in the database file, so later connections keep it.
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        engine.dispose()
    return url


def drop_database(backend: str, admin_url: URL | None, database_url: str) -> None:
    """Drop a database made by ``create_database``, even if clients are connected."""
    name = make_url(database_url).database
    if not name:
        raise ValueError(f"database URL has no database name: {database_url}")

    if admin_url is None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(name + suffix).unlink(missing_ok=True)
        return

    engine = create_admin_engine(admin_url)
    try:
        with engine.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote_identifier(name)
            if backend == "postgresql":
                connection.execute(
                    sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
                )
            else:
                disconnect_mariadb_clients(connection, name)
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}"))
    finally:
        engine.dispose()


def disconnect_mariadb_clients(connection: sa.Connection, name: str) -> None:
    """Kill the connections that use database ``name``.

    MariaDB has no ``WITH (FORCE)``, and its DROP DATABASE waits for every
    connection that holds a lock in the database. A connection leaked by a
    failed test would then hang the run.
    """
    query = sa.text(
        "SELECT ID FROM information_schema.PROCESSLIST"
        " WHERE DB = :name AND ID <> CONNECTION_ID()"
    )
    thread_ids = connection.execute(query, {"name": name}).scalars().all()
    for thread_id in thread_ids:
        # The connection may end between the SELECT and the KILL.
        with contextlib.suppress(DBAPIError):
            connection.execute(sa.text(f"KILL CONNECTION {int(thread_id)}"))


def pytest_configure(config: pytest.Config) -> None:
    try:
        selection = read_selection()
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[SELECTION_KEY] = selection
    config.stash[PROBE_ERRORS_KEY] = {}


def item_backend(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    backend = callspec.params.get("backend")
    return backend if isinstance(backend, str) else None


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    selected_backends = config.stash[SELECTION_KEY].backends
    selected: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        backend = item_backend(item)
        if backend is not None:
            item.user_properties.append((BACKEND_PROPERTY, backend))
        if backend is None or backend in selected_backends:
            selected.append(item)
        else:
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the database backend under test.

    Skips the test, or fails it when ``TEST_DATABASES`` is set,
    if the backend's server is unreachable.
    """
    name: str = request.param
    selection = request.config.stash[SELECTION_KEY]
    probe_errors = request.config.stash[PROBE_ERRORS_KEY]
    if name not in probe_errors:
        server_url = selection.admin_urls.get(name)
        probe_errors[name] = probe_server(name, server_url) if server_url else None

    error = probe_errors[name]
    if error is None:
        return name
    if selection.required:
        pytest.fail(
            f"{error}. {DATABASES_ENV} lists {name}, so its server must be "
            f"reachable. Remove {name} from the list to run without it.",
            pytrace=False,
        )
    pytest.skip(error)


@pytest.fixture(scope="session")
def admin_url(request: pytest.FixtureRequest, backend: str) -> URL | None:
    """URL of the server database used to create and drop test databases.

    None for SQLite, which has no server.
    """
    return request.config.stash[SELECTION_KEY].admin_urls.get(backend)


@pytest.fixture(scope="session")
def database_url(
    backend: str, admin_url: URL | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of an empty database shared by all tests of one backend in this run."""
    url = create_database(backend, admin_url, tmp_path_factory.mktemp(backend))
    yield url
    drop_database(backend, admin_url, url)


@pytest.fixture
def fresh_database_url(
    backend: str, admin_url: URL | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of an empty database made for one test and dropped after it."""
    url = create_database(backend, admin_url, tmp_path_factory.mktemp(backend))
    yield url
    drop_database(backend, admin_url, url)


def count_backend_results(
    terminalreporter: pytest.TerminalReporter,
) -> dict[str, BackendTally]:
    tallies = {name: BackendTally() for name in BACKENDS}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if not isinstance(report, pytest.TestReport):
                continue
            backend = dict(report.user_properties).get(BACKEND_PROPERTY)
            if not isinstance(backend, str) or backend not in tallies:
                continue
            tally = tallies[backend]
            if report.when == "call":
                tally.ran += 1
            elif report.when == "setup" and report.skipped:
                tally.skipped += 1
                tally.skip_reason = tally.skip_reason or skip_reason(report)
            elif report.when == "setup" and report.failed:
                tally.errors += 1
                tally.error_reason = tally.error_reason or last_line(
                    report.longreprtext
                )
    return tallies


def skip_reason(report: pytest.TestReport) -> str:
    # pytest stores a skip as (path, line number, "Skipped: <reason>").
    if isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    return last_line(str(report.longrepr))


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].removeprefix("E ").strip() if lines else ""


def count_tests(count: int) -> str:
    return f"{count} test" if count == 1 else f"{count} tests"


def describe_backend(
    backend: str, selection: BackendSelection, tally: BackendTally
) -> str:
    if backend not in selection.backends:
        listed = ",".join(selection.backends)
        return f"{backend}: not selected ({DATABASES_ENV}={listed})"

    # The reasons name the backend for pytest's own skip list, so here they
    # would repeat the start of the line.
    prefix = f"{backend}: "
    parts = []
    if tally.ran:
        parts.append(f"ran {count_tests(tally.ran)}")
    if tally.skipped:
        reason = tally.skip_reason.removeprefix(prefix)
        parts.append(f"skipped {count_tests(tally.skipped)}: {reason}")
    if tally.errors:
        reason = tally.error_reason.removeprefix(prefix)
        parts.append(f"ERROR in {count_tests(tally.errors)}: {reason}")
    if not parts:
        parts.append("selected, but no test in this run uses it")
    return prefix + "; ".join(parts)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    selection = config.stash[SELECTION_KEY]
    tallies = count_backend_results(terminalreporter)
    terminalreporter.ensure_newline()
    terminalreporter.section("flask-refresh database backends")
    for name in BACKENDS:
        terminalreporter.write_line(describe_backend(name, selection, tallies[name]))


# ---------------------------------------------------------------------------
# End of database backends
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# The example app on the database under test
# ---------------------------------------------------------------------------


def delete_all_rows() -> None:
    """Empty the example app's tables, children first."""
    from example_app import auth, db
    from example_app.models import User

    for model in (auth.models.token, auth.models.family, User):
        db.session.execute(sa.delete(model))
    db.session.commit()


def dispose_engines() -> None:
    """Close the pooled connections of the current app's engines."""
    from example_app import db

    for engine in db.engines.values():
        engine.dispose()


@pytest.fixture(scope="session")
def schema(database_url: str) -> Iterator[None]:
    """Create the example app's tables once per database."""
    from helpers import app_config

    from example_app import create_app, db

    app = create_app(app_config(database_url))
    with app.app_context():
        db.drop_all()
        db.create_all()
        dispose_engines()

    yield

    with app.app_context():
        db.drop_all()
        dispose_engines()


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Config values for the ``app`` fixture; parametrise it to change them."""
    return {}


@pytest.fixture
def app(
    database_url: str, schema: None, config_overrides: dict[str, Any]
) -> Iterator[Flask]:
    """The example app on empty tables of the database under test."""
    from helpers import app_config

    from example_app import create_app, db

    app = create_app(app_config(database_url, **config_overrides))
    with app.app_context():
        delete_all_rows()

    yield app

    with app.app_context():
        db.session.remove()
        delete_all_rows()
        dispose_engines()


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    """Replace the app's clock; move it with ``clock.advance(seconds)``."""
    from flask_refresh import get_state

    fake = FakeClock()
    get_state(app).clock = fake
    return fake


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the ``app`` fixture."""
    return app.test_client()


@pytest.fixture
def invariants(app: Flask) -> Iterator[TokenInvariants]:
    """Check the token tables' invariants when the test calls ``check()``, and at
    its end."""
    checker = TokenInvariants(app)
    yield checker
    checker.check()
