"""Race many requests for one refresh token and count the responses.

Each trial logs a user in, sends that login's refresh token to ``POST
/auth/refresh`` from ``--threads`` threads released together by a barrier, and
then checks the database. The run prints how many spends won, how many responses
were grace retries, rejections or 5xx, and every broken invariant.

Usage::

    .venv/bin/python scripts/stress_rotation.py --database-url URL [options]

    # 1000 trials of 16 threads in this process, on SQLite:
    .venv/bin/python scripts/stress_rotation.py --database-url sqlite:////tmp/s.sqlite

    # 1000 trials over HTTP: two gunicorn instances of the example app on free
    # ports of 127.0.0.1 (16 and 8 sync workers), 24 client threads split 16/8:
    .venv/bin/python scripts/stress_rotation.py --mode processes \\
        --database-url postgresql://postgres@127.0.0.1:5432/stress

    # A zero grace interval: every loser must be rejected and revoke the session.
    .venv/bin/python scripts/stress_rotation.py --grace 0 --database-url ...

Modes (``--mode``):

``threads``
    One app in this process; each thread sends its request through Flask's test
    client, so the threads share one connection pool.
``processes``
    Two separately started gunicorn instances of the example app share the
    database; the client threads send real HTTP requests to both ports.
``both``
    ``--trials`` trials of each.

The database must be empty or migrated with ``flask --app example_app db
upgrade``: the script upgrades it to the latest migration, adds a user for the
run, and deletes that user, with its tokens, at the end. URLs without a driver
get the example app's (``postgresql://`` uses psycopg, ``mysql://`` PyMySQL).

Invariants checked after every trial:

* the race inserted exactly one successor row, the spent row has ``used_at`` set
  and ``replaced_by_id`` pointing at it, and its digest is that of the successor
  the HMAC derivation gives, so the spending UPDATE won once;
* the family has at most one live token;
* no response is a 5xx or a failed connection;
* with a grace interval, every response is 200 with that successor and the family
  stays live; with ``--grace 0``, exactly one response is 200 and every other is
  400 ``invalid_grant`` (already used, or revoked), and the family is revoked
  for reuse.

Exit status: 0 when every trial kept the invariants, 1 otherwise, 2 for invalid
arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from flask import Flask
from werkzeug.security import generate_password_hash

REPO_ROOT = Path(__file__).resolve().parent.parent
# The example app lives in the source tree, not in the installed package.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from example_app import create_app, database_url, db  # noqa: E402
from example_app.models import User  # noqa: E402
from flask_refresh import get_state  # noqa: E402
from flask_refresh.tokens import derive_successor, hash_refresh_token  # noqa: E402

#: The descriptions a loser may get when the grace interval is zero: its own
#: reuse report, or the revocation that another loser's report made first.
REUSE_DESCRIPTIONS = frozenset(
    {"The refresh token was already used.", "The refresh token was revoked."}
)
STRESS_PASSWORD = "stress-password"
#: One iteration: the password check is not what this script measures.
FAST_HASH_METHOD = "pbkdf2:sha256:1"
BARRIER_TIMEOUT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 30.0
SERVER_START_TIMEOUT_SECONDS = 60.0
SERVER_STOP_TIMEOUT_SECONDS = 15.0
ISOLATION_LEVELS = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")


@dataclass(frozen=True)
class RaceResponse:
    """The response to one racing refresh request; status 0 for a failed request."""

    status: int
    refresh_token: str | None = None
    error: str | None = None
    description: str | None = None
    retry_after: str | None = None


def race_response(status: int, body: Any, retry_after: str | None) -> RaceResponse:
    """Build a :class:`RaceResponse` from a status, a JSON body and Retry-After."""
    if not isinstance(body, dict):
        return RaceResponse(status=status, retry_after=retry_after)

    return RaceResponse(
        status=status,
        refresh_token=body.get("refresh_token"),
        error=body.get("error"),
        description=body.get("error_description"),
        retry_after=retry_after,
    )


@dataclass(frozen=True)
class TrialResult:
    """The responses of one race, and the database state after it."""

    responses: list[RaceResponse]
    #: Token rows the race added to the family: the spends that won.
    successors: int
    violations: list[str]


@dataclass
class Tally:
    """Counts over many trials."""

    trials: int = 0
    requests: int = 0
    winners: int = 0
    grace_responses: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    server_errors: Counter[int] = field(default_factory=Counter)
    other_responses: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def add(self, result: TrialResult) -> None:
        """Count one trial's responses and keep its violations, numbered."""
        self.trials += 1
        self.requests += len(result.responses)
        self.winners += result.successors
        successes = 0
        for response in result.responses:
            if response.status == 200:
                successes += 1
            elif response.status == 400 and response.error == "invalid_grant":
                self.rejections[str(response.description)] += 1
            elif response.status >= 500 or response.status == 0:
                self.server_errors[response.status] += 1
            else:
                self.other_responses[response.status] += 1
        self.grace_responses += max(0, successes - result.successors)
        self.violations.extend(
            f"trial {self.trials}: {violation}" for violation in result.violations
        )

    def report(self) -> str:
        """Format the counts as aligned lines."""
        lines = [
            count_line("trials", self.trials),
            count_line("requests", self.requests),
            count_line("winners", self.winners, "spends that inserted a successor"),
            count_line(
                "grace responses",
                self.grace_responses,
                "200 with the winner's successor",
            ),
            count_line("rejections", sum(self.rejections.values())),
        ]
        lines += [
            f"  {description:<40} {count:>5}"
            for description, count in sorted(self.rejections.items())
        ]
        lines.append(count_line("5xx or failed requests", self.server_errors.total()))
        lines += [
            f"  status {status:<33} {count:>5}"
            for status, count in sorted(self.server_errors.items())
        ]
        lines.append(count_line("other responses", self.other_responses.total()))
        lines += [
            f"  status {status:<33} {count:>5}"
            for status, count in sorted(self.other_responses.items())
        ]
        lines.append(count_line("invariant violations", len(self.violations)))
        lines += [f"  {violation}" for violation in self.violations[:20]]
        if len(self.violations) > 20:
            lines.append(f"  ... and {len(self.violations) - 20} more")
        return "\n".join(lines)


def count_line(label: str, count: int, note: str = "") -> str:
    """Format one count of the report, with an optional note in brackets."""
    line = f"{label:<23}{count:>7}"
    return f"{line}  ({note})" if note else line


# ---------------------------------------------------------------------------
# Trials
# ---------------------------------------------------------------------------


def create_stress_user(app: Flask) -> str:
    """Insert a user for this run and return its username."""
    username = f"stress-{secrets.token_hex(6)}"
    with app.app_context():
        db.session.add(
            User(
                username=username,
                password_hash=generate_password_hash(
                    STRESS_PASSWORD, method=FAST_HASH_METHOD
                ),
            )
        )
        db.session.commit()
    return username


def delete_user(app: Flask, username: str) -> None:
    """Delete a user; the foreign keys cascade to its families and tokens."""
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.username == username))
        db.session.commit()


def login_token(app: Flask, username: str) -> str:
    """Log ``username`` in through the app and return the refresh token."""
    response = app.test_client().post(
        "/auth/login", json={"username": username, "password": STRESS_PASSWORD}
    )
    if response.status_code != 200 or response.json is None:
        raise RuntimeError(
            f"Login of {username!r} failed with status {response.status_code}:"
            f" {response.get_data(as_text=True)}"
        )
    token: str = response.json["refresh_token"]
    return token


def check_trial(
    app: Flask, presented: str, responses: list[RaceResponse], *, grace_enabled: bool
) -> TrialResult:
    """Compare a race's responses and the database with the expected outcome."""
    state = get_state(app)
    token_model, family_model = state.models.token, state.models.family
    expected = derive_successor(state.successor_key, presented)
    now = datetime.now(UTC)

    with app.app_context():
        spent = db.session.execute(
            sa.select(token_model).where(
                token_model.token_hash == hash_refresh_token(presented)
            )
        ).scalar_one()
        family = db.session.get(family_model, spent.family_id)
        rows = (
            db.session.execute(
                sa.select(token_model).where(token_model.family_id == spent.family_id)
            )
            .scalars()
            .all()
        )

    assert family is not None
    successors = [row for row in rows if row.id != spent.id]
    live = [
        row
        for row in rows
        if row.used_at is None and row.expires_at > now and family.revoked_at is None
    ]
    successes = [response for response in responses if response.status == 200]
    violations: list[str] = []

    if len(successors) != 1:
        violations.append(f"{len(successors)} successor rows instead of 1")
    if spent.used_at is None:
        violations.append("the spent token's used_at is NULL")
    if len(successors) == 1:
        if spent.replaced_by_id != successors[0].id:
            violations.append("replaced_by_id does not name the successor row")
        if successors[0].token_hash != hash_refresh_token(expected):
            violations.append("the successor row is not the derived successor")
    if len(live) > 1:
        violations.append(f"{len(live)} live tokens in one family")

    failed = [
        response
        for response in responses
        if response.status >= 500 or response.status == 0
    ]
    if failed:
        details = Counter(f"{a.status} {a.error or a.description}" for a in failed)
        violations.append(f"5xx or failed requests: {dict(details)}")
    if any(response.refresh_token != expected for response in successes):
        violations.append("a 200 response carried another refresh token")

    if grace_enabled:
        if len(successes) != len(responses):
            statuses = Counter(response.status for response in responses)
            violations.append(f"not every response is 200: {dict(statuses)}")
        if family.revoked_at is not None:
            violations.append(f"the family was revoked ({family.revoked_reason})")
        if len(live) != 1:
            violations.append(f"{len(live)} live tokens instead of 1")
    else:
        if len(successes) != 1:
            violations.append(f"{len(successes)} responses are 200 instead of 1")
        rejected = [
            response
            for response in responses
            if response.status == 400
            and response.error == "invalid_grant"
            and response.description in REUSE_DESCRIPTIONS
        ]
        if len(rejected) != len(responses) - 1:
            others = Counter(
                f"{a.status} {a.description}" for a in responses if a not in rejected
            )
            violations.append(f"losers not rejected as reuse: {dict(others)}")
        if family.revoked_reason != "reuse_detected":
            violations.append(
                f"the family's revoked_reason is {family.revoked_reason!r},"
                " not 'reuse_detected'"
            )

    return TrialResult(
        responses=responses, successors=len(successors), violations=violations
    )


class ThreadRacer:
    """Send one refresh token from many threads at once, through the test client."""

    def __init__(self, app: Flask, threads: int) -> None:
        self.app = app
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="racer")

    def race(self, presented: str) -> list[RaceResponse]:
        """Release every thread's request together and return the responses."""
        barrier = threading.Barrier(self.threads)

        def send() -> RaceResponse:
            client = self.app.test_client()
            barrier.wait(BARRIER_TIMEOUT_SECONDS)
            response = client.post("/auth/refresh", json={"refresh_token": presented})
            return race_response(
                response.status_code,
                response.get_json(silent=True),
                response.headers.get("Retry-After"),
            )

        futures = [self._pool.submit(send) for _ in range(self.threads)]
        return [future.result() for future in futures]

    def close(self) -> None:
        """Stop the threads."""
        self._pool.shutdown()


class HttpRacer:
    """Send one refresh token to running servers from many threads at once."""

    def __init__(self, targets: Sequence[str]) -> None:
        #: One base URL per thread; repeat a URL to send it more requests.
        self.targets = list(targets)
        self._pool = ThreadPoolExecutor(len(targets), thread_name_prefix="client")

    def race(self, presented: str) -> list[RaceResponse]:
        """Release every thread's request together and return the responses."""
        barrier = threading.Barrier(len(self.targets))

        def send(base_url: str) -> RaceResponse:
            barrier.wait(BARRIER_TIMEOUT_SECONDS)
            try:
                response = requests.post(
                    f"{base_url}/auth/refresh",
                    json={"refresh_token": presented},
                    timeout=REQUEST_TIMEOUT_SECONDS,
                )
            except requests.RequestException as error:
                return RaceResponse(
                    status=0, description=f"{type(error).__name__}: {error}"
                )
            try:
                body = response.json()
            except ValueError:
                body = None
            return race_response(
                response.status_code, body, response.headers.get("Retry-After")
            )

        futures = [self._pool.submit(send, url) for url in self.targets]
        return [future.result() for future in futures]

    def close(self) -> None:
        """Stop the threads."""
        self._pool.shutdown()


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def control_socket_options() -> list[str]:
    """Return the option that turns off gunicorn's control socket, if it has one.

    Gunicorn 27 opens a control socket at one path per user, which every other
    gunicorn of that user would share with this one.
    """
    from gunicorn.config import KNOWN_SETTINGS

    names = {setting.name for setting in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


class GunicornServer:
    """The example app under gunicorn with sync workers, on 127.0.0.1.

    The server runs in a session of its own, so :meth:`stop` can end the master
    and any worker that outlives it by their process group.
    """

    def __init__(
        self,
        *,
        database_url: str,
        secret_key: str,
        workers: int,
        log_path: Path,
        config_env: dict[str, str] | None = None,
    ) -> None:
        self.workers = workers
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "FLASK_REFRESH_SECRET_KEY": secret_key,
            **(config_env or {}),
        }
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> None:
        """Start the server and wait until it responds.

        A port taken between :func:`free_port` and gunicorn's bind is retried
        with another port, up to ``attempts`` times.

        :raises RuntimeError: the server exited or did not respond in time; the
            message ends with its log.
        """
        for attempt in range(1, attempts + 1):
            self.spawn()
            try:
                self.wait_until_ready()
                return
            except RuntimeError:
                self.stop()
                if attempt == attempts or not self.port_was_taken():
                    raise

    def port_was_taken(self) -> bool:
        """Return whether the server failed because its port was in use."""
        return "Address already in use" in self.log()

    def spawn(self) -> None:
        """Start gunicorn on a free port without waiting for it."""
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "sync",
            # The app is created once and forked, so that every worker serves
            # requests from the start. It opens no database connection before
            # the fork.
            "--preload",
            "--graceful-timeout",
            "5",
            *control_socket_options(),
            "example_app:create_app()",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed command
                command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_ready(self) -> None:
        """Poll the server until it responds.

        :raises RuntimeError: the server exited or did not respond in time; the
            message ends with its log.
        """
        assert self.process is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn on port {self.port} exited with status"
                    f" {self.process.returncode}. Its log:\n{self.log()}"
                )
            with contextlib.suppress(requests.RequestException):
                # Without a token the protected view responds with 401.
                if requests.get(f"{self.url}/api/me", timeout=1).status_code == 401:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"gunicorn on port {self.port} did not respond within"
            f" {SERVER_START_TIMEOUT_SECONDS:.0f} s. Its log:\n{self.log()}"
        )

    def log(self) -> str:
        """Return what the server wrote to its log so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def request_stop(self) -> None:
        """Ask the master to shut down without waiting for it."""
        if self.process is not None and self.process.poll() is None:
            # SIGINT is gunicorn's quick shutdown. SIGTERM would let each idle
            # sync worker wait up to --graceful-timeout for a last request.
            self.process.send_signal(signal.SIGINT)

    def stop(self) -> None:
        """Stop the master, then kill whatever is left of its process group."""
        self.request_stop()
        process = self.process
        if process is None:
            return

        if process.poll() is None:
            try:
                process.wait(SERVER_STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.kill()

    def kill(self) -> None:
        """Kill the master and its workers at once, by their process group."""
        process = self.process
        if process is None:
            return

        # Workers of a master that exited or died are still in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.process = None


@contextlib.contextmanager
def running_servers(
    *,
    database_url: str,
    secret_key: str,
    workers: Sequence[int],
    log_directory: Path,
    config_env: dict[str, str] | None = None,
    kill_at_exit: bool = False,
) -> Iterator[list[GunicornServer]]:
    """Start one gunicorn instance per entry of ``workers``; stop them all after.

    :param kill_at_exit: kill the servers instead of shutting them down. A
        shutdown lets each worker finalise its interpreter, which took about 4 s
        for 24 workers on a 2-core machine.
    """
    servers = [
        GunicornServer(
            database_url=database_url,
            secret_key=secret_key,
            workers=count,
            log_path=log_directory / f"gunicorn-{index}.log",
            config_env=config_env,
        )
        for index, count in enumerate(workers)
    ]
    try:
        # Started together, the instances import and fork at the same time.
        for server in servers:
            server.spawn()
        for server in servers:
            try:
                server.wait_until_ready()
            except RuntimeError:
                server.stop()
                if not server.port_was_taken():
                    raise
                server.start()
        yield servers
    finally:
        if kill_at_exit:
            for server in servers:
                server.kill()
        else:
            for server in servers:
                server.request_stop()
            for server in servers:
                server.stop()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """Parse a positive integer argument."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; exit with status 2 on invalid arguments."""
    parser = argparse.ArgumentParser(
        prog="stress_rotation.py",
        description="Race many requests for one refresh token and count the responses.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="SQLAlchemy URL of the database (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--mode",
        choices=("threads", "processes", "both"),
        default="threads",
        help="race threads of this process, gunicorn workers, or both"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=1000,
        help="trials per mode (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=16,
        help="requests per trial in threads mode (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=16,
        help="sync workers of the first gunicorn instance; the second gets half"
        " as many, and each worker gets one client thread (default: %(default)s)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="REFRESH_REUSE_GRACE in seconds; 0 makes every loser a reuse"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--isolation-level",
        choices=ISOLATION_LEVELS,
        help="the app engines' isolation level, as a host app may configure it"
        " (default: the database's own)",
    )

    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("missing database URL: pass --database-url or set DATABASE_URL")
    if args.grace < 0:
        parser.error(f"--grace must be zero or more seconds, got {args.grace}")
    return args


def isolation_options(level: str | None) -> dict[str, str]:
    """Return the engine options that set ``level``, or none for the default."""
    return {"isolation_level": level} if level else {}


def run_trials(
    app: Flask,
    username: str,
    racer: ThreadRacer | HttpRacer,
    trials: int,
    *,
    grace_enabled: bool,
) -> Tally:
    """Run ``trials`` races and count them, printing progress to stderr."""
    tally = Tally()
    step = max(1, trials // 10)
    for number in range(1, trials + 1):
        presented = login_token(app, username)
        responses = racer.race(presented)
        tally.add(check_trial(app, presented, responses, grace_enabled=grace_enabled))
        if number % step == 0:
            print(
                f"  {number}/{trials} trials, {len(tally.violations)} violations",
                file=sys.stderr,
                flush=True,
            )
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = database_url(args.database_url, str(REPO_ROOT / "instance"))
    secret_key = secrets.token_urlsafe(48)
    grace_enabled = args.grace > 0
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SQLALCHEMY_ENGINE_OPTIONS": {
                "pool_size": args.threads + 4,
                **isolation_options(args.isolation_level),
            },
            "REFRESH_SECRET_KEY": secret_key,
            "REFRESH_REUSE_GRACE": args.grace,
        }
    )
    shown_url = sa.make_url(url).render_as_string(hide_password=True)
    isolation = args.isolation_level or "the database's default"
    print(
        f"stress_rotation: database {shown_url}, grace {args.grace:g} s,"
        f" isolation level {isolation}",
        flush=True,
    )

    with app.app_context():
        import flask_migrate

        flask_migrate.upgrade()

    # Alembic's logging setup disables the loggers that existed before it.
    # Reuse warnings are expected with --grace 0; database errors stay visible.
    library_logger = logging.getLogger("flask_refresh")
    library_logger.disabled = False
    library_logger.setLevel(logging.ERROR)

    username = create_stress_user(app)
    failed = False
    try:
        if args.mode in ("threads", "both"):
            racer = ThreadRacer(app, args.threads)
            print(f"\nthreads: {args.trials} trials x {args.threads} threads")
            started = time.monotonic()
            try:
                tally = run_trials(
                    app, username, racer, args.trials, grace_enabled=grace_enabled
                )
            finally:
                racer.close()
            print(tally.report())
            print(f"elapsed                {time.monotonic() - started:>7.1f} s")
            failed = failed or bool(tally.violations)

        if args.mode in ("processes", "both"):
            failed = run_processes(args, app, url, secret_key, username) or failed
    finally:
        delete_user(app, username)
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()

    return 1 if failed else 0


def run_processes(
    args: argparse.Namespace, app: Flask, url: str, secret_key: str, username: str
) -> bool:
    """Run the trials against two gunicorn instances; return whether any failed."""
    workers = [args.workers, max(1, args.workers // 2)]
    with (
        tempfile.TemporaryDirectory(prefix="stress-rotation-") as log_directory,
        running_servers(
            database_url=url,
            secret_key=secret_key,
            workers=workers,
            log_directory=Path(log_directory),
            config_env={
                "FLASK_REFRESH_REUSE_GRACE": f"{args.grace:g}",
                # Flask's from_prefixed_env reads the value as JSON.
                "FLASK_SQLALCHEMY_ENGINE_OPTIONS": json.dumps(
                    isolation_options(args.isolation_level)
                ),
            },
        ) as servers,
    ):
        targets = [server.url for server in servers for _ in range(server.workers)]
        ports = " and ".join(
            f"{server.port} ({server.workers} workers)" for server in servers
        )
        print(
            f"\nprocesses: {args.trials} trials x {len(targets)} client threads,"
            f" gunicorn on ports {ports}"
        )
        racer = HttpRacer(targets)
        started = time.monotonic()
        try:
            tally = run_trials(
                app, username, racer, args.trials, grace_enabled=args.grace > 0
            )
        finally:
            racer.close()
        print(tally.report())
        print(f"elapsed                {time.monotonic() - started:>7.1f} s")
        if tally.violations:
            for server in servers:
                print(f"\nlog of gunicorn on port {server.port}:\n{server.log()}")
        return bool(tally.violations)


if __name__ == "__main__":
    sys.exit(main())
