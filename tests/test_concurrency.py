"""Races for one refresh token: threads of one app, then gunicorn workers of two.

Each trial logs in, releases many requests carrying that login's refresh token
at once, and checks the responses and the database with ``check_trial`` from
scripts/stress_rotation.py, which runs the same trials in bulk. Exactly one spend
must win, its family must keep at most one live token, and no response may be a
5xx. Every loser gets the grace response (200 with the winner's successor) or,
with a zero grace interval, 400 ``invalid_grant`` with the family revoked as reuse.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers import SECRET_KEY, FakeClock, app_config

from example_app import auth, create_app, db
from flask_refresh import get_state
from scripts.stress_rotation import (
    REUSE_DESCRIPTIONS,
    GunicornServer,
    HttpRacer,
    Tally,
    ThreadRacer,
    check_trial,
    create_stress_user,
    login_token,
    running_servers,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

THREADS = 16
THREAD_TRIALS = 200
ZERO_GRACE_TRIALS = 50
STRICT_ISOLATION_TRIALS = 20
# Two instances: 16 and 8 sync workers, one client thread per worker.
GUNICORN_WORKERS = (16, 8)
HTTP_TRIALS = 40
HTTP_ZERO_GRACE_TRIALS = 15

# More connections than racing threads, so that no request waits for the pool.
POOL_OPTIONS = {"pool_size": THREADS + 4}
# On PostgreSQL the spending UPDATE is a CTE inside the one rotation statement.
SPEND_SQL = "UPDATE refresh_token SET used_at"


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"SQLALCHEMY_ENGINE_OPTIONS": POOL_OPTIONS}


@dataclass
class SpendRecord:
    """The spending UPDATEs and commits of one trial, with perf_counter times."""

    updates: list[tuple[int, float, int]] = field(default_factory=list)
    commits: list[tuple[int, float]] = field(default_factory=list)

    def matched(self) -> int:
        """How many spending UPDATEs matched a row."""
        return sum(1 for _, _, rows in self.updates if rows == 1)

    def contended(self) -> int:
        """How many losers began their UPDATE before the winner's COMMIT.

        Those losers met the winner's open transaction, so their response came
        from the database's lock and not from reading a committed row.
        """
        winners = [thread for thread, _, rows in self.updates if rows == 1]
        if len(winners) != 1:
            return 0
        commits = [moment for thread, moment in self.commits if thread == winners[0]]
        if not commits:
            return 0
        return sum(
            1
            for thread, started, rows in self.updates
            if rows != 1 and started < commits[0]
        )


class SpendRecorder:
    """Record every thread's spending UPDATE and COMMIT on the app's engine."""

    def __init__(self, app: Flask) -> None:
        with app.app_context():
            self.engine = db.engine
        self.record = SpendRecord()
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if SPEND_SQL in statement:
            self._started[threading.get_ident()] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if SPEND_SQL in statement:
            thread = threading.get_ident()
            with self._lock:
                self.record.updates.append(
                    (thread, self._started.pop(thread), cursor.rowcount)
                )

    def _commit(self, conn: Any) -> None:
        with self._lock:
            self.record.commits.append((threading.get_ident(), time.perf_counter()))

    def next_trial(self) -> SpendRecord:
        """Return the record so far and start an empty one."""
        with self._lock:
            record, self.record = self.record, SpendRecord()
        return record

    def __enter__(self) -> SpendRecorder:
        sa.event.listen(self.engine, "before_cursor_execute", self._before)
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        sa.event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)
        sa.event.remove(self.engine, "commit", self._commit)


@dataclass
class ThreadRun:
    tally: Tally
    spends_per_trial: list[int]
    contended_losers: int


def run_thread_trials(app: Flask, trials: int, *, grace_enabled: bool) -> ThreadRun:
    """Race ``THREADS`` threads for ``trials`` fresh tokens and count the results."""
    username = create_stress_user(app)
    tally = Tally()
    spends: list[int] = []
    contended = 0
    racer = ThreadRacer(app, THREADS)
    try:
        with SpendRecorder(app) as recorder:
            for _ in range(trials):
                presented = login_token(app, username)
                recorder.next_trial()
                responses = racer.race(presented)
                record = recorder.next_trial()
                spends.append(record.matched())
                contended += record.contended()
                tally.add(
                    check_trial(app, presented, responses, grace_enabled=grace_enabled)
                )
    finally:
        racer.close()
    return ThreadRun(tally, spends, contended)


def families_with_several_live_tokens(app: Flask) -> list[Any]:
    """Return the family ids that hold more than one unspent token."""
    token = auth.models.token
    with app.app_context():
        return list(
            db.session.execute(
                sa.select(token.family_id)
                .where(token.used_at.is_(None))
                .group_by(token.family_id)
                .having(sa.func.count() > 1)
            ).scalars()
        )


def test_thread_race_has_one_winner(app: Flask) -> None:
    run = run_thread_trials(app, THREAD_TRIALS, grace_enabled=True)

    tally = run.tally
    assert tally.violations == []
    assert tally.trials == THREAD_TRIALS
    assert tally.winners == THREAD_TRIALS
    assert tally.grace_responses == THREAD_TRIALS * (THREADS - 1)
    assert sum(tally.rejections.values()) == 0
    assert sum(tally.server_errors.values()) == 0
    assert sum(tally.other_responses.values()) == 0
    assert run.spends_per_trial == [1] * THREAD_TRIALS
    # The barrier must produce real contention, or the test proves nothing.
    assert run.contended_losers > 0
    metrics = get_state(app).metrics.snapshot()
    assert metrics["tokens_rotated"] == THREAD_TRIALS
    assert metrics["rotation_retries"] == THREAD_TRIALS * (THREADS - 1)
    assert metrics["reuse_detected"] == 0
    assert families_with_several_live_tokens(app) == []


@pytest.mark.parametrize(
    "config_overrides",
    [{"SQLALCHEMY_ENGINE_OPTIONS": POOL_OPTIONS, "REFRESH_REUSE_GRACE": 0}],
)
def test_zero_grace_race_revokes_family(app: Flask) -> None:
    run = run_thread_trials(app, ZERO_GRACE_TRIALS, grace_enabled=False)

    tally = run.tally
    assert tally.violations == []
    assert tally.winners == ZERO_GRACE_TRIALS
    assert tally.grace_responses == 0
    assert sum(tally.rejections.values()) == ZERO_GRACE_TRIALS * (THREADS - 1)
    assert set(tally.rejections) <= REUSE_DESCRIPTIONS
    assert sum(tally.server_errors.values()) == 0
    assert run.spends_per_trial == [1] * ZERO_GRACE_TRIALS
    assert run.contended_losers > 0
    state = get_state(app)
    assert state.metrics.snapshot()["rotation_retries"] == 0
    # However many losers report the reuse, each family is revoked once.
    assert state.metrics.revocations_by_reason() == {
        "reuse_detected": ZERO_GRACE_TRIALS
    }


@pytest.mark.parametrize("config_overrides", [{"REFRESH_REUSE_GRACE": 0}])
def test_zero_grace_same_instant_is_reuse(app: Flask, clock: FakeClock) -> None:
    """A loser whose clock reads the winner's instant is not a retry either."""
    username = create_stress_user(app)
    presented = login_token(app, username)
    client = app.test_client()
    first = client.post("/auth/refresh", json={"refresh_token": presented})

    replay = client.post("/auth/refresh", json={"refresh_token": presented})

    assert first.status_code == 200
    assert replay.status_code == 400
    assert replay.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token was already used.",
    }


# SQLite has no isolation levels to choose: its transactions are serializable.
@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize("grace", [10, 0])
@pytest.mark.parametrize("isolation_level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_race_under_strict_isolation(
    database_url: str, schema: None, isolation_level: str, grace: int
) -> None:
    """A host app may run its engine at a stricter level than the default."""
    app = create_app(
        app_config(
            database_url,
            SQLALCHEMY_ENGINE_OPTIONS={
                **POOL_OPTIONS,
                "isolation_level": isolation_level,
            },
            REFRESH_REUSE_GRACE=grace,
        )
    )

    try:
        run = run_thread_trials(app, STRICT_ISOLATION_TRIALS, grace_enabled=grace > 0)
    finally:
        with app.app_context():
            db.session.execute(sa.delete(auth.models.user))
            db.session.commit()
            db.engine.dispose()

    assert run.tally.violations == []
    assert run.tally.winners == STRICT_ISOLATION_TRIALS
    assert sum(run.tally.server_errors.values()) == 0
    assert run.spends_per_trial == [1] * STRICT_ISOLATION_TRIALS


#: The level of the transaction under way. MariaDB's ``SET TRANSACTION`` changes
#: only the next transaction, which ``@@tx_isolation`` does not show, so the level
#: is read from InnoDB's list of open transactions.
ISOLATION_QUERIES = {
    "postgresql": "SELECT current_setting('transaction_isolation')",
    "mariadb": (
        "SELECT trx_isolation_level FROM information_schema.innodb_trx"
        " WHERE trx_mysql_thread_id = CONNECTION_ID()"
    ),
}
#: The session's level, outside any transaction.
SESSION_LEVEL_QUERIES = {
    "postgresql": "SELECT current_setting('transaction_isolation')",
    "mariadb": "SELECT @@session.tx_isolation",
}


def refresh_while_listening(
    app: Flask, refresh_token: str, event: str, listener: Callable[..., None]
) -> Any:
    """POST one refresh with ``listener`` attached to the engine's ``event``."""
    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, event, listener)
    try:
        return app.test_client().post(
            "/auth/refresh", json={"refresh_token": refresh_token}
        )
    finally:
        sa.event.remove(engine, event, listener)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            "SQLALCHEMY_ENGINE_OPTIONS": {
                "isolation_level": "REPEATABLE READ",
                # One connection, so the check after the refresh reuses it.
                "pool_size": 1,
                "max_overflow": 0,
            }
        }
    ],
)
def test_rotation_runs_at_read_committed(app: Flask, backend: str) -> None:
    """The rotation's transaction runs at READ COMMITTED, and the pooled
    connection returns to the engine's level afterwards."""
    username = create_stress_user(app)
    presented = login_token(app, username)
    query = ISOLATION_QUERIES[backend]
    during: list[str] = []

    def record_level(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if SPEND_SQL in statement:
            level_cursor = conn.connection.dbapi_connection.cursor()
            level_cursor.execute(query)
            during.append(level_cursor.fetchone()[0])
            level_cursor.close()

    response = refresh_while_listening(
        app, presented, "after_cursor_execute", record_level
    )
    with app.app_context():
        after = db.session.execute(sa.text(SESSION_LEVEL_QUERIES[backend])).scalar_one()

    assert response.status_code == 200
    assert [level.replace("-", " ").upper() for level in during] == ["READ COMMITTED"]
    assert after.replace("-", " ").upper() == "REPEATABLE READ"


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
@pytest.mark.parametrize(
    "config_overrides",
    [{"SQLALCHEMY_ENGINE_OPTIONS": {"isolation_level": "READ COMMITTED"}}],
)
def test_read_committed_engine_skips_set(app: Flask) -> None:
    """An engine already at READ COMMITTED needs no SET TRANSACTION per refresh."""
    username = create_stress_user(app)
    presented = login_token(app, username)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    response = refresh_while_listening(app, presented, "before_cursor_execute", record)

    assert response.status_code == 200
    assert any(SPEND_SQL in statement for statement in statements)
    assert not [statement for statement in statements if statement.startswith("SET ")]


# ---------------------------------------------------------------------------
# Worker processes of two separately started instances
# ---------------------------------------------------------------------------


def upgrade_database(database_url: str) -> None:
    """Run ``flask --app example_app db upgrade`` as an operator would."""
    completed = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "db", "upgrade"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "FLASK_REFRESH_SECRET_KEY": SECRET_KEY,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@dataclass
class Instances:
    """Two gunicorn instances on one database, and an app to check it with."""

    servers: list[GunicornServer]
    app: Flask

    @property
    def client_targets(self) -> list[str]:
        """One base URL per client thread: as many threads as workers."""
        return [server.url for server in self.servers for _ in range(server.workers)]


@pytest.fixture
def start_instances(
    fresh_database_url: str, tmp_path: Path
) -> Iterator[Callable[[int], Instances]]:
    """Return a function that starts two instances with a given grace interval.

    At teardown the servers are killed, and the test fails if a process of
    theirs is left.
    """
    upgrade_database(fresh_database_url)
    process_groups: list[int] = []

    with contextlib.ExitStack() as stack:

        def start(grace: int) -> Instances:
            servers = stack.enter_context(
                running_servers(
                    database_url=fresh_database_url,
                    secret_key=SECRET_KEY,
                    workers=GUNICORN_WORKERS,
                    log_directory=tmp_path,
                    config_env={"FLASK_REFRESH_REUSE_GRACE": json.dumps(grace)},
                    kill_at_exit=True,
                )
            )
            process_groups.extend(
                server.process.pid for server in servers if server.process
            )
            app = create_app(app_config(fresh_database_url, REFRESH_REUSE_GRACE=grace))
            stack.callback(dispose_engines, app)
            return Instances(servers, app)

        yield start

    for group in process_groups:
        assert process_group_ends(group), f"process group {group} is still running"


def process_group_ends(group: int, timeout: float = 10.0) -> bool:
    """Return whether process group ``group`` has no running process left.

    Killed workers stay zombies until the init process reaps them, which can
    take seconds. Where /proc exists, zombies count as ended.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running_members(group):
            return True
        time.sleep(0.05)
    return False


def running_members(group: int) -> list[int]:
    """Return the ids of the processes of ``group`` that are not zombies."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        return [group]

    members = []
    for stat_path in proc.glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue
        # After "pid (command)" come the state and the parent, group and
        # session ids; the command may contain spaces and parentheses.
        state, _parent, process_group = stat.rpartition(")")[2].split()[:3]
        if int(process_group) == group and state != "Z":
            members.append(int(stat_path.parent.name))
    return members


def dispose_engines(app: Flask) -> None:
    with app.app_context():
        db.engine.dispose()


def run_http_trials(instances: Instances, trials: int, *, grace_enabled: bool) -> Tally:
    username = create_stress_user(instances.app)
    tally = Tally()
    racer = HttpRacer(instances.client_targets)
    try:
        for _ in range(trials):
            presented = login_token(instances.app, username)
            responses = racer.race(presented)
            tally.add(
                check_trial(
                    instances.app, presented, responses, grace_enabled=grace_enabled
                )
            )
    finally:
        racer.close()
    return tally


def server_logs(instances: Instances) -> str:
    return "\n".join(server.log() for server in instances.servers)


def test_process_race_has_one_winner(
    start_instances: Callable[[int], Instances],
) -> None:
    instances = start_instances(10)
    threads = len(instances.client_targets)

    tally = run_http_trials(instances, HTTP_TRIALS, grace_enabled=True)

    assert tally.violations == [], server_logs(instances)
    assert threads >= 16
    assert tally.winners == HTTP_TRIALS
    assert tally.grace_responses == HTTP_TRIALS * (threads - 1)
    assert sum(tally.server_errors.values()) == 0
    assert "Traceback" not in server_logs(instances)
    assert families_with_several_live_tokens(instances.app) == []


def test_process_race_zero_grace(
    start_instances: Callable[[int], Instances],
) -> None:
    instances = start_instances(0)
    threads = len(instances.client_targets)

    tally = run_http_trials(instances, HTTP_ZERO_GRACE_TRIALS, grace_enabled=False)

    assert tally.violations == [], server_logs(instances)
    assert tally.winners == HTTP_ZERO_GRACE_TRIALS
    assert tally.grace_responses == 0
    assert sum(tally.rejections.values()) == HTTP_ZERO_GRACE_TRIALS * (threads - 1)
    assert sum(tally.server_errors.values()) == 0
    assert "Traceback" not in server_logs(instances)
