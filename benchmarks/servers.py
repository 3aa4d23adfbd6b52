"""Gunicorn servers on 127.0.0.1 and the wrk load generator, for HTTP benchmarks."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT

LUA_REFRESH = Path(__file__).with_name("refresh.lua")
#: Tokens per wrk thread beyond one per connection; see refresh.lua.
SPARE_TOKENS = 2
#: Seconds a new gunicorn has to start responding before the benchmark gives up.
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Gunicorn:
    """One gunicorn instance serving :mod:`benchmarks.wsgi` on 127.0.0.1.

    Workers are gthread workers with one thread: one request at a time per
    process, with HTTP keep-alive so that wrk reuses its connections.
    """

    def __init__(
        self,
        name: str,
        *,
        database_url: str,
        workers: int = 1,
        app: str = "ours",
        config: dict[str, Any] | None = None,
        log_directory: Path,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.workers = workers
        self._log_path = log_directory / f"gunicorn-{name}.log"
        environment = dict(os.environ)
        environment.update(
            BENCH_APP=app,
            BENCH_DATABASE_URL=database_url,
            BENCH_CONFIG=json.dumps(config or {}),
        )
        command = [
            str(Path(sys.executable).with_name("gunicorn")),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            "1",
            "--keep-alive",
            "30",
            "--chdir",
            str(REPO_ROOT),
            "benchmarks.wsgi:app",
        ]
        self._log = self._log_path.open("w")
        self.process = subprocess.Popen(
            command,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def base_url(self) -> str:
        """The server's URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def wait_until_ready(self, path: str = "/auth/login") -> None:
        """Wait until every worker can respond.

        :raises RuntimeError: the server exited or did not respond in time.
        """
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn {self.name} exited with {self.process.returncode};"
                    f" see {self._log_path}"
                )
            try:
                # An http:// URL on 127.0.0.1 that this class built.
                with urllib.request.urlopen(self.base_url + path, timeout=2):  # noqa: S310
                    pass
            except urllib.error.HTTPError:
                pass  # Any HTTP response, a 401 included, means the app is up.
            except OSError:
                time.sleep(0.2)
                continue
            # Workers boot one after another; give the last ones time to import.
            time.sleep(0.5 + 0.5 * self.workers)
            return
        raise RuntimeError(
            f"gunicorn {self.name} did not respond within"
            f" {START_TIMEOUT_SECONDS} s; see {self._log_path}"
        )

    def stop(self) -> None:
        """Stop the server and its workers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------


def wrk_path() -> str | None:
    """Return the wrk executable, or None when it is not installed."""
    return shutil.which("wrk")


@dataclass
class WrkResult:
    """Summary of one wrk run."""

    requests_per_second: float
    requests: int
    non_2xx: int
    socket_errors: int
    latency_ms: dict[str, float]


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"Invalid wrk duration {text!r}.")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Parse the summary that ``wrk --latency`` prints."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise RuntimeError(f"Could not parse wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    latency = {
        f"p{percent}": _milliseconds(value)
        for percent, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)
    }
    return WrkResult(
        requests_per_second=float(rate.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        latency_ms=latency,
    )


def start_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    headers: dict[str, str] | None = None,
    tokens_file: Path | None = None,
) -> subprocess.Popen[str]:
    """Start one wrk thread against ``url``; with ``tokens_file``, rotate tokens."""
    executable = wrk_path()
    if executable is None:
        raise RuntimeError("wrk is not installed; install it with apt-get install wrk.")
    command = [
        executable,
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}: {value}"]
    environment = dict(os.environ)
    if tokens_file is not None:
        command += ["--script", str(LUA_REFRESH)]
        environment.update(BENCH_TOKENS_FILE=str(tokens_file), BENCH_WRK_THREADS="1")
    command.append(url)
    return subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_wrk(process: subprocess.Popen[str]) -> WrkResult:
    """Wait for a wrk started by :func:`start_wrk` and parse its summary."""
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed with {process.returncode}:\n{output}")
    return parse_wrk(output)


def run_wrk(url: str, **options: Any) -> WrkResult:
    """Run wrk to the end and return its summary; see :func:`start_wrk`."""
    return finish_wrk(start_wrk(url, **options))
