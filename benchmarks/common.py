"""Shared pieces of the benchmark suites: settings, databases, timing and results.

Every comparison is measured the same way. The variants are warmed up, then run in
rounds, and each round times one batch of every variant in a shuffled order. Slow
drifts of a shared machine (another job starting, CPU frequency changes) so hit all
variants alike. A batch lasts about ``batch_seconds``. The result of a variant is
the median of its per-round throughputs. A ratio is the median of the per-round
ratios to the reference variant measured in the same round.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parent.parent

#: One signing key for every library, long enough for HS256 in all of them.
SECRET_KEY = "benchmark-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-0123"
ALGORITHM = "HS256"
#: Token lifetimes given to every library.
ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
REFRESH_TOKEN_LIFETIME = timedelta(days=14)
SESSION_LIFETIME = timedelta(days=30)

USERNAME = "bench"
PASSWORD = "bench-password-1234"

BACKENDS = ("sqlite", "postgresql", "mariadb")
#: Connection URLs of a database that always exists, for CREATE/DROP DATABASE.
ADMIN_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mariadb+pymysql://root@127.0.0.1:3306/mysql?charset=utf8mb4",
}
#: Every database the benchmarks create starts with this, so cleanup finds them.
DATABASE_PREFIX = "bench_"


# ---------------------------------------------------------------------------
# Command line of a suite
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteOptions:
    """Options that run.py passes to every suite."""

    out: Path
    workdir: Path
    quick: bool
    databases: tuple[str, ...]


def parse_suite_options(description: str) -> SuiteOptions:
    """Parse the command line shared by the suite modules."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="JSON result file.")
    parser.add_argument(
        "--workdir",
        type=Path,
        required=True,
        help="Directory for SQLite files, logs and token files.",
    )
    parser.add_argument("--quick", action="store_true", help="Fewer, shorter rounds.")
    parser.add_argument(
        "--databases",
        default=",".join(BACKENDS),
        help="Comma-separated subset of sqlite,postgresql,mariadb.",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    return SuiteOptions(
        out=args.out,
        workdir=args.workdir,
        quick=args.quick,
        databases=parse_databases(args.databases),
    )


def parse_databases(text: str) -> tuple[str, ...]:
    """Return the backends named in a comma-separated list, in canonical order."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = names - set(BACKENDS)
    if unknown:
        raise SystemExit(
            f"Unknown database(s) {sorted(unknown)}; choose from {', '.join(BACKENDS)}."
        )
    return tuple(name for name in BACKENDS if name in names)


# ---------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------


def database_url(backend: str, name: str, workdir: Path) -> str:
    """Return the SQLAlchemy URL of the benchmark database ``name``."""
    if not name.startswith(DATABASE_PREFIX):
        raise ValueError(f"Benchmark database names start with {DATABASE_PREFIX!r}.")
    if backend == "sqlite":
        return f"sqlite:///{workdir / (name + '.sqlite')}"
    if backend == "postgresql":
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    if backend == "mariadb":
        return f"mariadb+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
    raise ValueError(f"Unknown backend {backend!r}.")


def create_database(backend: str, name: str, workdir: Path) -> str:
    """Create an empty database ``name``, dropping an old one, and return its URL."""
    drop_database(backend, name, workdir)
    if backend != "sqlite":
        with admin_connection(backend) as connection:
            if backend == "postgresql":
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                connection.exec_driver_sql(
                    f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
                    " COLLATE utf8mb4_unicode_ci"
                )
    return database_url(backend, name, workdir)


def drop_database(backend: str, name: str, workdir: Path) -> None:
    """Drop the benchmark database ``name`` if it exists."""
    if not name.startswith(DATABASE_PREFIX):
        raise ValueError(f"Refusing to drop {name!r}: not a benchmark database.")
    if backend == "sqlite":
        path = workdir / (name + ".sqlite")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return

    with admin_connection(backend) as connection:
        if backend == "postgresql":
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")


def list_benchmark_databases(backend: str) -> list[str]:
    """Return the names of the benchmark databases left on a server."""
    pattern = {"pattern": DATABASE_PREFIX.replace("_", "\\_") + "%"}
    with admin_connection(backend) as connection:
        if backend == "postgresql":
            query = "SELECT datname FROM pg_database WHERE datname LIKE :pattern"
        else:
            query = "SHOW DATABASES LIKE :pattern"
        rows = connection.execute(sa.text(query), pattern)
        return [row[0] for row in rows]


class admin_connection:
    """An autocommit connection to the server's admin database."""

    def __init__(self, backend: str) -> None:
        self._engine = sa.create_engine(
            ADMIN_URLS[backend], isolation_level="AUTOCOMMIT", poolclass=sa.NullPool
        )
        self._connection: sa.Connection | None = None

    def __enter__(self) -> sa.Connection:
        self._connection = self._engine.connect()
        return self._connection

    def __exit__(self, *exc_info: object) -> None:
        assert self._connection is not None
        self._connection.close()
        self._engine.dispose()


def server_error(backend: str) -> str | None:
    """Return None when the backend's server responds, or else the error."""
    if backend == "sqlite":
        return None
    try:
        with admin_connection(backend) as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as error:  # any driver or network failure means "skip it"
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def server_version(backend: str) -> str:
    """Return the version string of the backend's server or library."""
    if backend == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    with admin_connection(backend) as connection:
        if backend == "postgresql":
            return "PostgreSQL " + str(
                connection.exec_driver_sql("SHOW server_version").scalar()
            )
        return "MariaDB " + str(connection.exec_driver_sql("SELECT VERSION()").scalar())


def sqlite_connection_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Set the pragmas that the example app sets on its SQLite connections.

    The peers' engines get them too, so that every library runs on the same
    journal mode and with foreign keys enforced.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

#: A benchmarked operation: run the operation ``n`` times.
Operation = Callable[[int], None]


@dataclass(frozen=True)
class Schedule:
    """How long and how often an interleaved comparison runs."""

    rounds: int
    batch_seconds: float
    warmup_seconds: float


QUICK_SCHEDULE = Schedule(rounds=5, batch_seconds=0.25, warmup_seconds=0.3)
FULL_SCHEDULE = Schedule(rounds=15, batch_seconds=0.5, warmup_seconds=1.0)


def schedule_for(options: SuiteOptions) -> Schedule:
    """Return the schedule of quick or full runs."""
    return QUICK_SCHEDULE if options.quick else FULL_SCHEDULE


def calibrate(operation: Operation, seconds: float) -> int:
    """Run ``operation`` for about ``seconds`` and return a batch size for that time."""
    count = 1
    elapsed = 0.0
    while True:
        start = time.perf_counter()
        operation(count)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 4 or count >= 1_000_000:
            break
        count *= 2
    return max(1, math.ceil(count * seconds / max(elapsed, 1e-9)))


def measure_interleaved(
    operations: dict[str, Operation],
    schedule: Schedule,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Return per-round throughputs (operations per second) of each operation.

    Each operation is warmed up and calibrated once, then every round runs one
    batch of each operation in a new random order.
    """
    batches: dict[str, int] = {}
    for name, operation in operations.items():
        operation(1)
        batches[name] = calibrate(operation, schedule.warmup_seconds)
        batches[name] = max(
            1, round(batches[name] * schedule.batch_seconds / schedule.warmup_seconds)
        )

    samples: dict[str, list[float]] = {name: [] for name in operations}
    names = list(operations)
    for round_number in range(schedule.rounds):
        random.shuffle(names)
        for name in names:
            gc.collect()
            count = batches[name]
            start = time.perf_counter()
            operations[name](count)
            elapsed = time.perf_counter() - start
            samples[name].append(count / elapsed)
        if progress is not None:
            progress(f"round {round_number + 1}/{schedule.rounds}")
    return samples


def median(values: Iterable[float]) -> float:
    """Return the median, or NaN for no values."""
    data = list(values)
    return statistics.median(data) if data else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` quantile (0 to 1) by linear interpolation."""
    data = sorted(values)
    if not data:
        return math.nan
    position = (len(data) - 1) * fraction
    lower = math.floor(position)
    upper = math.ceil(position)
    weight = position - lower
    return data[lower] * (1 - weight) + data[upper] * weight


def paired_ratios(
    numerator: Sequence[float], denominator: Sequence[float]
) -> list[float]:
    """Return the per-round ratios of two series measured in the same rounds."""
    return [a / b for a, b in zip(numerator, denominator, strict=True) if b]


@dataclass
class Summary:
    """Median throughput of a variant and its ratio to a reference."""

    name: str
    median: float
    ratio: float
    ratio_low: float
    ratio_high: float
    rounds: int


def summarize(
    samples: dict[str, list[float]], reference: str, names: Sequence[str] | None = None
) -> list[Summary]:
    """Summarize interleaved samples against ``reference``.

    ``ratio_low`` and ``ratio_high`` are the 25th and 75th percentiles of the
    per-round ratios, which show how much the rounds disagreed.
    """
    result = []
    for name in names or list(samples):
        ratios = paired_ratios(samples[name], samples[reference])
        result.append(
            Summary(
                name=name,
                median=median(samples[name]),
                ratio=median(ratios),
                ratio_low=percentile(ratios, 0.25),
                ratio_high=percentile(ratios, 0.75),
                rounds=len(samples[name]),
            )
        )
    return result


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass
class Table:
    """A table of the report: a title, column names, rows of cells and notes."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Target:
    """One target of the issue and whether this run met it."""

    name: str
    measured: str
    met: bool | None


@dataclass
class SuiteResult:
    """Result of one suite, as written to its JSON file for run.py to render."""

    suite: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        """Write the result as JSON."""
        path.write_text(json.dumps(asdict(self), indent=2, default=str))


def load_result(path: Path) -> SuiteResult:
    """Read a result that :meth:`SuiteResult.write` wrote."""
    data = json.loads(path.read_text())
    return SuiteResult(
        suite=data["suite"],
        tables=[Table(**table) for table in data["tables"]],
        targets=[Target(**target) for target in data["targets"]],
        notes=data["notes"],
        raw=data["raw"],
    )


def summary_rows(
    summaries: Sequence[Summary], labels: dict[str, str], unit: str = "/s"
) -> list[list[str]]:
    """Return table rows: label, median throughput, ratio with its quartiles."""
    return [
        [
            labels.get(summary.name, summary.name),
            f"{summary.median:,.0f}{unit}",
            format_ratio(summary),
        ]
        for summary in summaries
    ]


def format_ratio(summary: Summary) -> str:
    """Format a ratio with the quartiles of its per-round values."""
    return f"{summary.ratio:.2f} ({summary.ratio_low:.2f}-{summary.ratio_high:.2f})"


def log(message: str) -> None:
    """Print a progress line to the terminal running the benchmarks."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
