"""Login: the cost of ``POST /auth/login`` in password-hash checks.

A login looks the user up, checks the password hash and starts a session (two
INSERTs and a commit). The reference is one ``check_password_hash`` call on the
same stored hash, so with the same hashing method and parameters.
"""

from __future__ import annotations

import sqlalchemy as sa
from werkzeug.security import check_password_hash

from benchmarks import apps
from benchmarks.common import (
    PASSWORD,
    USERNAME,
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
    server_error,
)


def login_operation(app: apps.Flask) -> Operation:
    """Return an operation that logs the benchmark user in ``n`` times."""
    client = app.test_client()
    body = {"username": USERNAME, "password": PASSWORD}

    def run(count: int) -> None:
        for _ in range(count):
            response = client.post("/auth/login", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"/auth/login returned {response.status_code}")

    return run


def main() -> None:
    options = parse_suite_options(__doc__ or "")
    databases = [db for db in options.databases if server_error(db) is None]
    log(f"login on {', '.join(databases)}")

    operations: dict[str, Operation] = {}
    stored_hash = ""
    for backend in databases:
        url = create_database(backend, f"bench_login_{backend}", options.workdir)
        app = apps.build_ours_app(url)
        apps.prepare_ours_database(app)
        operations[f"login_{backend}"] = login_operation(app)
        if not stored_hash:
            from example_app import db
            from example_app.models import User

            with app.app_context():
                stored_hash = db.session.execute(
                    sa.select(User.password_hash).where(User.username == USERNAME)
                ).scalar_one()

    def check_hash(count: int) -> None:
        for _ in range(count):
            if not check_password_hash(stored_hash, PASSWORD):
                raise RuntimeError("The benchmark password does not match its hash.")

    operations["hash"] = check_hash
    samples = measure_interleaved(
        operations, schedule_for(options), progress=lambda text: log(f"  {text}")
    )

    method = stored_hash.split("$", 1)[0]
    table = Table(
        title="Login cost in password-hash checks (in process)",
        columns=["variant", "median/s", "time per login / time per hash check (IQR)"],
    )
    table.rows.append(
        [f"check_password_hash ({method})", f"{median(samples['hash']):,.1f}", "1.00"]
    )
    result = SuiteResult(suite="login", tables=[table], raw={"samples": samples})
    for backend in databases:
        name = f"login_{backend}"
        # Throughput of the hash over throughput of the login: time per login
        # in units of one hash check.
        ratios = paired_ratios(samples["hash"], samples[name])
        table.rows.append(
            [
                f"POST /auth/login ({backend})",
                f"{median(samples[name]):,.1f}",
                f"{median(ratios):.3f} ({percentile(ratios, 0.25):.3f}"
                f"-{percentile(ratios, 0.75):.3f})",
            ]
        )
        # "Hashing dominates", taken as: the hash check is at least 80% of the
        # login's time, so a login costs at most 1.25 hash checks.
        cost = median(ratios)
        result.targets.append(
            Target(
                name=f"Login on {backend}: the password hash check is at least 80%"
                " of a login's time",
                measured=f"{cost:.3f} hash checks per login",
                met=cost <= 1.25,
            )
        )
    result.write(options.out)


if __name__ == "__main__":
    main()
