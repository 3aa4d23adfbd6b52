"""Scale-out and purge, on PostgreSQL, over HTTP.

Scale-out: refresh and protected-route (``REFRESH_CHECK_REVOKED``, no cache)
throughput with 1, 2 and 4 gunicorn workers, and with two one-worker instances
driven at once. All servers run for the whole suite and the rounds interleave
them. Each wrk run gets new refresh tokens, two keep-alive connections per worker.

Purge: ``flask tokens purge`` deletes a table of expired tokens while a
two-worker server serves a steady refresh load. The refresh latency percentiles
before and during the purge come from :mod:`benchmarks.loadgen`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flask import Flask

from benchmarks import apps, servers
from benchmarks.bulkload import load_tokens
from benchmarks.common import (
    SECRET_KEY,
    SuiteResult,
    Table,
    create_database,
    log,
    median,
    parse_suite_options,
    percentile,
)

SCALE_CONFIGS = {
    "w1": ("1 worker", [1]),
    "w2": ("2 workers", [2]),
    "w4": ("4 workers", [4]),
    "i2": ("2 instances x 1 worker", [1, 1]),
}
CONNECTIONS_PER_WORKER = 2
PURGE_WORKERS = 2
PURGE_CONNECTIONS = 2


def write_tokens(app: Flask, count: int, path: Path) -> Path:
    """Start ``count`` sessions and write their refresh tokens to ``path``."""
    path.write_text("\n".join(apps.ours_issue_refresh_tokens(app, count)) + "\n")
    return path


def scale_out(
    app: Flask, url: str, workdir: Path, *, rounds: int, seconds: float
) -> Table:
    """Measure refresh and protected-route throughput for every configuration."""
    access = apps.ours_login(app)["access_token"]
    instances: dict[str, list[servers.Gunicorn]] = {}
    for key, (_, workers) in SCALE_CONFIGS.items():
        instances[key] = [
            servers.Gunicorn(
                f"{key}-{index}",
                database_url=url,
                workers=count,
                config={"REFRESH_CHECK_REVOKED": True},
                log_directory=workdir,
            )
            for index, count in enumerate(workers)
        ]

    rates: dict[tuple[str, str], list[float]] = {}
    errors = 0
    try:
        for group in instances.values():
            for server in group:
                server.wait_until_ready()
        jobs = [
            (key, kind) for key in SCALE_CONFIGS for kind in ("refresh", "protected")
        ]
        for round_number in range(rounds + 1):
            warmup = round_number == 0
            random.shuffle(jobs)
            for key, kind in jobs:
                running = []
                for index, server in enumerate(instances[key]):
                    connections = CONNECTIONS_PER_WORKER * server.workers
                    if kind == "refresh":
                        tokens = write_tokens(
                            app,
                            connections + servers.SPARE_TOKENS,
                            workdir / f"tokens-{key}-{index}.txt",
                        )
                        running.append(
                            servers.start_wrk(
                                server.base_url + "/auth/refresh",
                                seconds=1 if warmup else seconds,
                                connections=connections,
                                tokens_file=tokens,
                            )
                        )
                    else:
                        running.append(
                            servers.start_wrk(
                                server.base_url + apps.PROTECTED_PATH,
                                seconds=1 if warmup else seconds,
                                connections=connections,
                                headers={"Authorization": f"Bearer {access}"},
                            )
                        )
                results = [servers.finish_wrk(process) for process in running]
                if warmup:
                    continue
                errors += sum(r.non_2xx + r.socket_errors for r in results)
                rates.setdefault((key, kind), []).append(
                    sum(r.requests_per_second for r in results)
                )
            if not warmup:
                log(f"  scale-out round {round_number}/{rounds}")
    finally:
        for group in instances.values():
            for server in group:
                server.stop()

    table = Table(
        title="Scale-out on PostgreSQL (gunicorn over HTTP, wrk)",
        columns=[
            "configuration",
            "refreshes/s",
            "vs 1 worker",
            "protected requests/s (revocation check)",
            "vs 1 worker",
        ],
    )
    for key, (label, _) in SCALE_CONFIGS.items():
        row = [label]
        for kind in ("refresh", "protected"):
            values = rates[(key, kind)]
            base = rates[("w1", kind)]
            ratios = [a / b for a, b in zip(values, base, strict=True)]
            row += [f"{median(values):,.0f}", f"{median(ratios):.2f}"]
        table.rows.append(row)
    table.notes.append(
        f"{rounds} rounds of {seconds:g} s per configuration and route, interleaved;"
        f" wrk with {CONNECTIONS_PER_WORKER} connections per worker. The machine"
        " has 2 cores shared by wrk, gunicorn and PostgreSQL, so more than two"
        " workers cannot add throughput here; the 4-worker row shows what"
        " contention costs. Two instances are two gunicorn masters, each with its"
        " own connection pool, driven by two wrk processes at once."
    )
    if errors:
        table.notes.append(f"WARNING: {errors} non-2xx responses or socket errors.")
    return table


def purge_under_load(
    app: Flask, url: str, workdir: Path, *, rows: int, before_seconds: float
) -> tuple[Table, dict[str, Any]]:
    """Purge ``rows`` expired tokens while refreshes run; compare latencies."""
    load_tokens(app, rows, expired=True)
    server = servers.Gunicorn(
        "purge", database_url=url, workers=PURGE_WORKERS, log_directory=workdir
    )
    samples_path = workdir / "purge-latencies.samples"
    try:
        server.wait_until_ready()
        tokens = write_tokens(app, PURGE_CONNECTIONS, workdir / "tokens-purge.txt")
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                "--url",
                server.base_url + "/auth/refresh",
                "--tokens-file",
                str(tokens),
                "--out",
                str(samples_path),
            ],
            cwd=Path(__file__).resolve().parent.parent,
        )
        time.sleep(2)  # warm-up, excluded from both windows
        before_start = time.monotonic()
        time.sleep(before_seconds)
        purge_start = time.monotonic()
        environment = dict(os.environ)
        environment.update(DATABASE_URL=url, FLASK_REFRESH_SECRET_KEY=SECRET_KEY)
        purge = subprocess.run(
            [
                str(Path(sys.executable).with_name("flask")),
                "--app",
                "example_app",
                "tokens",
                "purge",
            ],
            env=environment,
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        purge_end = time.monotonic()
        load.send_signal(signal.SIGTERM)
        load.wait(timeout=120)
    finally:
        server.stop()

    if purge.returncode != 0:
        raise RuntimeError(
            f"flask tokens purge failed:\n{purge.stdout}\n{purge.stderr}"
        )
    samples = json.loads(samples_path.read_text())
    windows = {
        "before": (before_start, purge_start),
        "during": (purge_start, purge_end),
    }
    table = Table(
        title=f"Refresh latency before and during a purge of {rows:,} expired tokens"
        " (PostgreSQL)",
        columns=["window", "seconds", "refreshes/s", "p50", "p99", "max", "errors"],
    )
    summary: dict[str, Any] = {"purge_seconds": purge_end - purge_start}
    for name, (start, end) in windows.items():
        inside = [s for s in samples if start <= s[0] < end]
        latencies = [s[1] * 1000 for s in inside]
        failed = sum(1 for s in inside if s[2] != 200)
        summary[name] = {
            "count": len(inside),
            "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99),
        }
        table.rows.append(
            [
                name,
                f"{end - start:.0f}",
                f"{len(inside) / (end - start):,.0f}",
                f"{percentile(latencies, 0.5):.1f} ms",
                f"{percentile(latencies, 0.99):.1f} ms",
                f"{max(latencies, default=float('nan')):.1f} ms",
                str(failed),
            ]
        )
    last_line = (purge.stdout.strip().splitlines() or ["(no output)"])[-1]
    table.notes.append(
        f"gunicorn with {PURGE_WORKERS} workers, {PURGE_CONNECTIONS} closed-loop"
        f" refresh chains (benchmarks/loadgen.py). `flask tokens purge` with its"
        f" default batch size took {purge_end - purge_start:.0f} s and printed:"
        f' "{last_line}"'
    )
    return table, summary


def main() -> None:
    options = parse_suite_options(__doc__ or "")
    if "postgresql" not in options.databases or servers.wrk_path() is None:
        SuiteResult(
            suite="scale",
            notes=["Skipped: needs PostgreSQL among --databases and wrk installed."],
        ).write(options.out)
        return

    quick = options.quick
    url = create_database("postgresql", "bench_scale", options.workdir)
    app = apps.build_ours_app(url)
    apps.prepare_ours_database(app)
    log("scale-out on postgresql")
    scale = scale_out(
        app, url, options.workdir, rounds=2 if quick else 4, seconds=2 if quick else 4
    )

    purge_url = create_database("postgresql", "bench_purge", options.workdir)
    purge_app = apps.build_ours_app(purge_url)
    apps.prepare_ours_database(purge_app)
    rows = 100_000 if quick else 1_000_000
    log(f"purge of {rows:,} expired tokens under refresh load")
    purge_table, purge_summary = purge_under_load(
        purge_app,
        purge_url,
        options.workdir,
        rows=rows,
        before_seconds=5 if quick else 20,
    )
    SuiteResult(
        suite="scale",
        tables=[scale, purge_table],
        raw={"purge": purge_summary},
    ).write(options.out)


if __name__ == "__main__":
    main()
