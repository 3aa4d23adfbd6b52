"""Set up a development environment and run the example app or the checks.

Usage:
    python3 scripts/dev.py serve [--host 127.0.0.1] [--port 5000]
    python3 scripts/dev.py test [pytest arguments...]

Both commands first create ``.venv`` in the repository root if it is missing
and install the project with its ``dev`` extra into it. The install is skipped
while pyproject.toml and setup.cfg are unchanged since the last one that
succeeded. Only the standard library is used, so any Python 3.11 or newer can
run this file.
"""

# Python 3.6 and later must be able to parse this file and run it up to the
# version check, so that they print its message. Use no newer syntax here, not
# even "from __future__ import annotations", and run nothing before the check
# that needs Python 3.11.
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

MINIMUM_PYTHON = (3, 11)

if sys.version_info < MINIMUM_PYTHON:
    sys.exit(
        f"dev.py: error: Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]} or newer "
        f"is required, but {sys.executable} is Python "
        f"{sys.version_info[0]}.{sys.version_info[1]}. Run this script with a "
        "newer python3."
    )

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_DIR = REPO_ROOT / ".venv"
# Hash of the packaging files at the last install that succeeded.
INSTALL_STAMP = VENV_DIR / ".dev-install-stamp"
PACKAGING_FILES = ("pyproject.toml", "setup.cfg")

FLASK_APP = "example_app"
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"


class StepFailed(Exception):
    """Failure of a step, with its error message and the exit status to return."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def say(message: str) -> None:
    print(f"dev.py: {message}", flush=True)


def venv_executable(name: str) -> Path:
    if os.name == "nt":
        return VENV_DIR / "Scripts" / f"{name}.exe"
    return VENV_DIR / "bin" / name


def run(
    step: str, command: Sequence[str | Path], env: dict[str, str] | None = None
) -> None:
    """Run one step in the repository root and raise StepFailed if it fails."""
    say(step)
    try:
        # The commands are fixed programs of this project's venv, not input.
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False)  # noqa: S603
    except FileNotFoundError:
        raise StepFailed(
            f"{step} failed: {command[0]} not found. Delete {VENV_DIR} and run "
            "this script again to rebuild it."
        ) from None
    if completed.returncode != 0:
        raise StepFailed(
            f"{step} failed with exit code {completed.returncode}",
            completed.returncode,
        )


def packaging_hash() -> str:
    digest = hashlib.sha256()
    for name in PACKAGING_FILES:
        path = REPO_ROOT / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()


def create_venv() -> None:
    python = venv_executable("python")
    if python.exists():
        return
    if VENV_DIR.exists():
        raise StepFailed(
            f"{VENV_DIR} exists but has no {python.name} at {python}. "
            "Delete it and run this script again."
        )
    try:
        run(
            f"creating {VENV_DIR.name} with {sys.executable}",
            [sys.executable, "-m", "venv", VENV_DIR],
        )
    except StepFailed as error:
        # A half-made venv would be taken for a working one next time.
        shutil.rmtree(VENV_DIR, ignore_errors=True)
        raise StepFailed(
            f"{error}. On Debian and Ubuntu, the venv module needs the "
            "python3-venv package."
        ) from None


def install_project() -> None:
    expected = packaging_hash()
    if INSTALL_STAMP.exists() and INSTALL_STAMP.read_text().strip() == expected:
        say(f"dependencies up to date ({', '.join(PACKAGING_FILES)} unchanged)")
        return
    INSTALL_STAMP.unlink(missing_ok=True)
    python = venv_executable("python")
    run(
        "installing the project into .venv: pip install -e '.[dev]'",
        [python, "-m", "pip", "install", "--quiet", "--editable", ".[dev]"],
    )
    INSTALL_STAMP.write_text(expected + "\n")


def prepare_venv() -> None:
    create_venv()
    install_project()


def flask_env() -> dict[str, str]:
    env = dict(os.environ)
    env["FLASK_APP"] = FLASK_APP
    return env


def url_host(host: str) -> str:
    """Return the host to put in a client URL for a server bound to ``host``."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - compared, not bound
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host:
        return f"[{host}]"
    return host


def serve(host: str, port: int) -> NoReturn:
    flask = venv_executable("flask")
    env = flask_env()
    run(
        "upgrading the database schema (flask db upgrade)",
        [flask, "--app", FLASK_APP, "db", "upgrade"],
        env,
    )
    run(
        f"creating the demo user {DEMO_USERNAME!r} unless it exists",
        [
            flask,
            "--app",
            FLASK_APP,
            "users",
            "create",
            DEMO_USERNAME,
            "--password",
            DEMO_PASSWORD,
            "--exist-ok",
        ],
        env,
    )

    body = f'{{"username": "{DEMO_USERNAME}", "password": "{DEMO_PASSWORD}"}}'
    say(f"demo user: {DEMO_USERNAME}, password: {DEMO_PASSWORD}")
    say(
        f"try: curl -X POST http://{url_host(host)}:{port}/auth/login "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )

    command = [
        str(flask),
        "--app",
        FLASK_APP,
        "run",
        "--host",
        host,
        "--port",
        str(port),
    ]
    say(f"starting the example app on {host}:{port}")
    if os.name == "nt":
        # Windows has no exec that replaces the process, so wait and pass on
        # the exit status instead.
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False)  # noqa: S603
        sys.exit(completed.returncode)
    os.chdir(REPO_ROOT)
    os.execve(command[0], command, env)  # noqa: S606 - replaces this process


def run_checks(pytest_args: Sequence[str]) -> None:
    python = venv_executable("python")
    ruff = venv_executable("ruff")
    run("ruff check .", [ruff, "check", "."])
    run("ruff format --check .", [ruff, "format", "--check", "."])
    run("mypy", [venv_executable("mypy")])
    # "python -m pytest" also puts the repository root on sys.path, where the
    # tests import example_app from (it is not part of the installed package).
    run(
        " ".join(["pytest", *pytest_args]),
        [python, "-m", "pytest", *pytest_args],
    )


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid port {text!r}: not a number"
        ) from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: use 1 to 65535")
    return port


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="dev.py",
        description="Set up .venv, then run the example app or the checks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser(
        "serve", help="migrate the database, add a demo user and run the example app"
    )
    serve_parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s)",
    )
    serve_parser.add_argument(
        "--port", type=port_number, default=5000, help="TCP port (default: %(default)s)"
    )

    # Without its own -h, "test -h" reaches pytest and prints pytest's help.
    commands.add_parser(
        "test",
        add_help=False,
        help="run ruff, mypy and pytest, passing further arguments to pytest",
    )

    args, extra = parser.parse_known_args(argv)
    if args.command == "serve" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args, extra


def main(argv: Sequence[str]) -> int:
    args, pytest_args = parse_args(argv)
    try:
        prepare_venv()
        if args.command == "serve":
            serve(args.host, args.port)
        else:
            run_checks(pytest_args)
    except StepFailed as error:
        say(f"error: {error}")
        return error.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
