"""A closed-loop refresh load that records every request's latency.

Used for the purge benchmark, which needs percentiles over exact time windows
(before and during the purge); wrk reports one summary per run instead. Each
connection is a thread that rotates its own chain of refresh tokens over HTTP
keep-alive until SIGTERM, then the samples are written as JSON:
``[[start_monotonic_seconds, latency_seconds, status], ...]``. Starts use
``time.monotonic()``, which on Linux is one clock for every process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit


def rotate_chain(
    url: str,
    token: str,
    samples: list[tuple[float, float, int]],
    stop: threading.Event,
) -> None:
    """Refresh ``token`` again and again until ``stop`` is set or the chain breaks."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": "application/json"}
    while not stop.is_set():
        body = json.dumps({"refresh_token": token})
        start = time.monotonic()
        connection.request("POST", parts.path, body, headers)
        response = connection.getresponse()
        data = response.read()
        samples.append((start, time.monotonic() - start, response.status))
        if response.status != 200:
            print(
                f"loadgen: {response.status} {data[:200]!r}; chain stopped", flush=True
            )
            return
        token = json.loads(data)["refresh_token"]
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="URL of /auth/refresh.")
    parser.add_argument(
        "--tokens-file", type=Path, required=True, help="One refresh token a line."
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON samples file.")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda number, frame: stop.set())
    samples: list[tuple[float, float, int]] = []
    threads = [
        threading.Thread(target=rotate_chain, args=(args.url, token, samples, stop))
        for token in args.tokens_file.read_text().split()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    args.out.write_text(json.dumps(samples))


if __name__ == "__main__":
    main()
