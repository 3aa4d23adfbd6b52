"""Refresh: flask-refresh against the raw Core loop and two peers, on one database.

Runs once per backend (``--databases`` names one). flask-refresh, the raw loop and
Flask-JWT-Extended share one database; simplejwt gets its own on the same server.
After the timed rounds, each variant rotates :data:`COUNTED_ROTATIONS` more times
with statement and round-trip counters on.
"""

from __future__ import annotations

from typing import Any

from benchmarks import apps, django_peer
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
    summarize,
)
from benchmarks.rotation_ops import (
    fje_refresh_operation,
    ours_refresh_operation,
    raw_rotation_operation,
    raw_route_operation,
)
from benchmarks.sqlcount import Counts, count_django, count_sqlalchemy

COUNTED_ROTATIONS = 50

LABELS = {
    "raw": "raw Core rotation loop (UPDATE + INSERT, no HTTP)",
    "raw_route": "the raw rotation in a bare Flask JSON route",
    "ours": "flask-refresh POST /auth/refresh",
    "ours_read_committed": (
        "flask-refresh POST /auth/refresh, engine at READ COMMITTED"
    ),
    "fje": "Flask-JWT-Extended refresh + database blocklist",
    "simplejwt": "simplejwt TokenRefreshView, rotation + blacklist",
}


def describe_kinds(kinds: dict[str, float]) -> str:
    """Format statement kinds per rotation, such as ``UPDATE 1, INSERT 1``."""
    return ", ".join(f"{kind} {count:g}" for kind, count in kinds.items()) or "-"


def main() -> None:
    options = parse_suite_options(__doc__ or "")
    (backend,) = options.databases
    log(f"refresh comparison on {backend}")

    url = create_database(backend, f"bench_refresh_{backend}", options.workdir)
    ours = apps.build_ours_app(url)
    apps.prepare_ours_database(ours)
    fje = apps.build_fje_blocklist_app(url)

    django_name = f"bench_simplejwt_{backend}"
    create_database(backend, django_name, options.workdir)
    django_peer.configure(
        django_peer.database_settings(backend, django_name, options.workdir)
    )

    operations = {
        "raw": raw_rotation_operation(ours),
        "raw_route": raw_route_operation(ours),
        "ours": ours_refresh_operation(ours),
        "fje": fje_refresh_operation(fje),
        "simplejwt": django_peer.refresh_operation(),
    }
    engines = {
        "raw": apps.ours_engine(ours),
        "raw_route": apps.ours_engine(ours),
        "ours": apps.ours_engine(ours),
        "fje": apps.fje_engine(fje),
    }
    order = ["raw", "raw_route", "ours", "fje", "simplejwt"]
    if backend == "mariadb":
        # MariaDB starts transactions at REPEATABLE READ, so rotation sends SET
        # TRANSACTION first. An engine already at READ COMMITTED skips it.
        committed = apps.build_ours_app(
            url, SQLALCHEMY_ENGINE_OPTIONS={"isolation_level": "READ COMMITTED"}
        )
        operations["ours_read_committed"] = ours_refresh_operation(committed)
        engines["ours_read_committed"] = apps.ours_engine(committed)
        order.insert(order.index("ours") + 1, "ours_read_committed")
    samples = measure_interleaved(
        operations, schedule_for(options), progress=lambda text: log(f"  {text}")
    )

    counted: dict[str, dict[str, Any]] = {}
    for name, engine in engines.items():
        counts: Counts
        with count_sqlalchemy(engine) as counts:
            operations[name](COUNTED_ROTATIONS)
        counted[name] = counts.per(COUNTED_ROTATIONS)
    with count_django(django_peer.django_connection(), backend) as counts:
        operations["simplejwt"](COUNTED_ROTATIONS)
    counted["simplejwt"] = counts.per(COUNTED_ROTATIONS)

    by_raw = summarize(samples, reference="raw", names=order)
    by_ours = {s.name: s for s in summarize(samples, reference="ours", names=order)}
    speed = Table(
        title=f"Refresh throughput, in process ({backend})",
        columns=["variant", "median refreshes/s", "vs raw loop (IQR)", "vs ours"],
    )
    for summary in by_raw:
        speed.rows.append(
            [
                LABELS[summary.name],
                f"{summary.median:,.0f}",
                format_ratio(summary),
                f"{by_ours[summary.name].ratio:.2f}",
            ]
        )

    wire_label = {
        "sqlite": "SQLite calls (trace callback)",
        "postgresql": "round trips (libpq ReadyForQuery)",
        "mariadb": "round trips (PyMySQL commands)",
    }[backend]
    statements = Table(
        title=f"SQL per rotation ({backend})",
        columns=[
            "variant",
            "statements (BEGIN/COMMIT excluded)",
            "by kind",
            "begin / commit / pool reset",
            wire_label,
        ],
    )
    for name in order:
        per = counted[name]
        transaction = (
            "not visible to Django"
            if name == "simplejwt"
            else f"{per['begins']:g} / {per['commits']:g} / {per['pool_resets']:g}"
        )
        statements.rows.append(
            [
                LABELS[name],
                f"{per['statements']:g}",
                describe_kinds(per["kinds"]),
                transaction,
                f"{per['wire']:g}",
            ]
        )

    result = SuiteResult(
        suite=f"refresh_{backend}",
        tables=[speed, statements],
        raw={"samples": samples, "counted": counted},
    )
    ours_vs_raw = next(s for s in by_raw if s.name == "ours")
    result.targets.append(
        Target(
            name=f"Refresh on {backend}: ours >= 0.8 of the raw Core loop",
            measured=f"{ours_vs_raw.ratio:.2f}",
            met=ours_vs_raw.ratio >= 0.8,
        )
    )
    for peer in ("fje", "simplejwt"):
        ratio = 1 / by_ours[peer].ratio
        result.targets.append(
            Target(
                name=f"Refresh on {backend}: ours ahead of {LABELS[peer]}",
                measured=f"{ratio:.2f}x the peer",
                met=ratio > 1,
            )
        )
    ours_counts = counted["ours"]
    result.targets.append(
        Target(
            name=f"Refresh on {backend}: at most 3 statements per rotation",
            measured=f"{ours_counts['statements']:g} statements",
            met=ours_counts["statements"] <= 3,
        )
    )
    if backend != "sqlite":
        result.targets.append(
            Target(
                name=f"Refresh on {backend}: at most 3 round trips at the driver",
                measured=f"{ours_counts['wire']:g} round trips",
                met=ours_counts["wire"] <= 3,
            )
        )
    result.write(options.out)


if __name__ == "__main__":
    main()
