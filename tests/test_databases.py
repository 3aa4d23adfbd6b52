"""Tests of the database fixtures and backend selection in conftest.py.

Some tests run pytest in a subprocess with conftest.py loaded as a plugin,
because only a finished run shows that teardown dropped its databases, and
only a run of its own can use different environment variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

TESTS_DIR = Path(__file__).resolve().parent
DATABASE_NAME_PREFIX = "flask_refresh_"
CLOSED_PORT_ENV = {
    # Port 1 (tcpmux) is practically never served on the loopback address, so
    # connecting fails at once with "connection refused".
    "TEST_POSTGRESQL_URL": "postgresql+psycopg://postgres@127.0.0.1:1/postgres",
    "TEST_MARIADB_URL": "mysql+pymysql://root@127.0.0.1:1/test",
}
INNER_RUN_TIMEOUT_SECONDS = 300

RECORDING_TESTS = """
from pathlib import Path

RECORD = Path(__file__).with_name("urls.txt")


def record(kind, url):
    with RECORD.open("a", encoding="utf-8") as file:
        file.write(f"{kind} {url}\\n")


def test_first(database_url, fresh_database_url):
    record("session", database_url)
    record("fresh", fresh_database_url)


def test_second(fresh_database_url):
    record("fresh", fresh_database_url)
"""

BACKEND_TEST = """
def test_uses_backend(backend):
    pass
"""


def run_inner_pytest(
    directory: Path, test_source: str, env: dict[str, str | None]
) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``test_source`` in ``directory`` with conftest.py as a plugin.

    ``env`` overrides the current environment. A None value removes a variable.
    """
    (directory / "test_inner.py").write_text(textwrap.dedent(test_source))
    # An ini file of its own keeps the run from picking up any other config.
    (directory / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")

    inner_env = dict(os.environ)
    inner_env.pop("PYTEST_ADDOPTS", None)
    for name, value in env.items():
        if value is None:
            inner_env.pop(name, None)
        else:
            inner_env[name] = value
    # "-p conftest" imports conftest.py from TESTS_DIR, and whatever
    # conftest.py imports from the tests folder or the repository root.
    search_path = [str(TESTS_DIR), str(TESTS_DIR.parent)]
    if inner_env.get("PYTHONPATH"):
        search_path.append(inner_env["PYTHONPATH"])
    inner_env["PYTHONPATH"] = os.pathsep.join(search_path)

    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-rA"]
    return subprocess.run(
        [*command, f"--basetemp={directory / 'tmp'}"],
        cwd=directory,
        env=inner_env,
        capture_output=True,
        text=True,
        timeout=INNER_RUN_TIMEOUT_SECONDS,
        check=False,
    )


def database_exists(database_url: str, admin_url: URL | None) -> bool:
    """Return whether a database exists, asking the server's admin database.

    For SQLite, whose databases are files, check the file instead.
    """
    name = make_url(database_url).database
    assert name
    if admin_url is None:
        return Path(name).exists()

    if admin_url.get_backend_name() == "postgresql":
        query = "SELECT 1 FROM pg_database WHERE datname = :name"
    else:
        query = "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"
    engine = sa.create_engine(admin_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text(query), {"name": name}).first()
    finally:
        engine.dispose()
    return row is not None


@dataclass(frozen=True)
class RecordedRun:
    """Output and recorded database URLs of a finished inner pytest run."""

    result: subprocess.CompletedProcess[str]
    session_urls: list[str]
    fresh_urls: list[str]


@pytest.fixture(scope="module")
def recorded_run(backend: str, tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    """Run two tests that record their database URLs, for one backend only."""
    directory = tmp_path_factory.mktemp(f"recorded-{backend}")
    result = run_inner_pytest(directory, RECORDING_TESTS, {"TEST_DATABASES": backend})
    record = directory / "urls.txt"
    lines = record.read_text().splitlines() if record.exists() else []
    urls = [line.split(" ", 1) for line in lines]
    return RecordedRun(
        result=result,
        session_urls=[url for kind, url in urls if kind == "session"],
        fresh_urls=[url for kind, url in urls if kind == "fresh"],
    )


def test_database_url_names_new_database(
    database_url: str, admin_url: URL | None
) -> None:
    name = make_url(database_url).database
    assert name
    if admin_url is None:
        assert Path(name).is_absolute()
        assert Path(name).name.startswith(DATABASE_NAME_PREFIX)
    else:
        assert name.startswith(DATABASE_NAME_PREFIX)
    assert database_exists(database_url, admin_url)


def test_database_url_accepts_table_and_rows(database_url: str) -> None:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE TABLE fixture_check (id INTEGER PRIMARY KEY, name TEXT)"
                )
            )
            connection.execute(
                sa.text("INSERT INTO fixture_check (id, name) VALUES (1, 'alpha')")
            )
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, name FROM fixture_check"))
            values = [tuple(row) for row in rows]
    finally:
        # The database is shared with later tests, so leave it empty.
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS fixture_check"))
        engine.dispose()

    assert values == [(1, "alpha")]


def test_fresh_database_is_empty(fresh_database_url: str) -> None:
    engine = sa.create_engine(fresh_database_url, poolclass=sa.NullPool)
    try:
        table_names = sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert table_names == []


def test_fresh_database_differs_from_session(
    database_url: str, fresh_database_url: str
) -> None:
    assert make_url(fresh_database_url).database != make_url(database_url).database


def test_inner_run_passes(recorded_run: RecordedRun) -> None:
    output = recorded_run.result.stdout + recorded_run.result.stderr
    assert recorded_run.result.returncode == 0, output
    assert len(recorded_run.fresh_urls) == 2, output
    assert len(recorded_run.session_urls) == 1, output


def test_fresh_databases_differ_between_tests(recorded_run: RecordedRun) -> None:
    first, second = recorded_run.fresh_urls
    assert make_url(first).database != make_url(second).database


def test_fresh_databases_dropped_after_run(
    recorded_run: RecordedRun, admin_url: URL | None
) -> None:
    assert recorded_run.fresh_urls
    for url in recorded_run.fresh_urls:
        assert not database_exists(url, admin_url), url


def test_session_database_dropped_after_run(
    recorded_run: RecordedRun, admin_url: URL | None
) -> None:
    assert recorded_run.session_urls
    for url in recorded_run.session_urls:
        assert not database_exists(url, admin_url), url


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fixture_name", ["database_url", "fresh_database_url"])
def test_sqlite_database_uses_wal(
    backend: str, fixture_name: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(fixture_name)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    finally:
        engine.dispose()
    assert mode == "wal"


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
@pytest.mark.parametrize("fixture_name", ["database_url", "fresh_database_url"])
def test_mariadb_database_uses_utf8mb4(
    backend: str, fixture_name: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(fixture_name)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            charset = connection.execute(
                sa.text(
                    "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA"
                    " WHERE SCHEMA_NAME = DATABASE()"
                )
            ).scalar()
    finally:
        engine.dispose()
    assert charset == "utf8mb4"


def test_unreachable_server_skipped_when_unset(tmp_path: Path) -> None:
    result = run_inner_pytest(
        tmp_path,
        BACKEND_TEST,
        {"TEST_DATABASES": None, **CLOSED_PORT_ENV},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 skipped" in result.stdout
    assert "sqlite: ran 1 test" in result.stdout
    assert (
        "postgresql: skipped 1 test: cannot connect to the server at 127.0.0.1:1"
        in result.stdout
    )
    assert "mariadb: skipped 1 test: cannot connect" in result.stdout


def test_unreachable_server_errors_when_listed(tmp_path: Path) -> None:
    result = run_inner_pytest(
        tmp_path,
        BACKEND_TEST,
        {"TEST_DATABASES": "sqlite,postgresql", **CLOSED_PORT_ENV},
    )
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "1 passed, 1 deselected, 1 error" in result.stdout
    assert "postgresql: ERROR in 1 test: cannot connect" in result.stdout


def test_unlisted_backends_not_selected(tmp_path: Path) -> None:
    result = run_inner_pytest(
        tmp_path,
        BACKEND_TEST,
        {"TEST_DATABASES": "sqlite", **CLOSED_PORT_ENV},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 deselected" in result.stdout
    assert "postgresql: not selected" in result.stdout
    assert "mariadb: not selected" in result.stdout


def test_unknown_backend_name_rejected(tmp_path: Path) -> None:
    result = run_inner_pytest(
        tmp_path, BACKEND_TEST, {"TEST_DATABASES": "sqlite,oracle"}
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout
    assert "unknown backends: ['oracle']" in result.stderr
