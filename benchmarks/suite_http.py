"""Per-request check over HTTP: gunicorn on 127.0.0.1, wrk as the load generator.

The variants of the in-process comparison, each served by a one-worker gunicorn.
The bare route, the hand-written decorator, Flask-JWT-Extended and flask-refresh
stateless share one server (one app). The revocation-checking variants and
Flask-JWT-Extended with its blocklist get a server each. Every round runs wrk
once against every variant, in a new random order.
"""

from __future__ import annotations

import random

from benchmarks import apps, servers
from benchmarks.common import (
    SuiteResult,
    Table,
    Target,
    create_database,
    log,
    median,
    paired_ratios,
    parse_suite_options,
    percentile,
    server_error,
)

CONNECTIONS = 4
CACHE_TTL_SECONDS = 60

LABELS = {
    "bare": "bare JSON route (no auth)",
    "handwritten": "hand-written jwt.decode decorator (the limit)",
    "checked_once": apps.CHECKED_ONCE_LABEL,
    "fje": "Flask-JWT-Extended @jwt_required()",
    "ours": "flask-refresh @jwt_required(), stateless",
    "ours_revoked": "flask-refresh, REFRESH_CHECK_REVOKED, no cache",
    "ours_cached": f"flask-refresh, REFRESH_CHECK_REVOKED, {CACHE_TTL_SECONDS} s cache",
    "fje_blocklist": "Flask-JWT-Extended with database blocklist",
}


def main() -> None:
    options = parse_suite_options(__doc__ or "")
    if servers.wrk_path() is None:
        SuiteResult(
            suite="http",
            notes=["Skipped: wrk is not installed (apt-get install wrk)."],
        ).write(options.out)
        return
    usable = [db for db in options.databases if server_error(db) is None]
    backend = "postgresql" if "postgresql" in usable else usable[0]
    rounds, seconds = (3, 2.0) if options.quick else (5, 4.0)
    log(f"per-request over HTTP on {backend}: {rounds} rounds of {seconds:g} s")

    url = create_database(backend, f"bench_http_{backend}", options.workdir)
    ours = apps.build_ours_app(url)
    apps.prepare_ours_database(ours)
    access = apps.ours_login(ours)["access_token"]
    fje_access = apps.fje_tokens(ours)[0]
    fje_blocklist = apps.build_fje_blocklist_app(url)
    fje_blocklist_access = apps.fje_tokens(fje_blocklist)[0]

    logs = options.workdir
    started = {
        "stateless": servers.Gunicorn(
            "stateless", database_url=url, log_directory=logs
        ),
        "revoked": servers.Gunicorn(
            "revoked",
            database_url=url,
            config={"REFRESH_CHECK_REVOKED": True},
            log_directory=logs,
        ),
        "cached": servers.Gunicorn(
            "cached",
            database_url=url,
            config={
                "REFRESH_CHECK_REVOKED": True,
                "REFRESH_REVOCATION_CACHE_TTL": CACHE_TTL_SECONDS,
            },
            log_directory=logs,
        ),
        "fje_blocklist": servers.Gunicorn(
            "fje_blocklist", database_url=url, app="fje_blocklist", log_directory=logs
        ),
    }
    variants: dict[str, tuple[str, str, str]] = {
        "bare": ("stateless", apps.BARE_PATH, access),
        "handwritten": ("stateless", apps.HANDWRITTEN_PATH, access),
        "checked_once": ("stateless", apps.CHECKED_ONCE_PATH, access),
        "fje": ("stateless", apps.FJE_PATH, fje_access),
        "ours": ("stateless", apps.PROTECTED_PATH, access),
        "ours_revoked": ("revoked", apps.PROTECTED_PATH, access),
        "ours_cached": ("cached", apps.PROTECTED_PATH, access),
        "fje_blocklist": ("fje_blocklist", apps.PROTECTED_PATH, fje_blocklist_access),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    latency: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    errors = 0
    try:
        for server in started.values():
            server.wait_until_ready(apps.PROTECTED_PATH)
        for server_name, path, token in variants.values():
            # Warm-up: imports, first connections, caches.
            servers.run_wrk(
                started[server_name].base_url + path,
                seconds=1,
                connections=CONNECTIONS,
                headers={"Authorization": f"Bearer {token}"},
            )
        names = list(variants)
        for round_number in range(rounds):
            random.shuffle(names)
            for name in names:
                server_name, path, token = variants[name]
                result = servers.run_wrk(
                    started[server_name].base_url + path,
                    seconds=seconds,
                    connections=CONNECTIONS,
                    headers={"Authorization": f"Bearer {token}"},
                )
                errors += result.non_2xx + result.socket_errors
                rates[name].append(result.requests_per_second)
                latency[name].append(result.latency_ms)
            log(f"  round {round_number + 1}/{rounds}")
    finally:
        for server in started.values():
            server.stop()

    table = Table(
        title=f"Per-request check over HTTP (gunicorn, 1 worker, wrk, {backend})",
        columns=[
            "variant",
            "median requests/s",
            "vs limit (IQR)",
            "vs bare",
            "median p50 / p99 latency",
        ],
    )
    ratios: dict[str, list[float]] = {}
    for name in variants:
        ratios[name] = paired_ratios(rates[name], rates["handwritten"])
        p50 = median(sample.get("p50", float("nan")) for sample in latency[name])
        p99 = median(sample.get("p99", float("nan")) for sample in latency[name])
        table.rows.append(
            [
                LABELS[name],
                f"{median(rates[name]):,.0f}",
                f"{median(ratios[name]):.2f} ({percentile(ratios[name], 0.25):.2f}"
                f"-{percentile(ratios[name], 0.75):.2f})",
                f"{median(paired_ratios(rates[name], rates['bare'])):.2f}",
                f"{p50:.2f} / {p99:.2f} ms",
            ]
        )
    table.notes.append(
        f"wrk: 1 thread, {CONNECTIONS} keep-alive connections, {seconds:g} s per run,"
        f" {rounds} rounds; gunicorn: 1 gthread worker with 1 thread. wrk and"
        " gunicorn share the machine's cores."
    )
    if errors:
        table.notes.append(f"WARNING: {errors} non-2xx responses or socket errors.")

    result = SuiteResult(
        suite="http", tables=[table], raw={"rates": rates, "latency": latency}
    )
    ours_ratio = median(ratios["ours"])
    result.targets.append(
        Target(
            name="Per-request check over HTTP: ours >= 0.95 of the hand-written limit",
            measured=f"{ours_ratio:.2f}",
            met=ours_ratio >= 0.95,
        )
    )
    result.write(options.out)


if __name__ == "__main__":
    main()
