"""Growth: refresh cost with many stored tokens, on one backend.

One database per size, all filled before timing starts, then flask-refresh's
``/auth/refresh`` and the raw Core loop run interleaved on every size. On SQLite a
second app on the largest database gives its connections a 64 MiB page cache
(``PRAGMA cache_size``), to show what bounds SQLite's growth.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from benchmarks import apps
from benchmarks.bulkload import load_tokens
from benchmarks.common import (
    Operation,
    SuiteResult,
    Table,
    Target,
    create_database,
    log,
    measure_interleaved,
    median,
    paired_ratios,
    parse_suite_options,
    percentile,
    schedule_for,
)
from benchmarks.rotation_ops import ours_refresh_operation, raw_rotation_operation

FULL_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 100_000)
#: SQLite's default page cache is 2,000 KiB (``PRAGMA cache_size=-2000``).
LARGE_CACHE_KIB = 65_536


def size_label(size: int) -> str:
    """Return 1k, 100k or 1M for a row count."""
    if size >= 1_000_000:
        return f"{size // 1_000_000}M"
    return f"{size // 1_000}k"


def with_quartiles(ratios: list[float]) -> str:
    """Format the median of ``ratios`` with their 25th and 75th percentiles."""
    low, high = percentile(ratios, 0.25), percentile(ratios, 0.75)
    return f"{median(ratios):.2f} ({low:.2f}-{high:.2f})"


def large_cache(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA cache_size=-{LARGE_CACHE_KIB}")
    cursor.close()


def main() -> None:
    options = parse_suite_options(__doc__ or "")
    (backend,) = options.databases
    sizes = QUICK_SIZES if options.quick else FULL_SIZES
    log(f"growth on {backend}: {', '.join(size_label(s) for s in sizes)} tokens")

    operations: dict[str, Operation] = {}
    load_seconds: dict[str, float] = {}
    for size in sizes:
        label = size_label(size)
        url = create_database(
            backend, f"bench_growth_{backend}_{label}", options.workdir
        )
        app = apps.build_ours_app(url)
        apps.prepare_ours_database(app)
        load_seconds[label] = load_tokens(app, size)
        operations[f"ours_{label}"] = ours_refresh_operation(app)
        operations[f"raw_{label}"] = raw_rotation_operation(app)

        if backend == "sqlite" and size == sizes[-1]:
            cached = apps.build_ours_app(url)
            engine = apps.ours_engine(cached)
            sa.event.listen(engine, "connect", large_cache)
            operations[f"ours_{label}_cache"] = ours_refresh_operation(cached)
            operations[f"raw_{label}_cache"] = raw_rotation_operation(cached)

    samples = measure_interleaved(
        operations, schedule_for(options), progress=lambda text: log(f"  {text}")
    )

    smallest = size_label(sizes[0])
    table = Table(
        title=f"Refresh throughput by stored tokens ({backend})",
        columns=[
            "stored tokens",
            "ours median/s",
            f"ours cost vs {smallest} (IQR)",
            "raw loop median/s",
            f"raw cost vs {smallest} (IQR)",
            "ours vs raw",
        ],
    )
    slowdowns: dict[str, float] = {}
    for name in operations:
        if not name.startswith("ours_"):
            continue
        suffix = name.removeprefix("ours_")
        ours_ratios = paired_ratios(samples[f"ours_{smallest}"], samples[name])
        raw_ratios = paired_ratios(samples[f"raw_{smallest}"], samples[f"raw_{suffix}"])
        slowdowns[suffix] = median(ours_ratios)
        row_label = suffix.replace(
            "_cache", f" (cache_size {LARGE_CACHE_KIB // 1024} MiB)"
        )
        table.rows.append(
            [
                row_label,
                f"{median(samples[name]):,.0f}",
                with_quartiles(ours_ratios),
                f"{median(samples[f'raw_{suffix}']):,.0f}",
                with_quartiles(raw_ratios),
                f"{median(paired_ratios(samples[name], samples[f'raw_{suffix}'])):.2f}",
            ]
        )
    table.notes.append(
        '"Cost" is the median over rounds of (throughput at the smallest size)'
        " / (throughput at this size), both measured in the same round: 1.00 means"
        " no growth, 1.10 means 10% more time per refresh. Load times: "
        + ", ".join(
            f"{label} rows {seconds:.0f} s" for label, seconds in load_seconds.items()
        )
        + "."
    )

    result = SuiteResult(
        suite=f"growth_{backend}",
        tables=[table],
        raw={"samples": samples, "load_seconds": load_seconds},
    )
    largest = size_label(sizes[-1])
    if backend != "sqlite":
        result.targets.append(
            Target(
                name=f"Growth on {backend}: refresh at most 1.1x slower from"
                f" {smallest} to {largest} stored tokens",
                measured=f"{slowdowns[largest]:.2f}x",
                met=slowdowns[largest] <= 1.1,
            )
        )
    else:
        cached = slowdowns.get(largest + "_cache", float("nan"))
        result.notes.append(
            f"SQLite: a refresh with {largest} stored tokens costs"
            f" {slowdowns[largest]:.2f} times what it costs with {smallest}, with the"
            f" default page cache of 2 MiB per connection, and {cached:.2f} times with"
            f" a {LARGE_CACHE_KIB // 1024} MiB page cache."
        )
    result.write(options.out)


if __name__ == "__main__":
    main()
