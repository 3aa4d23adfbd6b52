"""Per-request cost of checking an access token, in process (Flask's test client).

Variants: a bare JSON route, a hand-written decorator that calls ``jwt.decode`` (the
limit), Flask-JWT-Extended's ``@jwt_required()``, and flask-refresh's
``@jwt_required()`` stateless and with ``REFRESH_CHECK_REVOKED`` (cache off and on).
The database-backed variants, and Flask-JWT-Extended with its database blocklist,
run once per selected database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flask import Flask

from benchmarks import apps
from benchmarks.common import (
    SuiteResult,
    Table,
    Target,
    create_database,
    format_ratio,
    log,
    measure_interleaved,
    parse_suite_options,
    schedule_for,
    server_error,
    summarize,
)

#: Env var with a Redis URL; when set, a variant with the shared cache is added.
REDIS_URL_ENV = "BENCH_REDIS_URL"
CACHE_TTL_SECONDS = 60


def request_operation(app: Flask, path: str, token: str) -> Callable[[int], None]:
    """Return an operation that sends ``n`` authenticated GET requests."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def run(count: int) -> None:
        for _ in range(count):
            response = client.get(path, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path} returned {response.status_code}")

    return run


def build_operations(
    databases: tuple[str, ...], workdir: Any
) -> tuple[dict[str, Callable[[int], None]], dict[str, str]]:
    """Build every variant and return the operations and their table labels."""
    operations: dict[str, Callable[[int], None]] = {}
    labels: dict[str, str] = {}

    # The baselines get an access token of flask-refresh, so that the limit
    # decodes the same header and claims as flask-refresh does. They and
    # Flask-JWT-Extended are routes of this same app (see apps.build_ours_app).
    stateless_url = create_database(databases[0], "bench_request_stateless", workdir)
    stateless = apps.build_ours_app(stateless_url)
    apps.prepare_ours_database(stateless)
    ours_token = apps.ours_login(stateless)["access_token"]
    operations["ours"] = request_operation(stateless, apps.PROTECTED_PATH, ours_token)
    labels["ours"] = "flask-refresh @jwt_required(), stateless"

    operations["bare"] = request_operation(stateless, apps.BARE_PATH, ours_token)
    labels["bare"] = "bare JSON route (no auth)"
    operations["handwritten"] = request_operation(
        stateless, apps.HANDWRITTEN_PATH, ours_token
    )
    labels["handwritten"] = "hand-written jwt.decode decorator (the limit)"
    operations["checked_once"] = request_operation(
        stateless, apps.CHECKED_ONCE_PATH, ours_token
    )
    labels["checked_once"] = apps.CHECKED_ONCE_LABEL

    fje_access, _ = apps.fje_tokens(stateless)
    operations["fje"] = request_operation(stateless, apps.FJE_PATH, fje_access)
    labels["fje"] = "Flask-JWT-Extended @jwt_required()"

    for backend in databases:
        url = create_database(backend, f"bench_request_{backend}", workdir)
        variants: dict[str, dict[str, Any]] = {
            f"ours_revoked_{backend}": {"REFRESH_CHECK_REVOKED": True},
            f"ours_cached_{backend}": {
                "REFRESH_CHECK_REVOKED": True,
                "REFRESH_REVOCATION_CACHE_TTL": CACHE_TTL_SECONDS,
            },
        }
        if backend == databases[0]:
            redis_url = os.environ.get(REDIS_URL_ENV)
            if redis_url:
                variants[f"ours_redis_{backend}"] = {
                    "REFRESH_CHECK_REVOKED": True,
                    "REFRESH_REVOCATION_CACHE_TTL": CACHE_TTL_SECONDS,
                    "REFRESH_REDIS_URL": redis_url,
                }

        for name, config in variants.items():
            app = apps.build_ours_app(url, **config)
            apps.prepare_ours_database(app)
            access = apps.ours_login(app)["access_token"]
            operations[name] = request_operation(app, apps.PROTECTED_PATH, access)

        labels[f"ours_revoked_{backend}"] = (
            f"flask-refresh, REFRESH_CHECK_REVOKED, no cache ({backend})"
        )
        labels[f"ours_cached_{backend}"] = (
            f"flask-refresh, REFRESH_CHECK_REVOKED, {CACHE_TTL_SECONDS} s"
            f" in-process cache ({backend})"
        )
        labels[f"ours_redis_{backend}"] = (
            f"flask-refresh, REFRESH_CHECK_REVOKED, {CACHE_TTL_SECONDS} s"
            f" Redis cache ({backend})"
        )

        fje_blocklist = apps.build_fje_blocklist_app(url)
        fje_blocklist_access, _ = apps.fje_tokens(fje_blocklist)
        operations[f"fje_blocklist_{backend}"] = request_operation(
            fje_blocklist, apps.PROTECTED_PATH, fje_blocklist_access
        )
        labels[f"fje_blocklist_{backend}"] = (
            f"Flask-JWT-Extended with database blocklist ({backend})"
        )

    return operations, labels


def main() -> None:
    options = parse_suite_options(__doc__ or "")
    databases = tuple(db for db in options.databases if server_error(db) is None)
    operations, labels = build_operations(databases, options.workdir)
    log(f"per-request, in process: {len(operations)} variants")
    samples = measure_interleaved(
        operations, schedule_for(options), progress=lambda text: log(f"  {text}")
    )

    first = ["bare", "handwritten", "checked_once", "fje", "ours"]
    order = first + [name for name in operations if name not in first]
    summaries = summarize(samples, reference="handwritten", names=order)
    by_bare = {s.name: s for s in summarize(samples, reference="bare")}
    table = Table(
        title="Per-request check, in process (Flask test client)",
        columns=["variant", "median requests/s", "vs limit (IQR)", "vs bare"],
    )
    for summary in summaries:
        table.rows.append(
            [
                labels[summary.name],
                f"{summary.median:,.0f}",
                format_ratio(summary),
                f"{by_bare[summary.name].ratio:.2f}",
            ]
        )
    table.notes.append(
        '"vs limit" is the median of per-round ratios to the hand-written'
        " decorator, with the 25th-75th percentile of those ratios in brackets."
        " Every variant sends the same Authorization header and runs the same"
        " view body."
    )

    ours = next(s for s in summaries if s.name == "ours")
    result = SuiteResult(suite="request", tables=[table], raw={"samples": samples})
    result.targets.append(
        Target(
            name="Per-request check in process: ours >= 0.95 of the hand-written limit",
            measured=f"{ours.ratio:.2f}",
            met=ours.ratio >= 0.95,
        )
    )
    result.write(options.out)


if __name__ == "__main__":
    main()
