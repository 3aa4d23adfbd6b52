"""Run every benchmark and write docs/benchmarks.md.

Usage:
    python3 benchmarks/run.py [--quick] [--databases sqlite,postgresql,mariadb]

Any Python 3.11 can start it: it re-runs itself with the repository's .venv,
creating it and installing the project with its ``bench`` extra when a package is
missing. The suites run one after another, each in its own process, and write
JSON results that this script renders. Databases whose server does not respond
are left out and named in the report. Every database whose name starts with
``bench_`` belongs to the benchmarks: the run drops them all on the servers it
used when it ends, unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV = REPO_ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
#: File in a kept work directory with the run's command, duration and load.
RUN_FACTS = "run-facts.txt"
#: Modules of the bench extra; one missing means the extra must be installed.
BENCH_MODULES = (
    "flask_jwt_extended",
    "rest_framework_simplejwt",
    "django",
    "pyinstrument",
    "gunicorn",
    "psycopg",
    "pymysql",
)


def in_project_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def bootstrap() -> None:
    """Re-run this script with .venv's Python, installing what it lacks."""
    # Older Pythons can parse this file, so they get this message.
    if sys.version_info < (3, 11):  # noqa: UP036
        raise SystemExit("The benchmarks need Python 3.11 or newer.")
    if not in_project_venv():
        if not VENV_PYTHON.exists():
            print(f"Creating {VENV}", flush=True)
            venv.create(VENV, with_pip=True)
        # The venv's own Python, with this script's own arguments.
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])  # noqa: S606

    import importlib.util

    missing = [name for name in BENCH_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"Installing the bench extra ({', '.join(missing)} missing)", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "-e", ".[bench]"],
            cwd=REPO_ROOT,
            check=True,
        )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the flask-refresh benchmarks and write docs/benchmarks.md."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Fewer and shorter rounds and smaller tables (a few minutes).",
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql,mariadb",
        help="Comma-separated backends to run on (default: all three).",
    )
    parser.add_argument(
        "--suites",
        default="",
        help="Comma-separated suites to run (default: all): request, http,"
        " refresh, growth, login, scale, profile.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO_ROOT / "docs" / "benchmarks.md",
        help="Markdown file to write (default: docs/benchmarks.md).",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Keep the bench_* databases and the work directory for inspection.",
    )
    parser.add_argument(
        "--from-results",
        type=Path,
        default=None,
        metavar="DIRECTORY",
        help="Run nothing: render the report from the JSON results in the work"
        " directory of an earlier run made with --keep.",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="Also measure REFRESH_REDIS_URL's shared cache against this Redis"
        " server (one you run for the benchmark).",
    )
    return parser.parse_args()


def main() -> None:
    bootstrap()
    sys.path.insert(0, str(REPO_ROOT))

    import shutil
    import tempfile

    from benchmarks.common import (
        drop_database,
        list_benchmark_databases,
        load_result,
        log,
        parse_databases,
        server_error,
    )
    from benchmarks.report import code_version, render_report

    arguments = parse_arguments()
    requested = parse_databases(arguments.databases)
    skipped = {}
    for backend in requested:
        reason = server_error(backend)
        if reason is not None:
            skipped[backend] = reason
            log(f"{backend} does not respond on 127.0.0.1 ({reason}); leaving it out")
    databases = tuple(db for db in requested if db not in skipped)
    if not databases:
        raise SystemExit("No database server responds; nothing to benchmark.")

    suites = [s.strip() for s in arguments.suites.split(",") if s.strip()]
    plan: list[tuple[str, str, tuple[str, ...]]] = []

    def wanted(name: str) -> bool:
        return not suites or name in suites

    if wanted("request"):
        plan.append(("request", "suite_request", databases))
    if wanted("http"):
        plan.append(("http", "suite_http", databases))
    for backend in databases:
        if wanted("refresh"):
            plan.append((f"refresh_{backend}", "suite_refresh", (backend,)))
    for backend in databases:
        if wanted("growth"):
            plan.append((f"growth_{backend}", "suite_growth", (backend,)))
    if wanted("login"):
        plan.append(("login", "suite_login", databases))
    if wanted("scale"):
        plan.append(("scale", "suite_scale", databases))
    if wanted("profile"):
        plan.append(("profile", "suite_profile", databases))

    if arguments.from_results is not None:
        rerender(arguments, databases, skipped)
        return

    code = code_version()
    workdir = Path(tempfile.mkdtemp(prefix="flask-refresh-bench-"))
    environment = dict(os.environ)
    if arguments.redis_url:
        environment["BENCH_REDIS_URL"] = arguments.redis_url
    started = time.time()
    load_before = os.getloadavg()
    results = []
    failures: dict[str, str] = {}
    try:
        for name, module, suite_databases in plan:
            log(f"suite {name}")
            out = workdir / f"{name}.json"
            command = [
                sys.executable,
                "-m",
                f"benchmarks.{module}",
                "--out",
                str(out),
                "--workdir",
                str(workdir),
                "--databases",
                ",".join(suite_databases),
            ]
            if arguments.quick:
                command.append("--quick")
            completed = subprocess.run(
                command, cwd=REPO_ROOT, env=environment, check=False
            )
            if completed.returncode != 0 or not out.exists():
                failures[name] = f"exited with {completed.returncode}"
                log(f"suite {name} failed ({failures[name]}); continuing")
                continue
            results.append(load_result(out))
    finally:
        if not arguments.keep:
            for backend in databases:
                if backend == "sqlite":
                    continue
                for name in list_benchmark_databases(backend):
                    drop_database(backend, name, workdir)
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept the work directory {workdir} and the bench_* databases")

    command_line = "python3 benchmarks/run.py " + " ".join(sys.argv[1:])
    if arguments.keep:
        run_facts = {
            "command": command_line.strip(),
            "quick": arguments.quick,
            "seconds": time.time() - started,
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "code": code,
        }
        (workdir / RUN_FACTS).write_text(json.dumps(run_facts))
    report = render_report(
        results,
        command=command_line.strip(),
        quick=arguments.quick,
        databases=databases,
        skipped=skipped,
        failures=failures,
        seconds=time.time() - started,
        load_before=load_before,
        load_after=os.getloadavg(),
        code=code,
    )
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(report)
    log(f"wrote {arguments.output} in {time.time() - started:.0f} s")
    if failures:
        raise SystemExit(f"Suites failed: {', '.join(failures)}")


def rerender(
    arguments: argparse.Namespace,
    databases: tuple[str, ...],
    skipped: dict[str, str],
) -> None:
    """Write the report from the results an earlier ``--keep`` run left."""
    from benchmarks.common import load_result, log
    from benchmarks.report import render_report

    directory: Path = arguments.from_results
    facts = json.loads((directory / RUN_FACTS).read_text())
    # Suites in the order run.py runs them, as the report expects. Other JSON
    # files in the directory are not suite results.
    order = ["request", "http", "refresh", "growth", "login", "scale", "profile"]
    results = [
        load_result(path)
        for path in sorted(directory.glob("*.json"))
        if path.stem.split("_")[0] in order
    ]
    results.sort(key=lambda result: order.index(result.suite.split("_")[0]))
    report = render_report(
        results,
        command=facts["command"],
        quick=facts["quick"],
        databases=databases,
        skipped=skipped,
        failures={},
        seconds=facts["seconds"],
        load_before=tuple(facts["load_before"]),
        load_after=tuple(facts["load_after"]),
        code=facts["code"],
    )
    arguments.output.write_text(report)
    log(f"wrote {arguments.output} from {directory}")


if __name__ == "__main__":
    main()
