"""Rendering the suites' results as docs/benchmarks.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path

from benchmarks.common import (
    BACKENDS,
    FULL_SCHEDULE,
    QUICK_SCHEDULE,
    REPO_ROOT,
    SuiteResult,
    Table,
    server_version,
)

ANALYSIS = Path(__file__).with_name("analysis.md")
PACKAGES = (
    "flask",
    "werkzeug",
    "flask-sqlalchemy",
    "sqlalchemy",
    "pyjwt",
    "flask-login",
    "flask-jwt-extended",
    "django",
    "djangorestframework",
    "djangorestframework-simplejwt",
    "psycopg",
    "psycopg-binary",
    "pymysql",
    "gunicorn",
    "pyinstrument",
)

#: Sections of the report: heading, introduction, and the suites they show.
SECTIONS = (
    (
        "Per-request check",
        "A GET of a protected JSON route with a valid access token. The bare route"
        " has no check; the hand-written decorator reads the Bearer header and calls"
        " `jwt.decode`, the least a check through PyJWT's `jwt.decode` can do, and"
        ' is the reference ("the limit"). `jwt.decode` checks on every call that'
        " the HMAC secret is not an encoded public or private key. flask-refresh"
        " checks its secrets once, at start-up, so the same decorator with that"
        " check done once is shown too. The bare route, the limits,"
        " Flask-JWT-Extended and flask-refresh"
        " run in one app with the same extensions, on the same access token of"
        " flask-refresh (Flask-JWT-Extended decodes its own token of the same"
        " shape). The revocation-checking variants add one primary key lookup per"
        " request, or a cache hit.",
        ("request", "http"),
    ),
    (
        "Refresh",
        "A chain of refreshes: each request presents the refresh token the previous"
        " one returned. flask-refresh is `POST /auth/refresh` of the example app."
        " The raw loop is SQLAlchemy Core on flask-refresh's own engine and table:"
        " a conditional UPDATE with a row count check, then an INSERT, in one"
        " transaction, with no HTTP and no JWT. The same loop behind a bare Flask"
        " route that reads and returns JSON shows what any Flask refresh route"
        " costs at least through the same test client. Flask-JWT-Extended uses its"
        " documented refresh route with a database blocklist (the presented refresh"
        " token's `jti` is added to the blocklist and a new pair is issued) on the"
        " same database. simplejwt runs `TokenRefreshView` with"
        " `ROTATE_REFRESH_TOKENS` and `BLACKLIST_AFTER_ROTATION` and the"
        " `token_blacklist` app, through Django's test client, on its own database on"
        " the same server.\n\n"
        'What the SQL tables count: "statements" are what the library handed to the'
        " driver: SQLAlchemy's `before_cursor_execute` events, or Django's"
        " `execute_wrapper` (which also sees the SAVEPOINTs Django sends, and the BEGIN"
        " it sends on SQLite). BEGIN and COMMIT"
        " are not statements there; SQLAlchemy's `begin` and `commit` events and the"
        " pool's `reset` (the ROLLBACK when a connection goes back to the pool) are"
        " counted in their own column.\n\n"
        "The last column counts at the driver, for every library alike:\n\n"
        "- PostgreSQL: the ReadyForQuery messages of libpq's protocol trace, one per"
        " round trip. psycopg sends BEGIN as its own round trip before the first"
        " statement of a transaction, and COMMIT as another. It skips the pool's"
        " ROLLBACK when no transaction is open.\n"
        "- MariaDB: the commands PyMySQL sends. There is no BEGIN, because the"
        " server starts transactions implicitly. COMMIT is one command, and so is"
        " the pool's ROLLBACK, which PyMySQL always sends.\n"
        "- SQLite: every statement SQLite runs, the BEGIN and COMMIT that Python's"
        " sqlite3 module issues included. These are library calls, not network"
        " round trips.",
        ("refresh_sqlite", "refresh_postgresql", "refresh_mariadb"),
    ),
    (
        "Growth with stored tokens",
        "flask-refresh's refresh and the raw loop, each on databases holding 1k,"
        " 100k and 1M stored tokens (families of 10 tokens, 9 spent, over 1,000"
        " users; PostgreSQL loaded with COPY, the others with executemany, then"
        " ANALYZE). All sizes are filled before timing starts and measured in the"
        " same rounds.",
        ("growth_sqlite", "growth_postgresql", "growth_mariadb"),
    ),
    (
        "Login",
        "`POST /auth/login` with a correct password against one"
        " `check_password_hash` call on the same stored hash, so with the same"
        " method and parameters (Werkzeug's default).",
        ("login",),
    ),
    (
        "Scale-out and purge",
        "Over HTTP against PostgreSQL. See the notes under each table for the load.",
        ("scale",),
    ),
    (
        "Profiles",
        "Where the time of the in-process paths goes, by package and by"
        " flask-refresh function, from the profiler.",
        ("profile",),
    ),
)


def render_table(table: Table) -> list[str]:
    """Return the Markdown lines of one table with its title and notes."""
    lines = [f"### {table.title}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join(" --- " for _ in table.columns) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines.append("")
    for note in table.notes:
        lines += [note, ""]
    return lines


def code_version() -> str:
    """Return the commit checked out, noting changes to the library or the app."""
    code = "commit " + _git("rev-parse", "--short", "HEAD")
    if _git("status", "--porcelain", "--", "flask_refresh", "example_app"):
        code += " with uncommitted changes to flask_refresh/ or example_app/"
    return code


def machine_lines(
    databases: tuple[str, ...], skipped: dict[str, str], code: str
) -> list[str]:
    """Describe the machine, the software versions and the code measured."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"

    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        wrk = (
            subprocess.run(
                ["wrk", "--version"], capture_output=True, text=True, check=False
            )
            .stdout.split("[")[0]
            .strip()
        )
    except OSError:
        wrk = "not installed"
    servers = []
    for backend in BACKENDS:
        if backend in databases:
            servers.append(server_version(backend))
        elif backend in skipped:
            servers.append(f"{backend}: left out ({skipped[backend]})")

    return [
        "| | |",
        "| --- | --- |",
        f"| CPU | {cpu}, {os.cpu_count()} logical cores |",
        f"| memory | {memory} |",
        f"| OS | {platform.platform()} |",
        f"| Python | {platform.python_version()} |",
        f"| databases | {'; '.join(servers)} (default server settings) |",
        f"| load generator | {wrk or 'wrk'} |",
        f"| packages | {', '.join(versions)} |",
        f"| code | {code} |",
    ]


def _git(*arguments: str) -> str:
    try:
        return subprocess.run(
            ["git", *arguments],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return ""


def render_report(
    results: list[SuiteResult],
    *,
    command: str,
    quick: bool,
    databases: tuple[str, ...],
    skipped: dict[str, str],
    failures: dict[str, str],
    seconds: float,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    code: str,
) -> str:
    """Return the whole Markdown page.

    ``code`` is :func:`code_version` as it was when the run started, because
    commits made while it ran did not reach the processes it measured.
    """
    by_suite = {result.suite: result for result in results}
    schedule = QUICK_SCHEDULE if quick else FULL_SCHEDULE
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/run.py; edit benchmarks/report.py or"
        " benchmarks/analysis.md instead. -->",
        "",
        f"Generated on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by",
        "",
        f"```sh\n{command}\n```",
        "",
        f"in {seconds / 60:.0f} minutes ({'quick' if quick else 'full'} mode)."
        f" Load average (1, 5, 15 min) before: {_load(load_before)}; after:"
        f" {_load(load_after)}. On a shared machine these numbers are noisy:"
        " compare ratios measured in the same run, not absolute rates across runs.",
        "",
        "How every comparison is measured: the variants run side by side in one"
        " process (or against servers started together), warmed up, then in rounds;"
        " each round runs every variant once, in a new random order. In-process"
        f" rounds time a batch of about {schedule.batch_seconds:g} s per variant,"
        f" {schedule.rounds} rounds. A rate is the median over rounds; a ratio is"
        " the median of the per-round ratios, with the 25th-75th percentile of those"
        " ratios in brackets where shown. None of this is a pass/fail test.",
        "",
        "## Machine and versions",
        "",
        *machine_lines(databases, skipped, code),
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
    ]
    for result in results:
        for target in result.targets:
            if target.met is None:
                met = "n/a"
            elif target.met:
                met = "yes"
            else:
                met = "**no**"
            lines.append(f"| {target.name} | {target.measured} | {met} |")
    lines.append("")
    if failures:
        lines += [
            "Suites that failed in this run: "
            + ", ".join(f"{name} ({why})" for name, why in failures.items())
            + ".",
            "",
        ]

    for number, (heading, introduction, suites) in enumerate(SECTIONS, start=1):
        lines += [f"## {number}. {heading}", "", introduction, ""]
        for suite in suites:
            result = by_suite.get(suite)
            if result is None:
                continue
            for table in result.tables:
                lines += render_table(table)
            for note in result.notes:
                lines += [note, ""]

    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(lines)


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)
