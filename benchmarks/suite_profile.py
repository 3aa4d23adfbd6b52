"""Profiles of the per-request check and of a refresh, with pyinstrument.

Each path runs in process under pyinstrument's sampling profiler. The report
gives where the time went, by package (own time of the frames in each), and the
inclusive time of flask-refresh's main functions, both per request.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pyinstrument import Profiler

from benchmarks import apps
from benchmarks.common import (
    SuiteResult,
    Table,
    create_database,
    log,
    parse_suite_options,
    server_error,
)
from benchmarks.rotation_ops import ours_refresh_operation
from benchmarks.suite_request import request_operation

#: flask-refresh functions whose inclusive time the report lists.
FUNCTIONS = (
    "verify_jwt_in_request",
    "bearer_token",
    "decode_access_token",
    "use_token_user",
    "is_session_live",
    "refresh",
    "rotate",
    "token_response",
    "encode_access_token",
    "from_request",
)
_PACKAGE = re.compile(r"site-packages/([^/]+)/")


def package_of(file_path: str | None) -> str:
    """Return the package a frame's file belongs to, for grouping."""
    if not file_path or file_path.startswith("<"):
        return "C functions (drivers, hashing, I/O waits)"
    match = _PACKAGE.search(file_path)
    if match:
        return match.group(1)
    for name in ("flask_refresh", "example_app", "benchmarks"):
        if f"/{name}/" in file_path:
            return name
    return "python standard library"


def walk(
    frame: Any, own: Counter[str], inclusive: Counter[str], stack: set[str]
) -> None:
    """Add up own time by package and inclusive time of :data:`FUNCTIONS`.

    pyinstrument puts a frame's own time in synthetic ``[self]`` children; it is
    counted here as the frame's own time.
    """
    children = [child for child in frame.children if not child.is_synthetic]
    own[package_of(frame.file_path)] += frame.time - sum(c.time for c in children)
    name = frame.function
    counted = False
    if (
        name in FUNCTIONS
        and frame.file_path
        and "flask_refresh" in frame.file_path
        and name not in stack
    ):
        inclusive[name] += frame.time
        stack.add(name)
        counted = True
    for child in children:
        walk(child, own, inclusive, stack)
    if counted:
        stack.discard(name)


def profile(operation: Any, count: int, title: str) -> list[Table]:
    """Profile ``count`` runs of ``operation`` and return two tables about them."""
    operation(max(1, count // 10))
    profiler = Profiler(interval=0.0002)
    profiler.start()
    operation(count)
    profiler.stop()
    root = profiler.last_session.root_frame() if profiler.last_session else None
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    if root is not None:
        walk(root, own, inclusive, set())
    total = sum(own.values()) or 1.0

    by_package = Table(
        title=f"{title}: own time by package",
        columns=["package", "share", "microseconds per request"],
    )
    for package, seconds in own.most_common(8):
        by_package.rows.append(
            [package, f"{seconds / total:.0%}", f"{seconds / count * 1e6:,.0f}"]
        )
    functions = Table(
        title=f"{title}: flask-refresh functions, inclusive time",
        columns=["function", "share", "microseconds per request"],
    )
    for name, seconds in inclusive.most_common():
        functions.rows.append(
            [name, f"{seconds / total:.0%}", f"{seconds / count * 1e6:,.0f}"]
        )
    note = (
        f"pyinstrument, {count} requests through Flask's test client, sampled every"
        " 0.2 ms; times include the profiler's overhead."
    )
    by_package.notes.append(note)
    return [by_package, functions]


def main() -> None:
    options = parse_suite_options(__doc__ or "")
    usable = [db for db in options.databases if server_error(db) is None]
    quick = options.quick
    tables: list[Table] = []

    url = create_database(usable[0], "bench_profile_request", options.workdir)
    app = apps.build_ours_app(url)
    apps.prepare_ours_database(app)
    access = apps.ours_login(app)["access_token"]
    log("profiling the per-request check")
    tables += profile(
        request_operation(app, apps.PROTECTED_PATH, access),
        2_000 if quick else 10_000,
        "Per-request check, stateless",
    )

    for backend in usable:
        url = create_database(backend, f"bench_profile_{backend}", options.workdir)
        app = apps.build_ours_app(url)
        apps.prepare_ours_database(app)
        log(f"profiling refresh on {backend}")
        tables += profile(
            ours_refresh_operation(app),
            300 if quick else 1_500,
            f"Refresh ({backend})",
        )

    SuiteResult(suite="profile", tables=tables).write(options.out)


if __name__ == "__main__":
    main()
