"""Counters of authentication events for a metrics exporter to read.

The counters live in the process, like every counter of a Prometheus client: with
several gunicorn workers each has its own, and the exporter sums them. They are
incremented by receivers of the :mod:`~flask_refresh.signals`, so they count exactly
what the signals report.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from flask import Flask

from . import signals

#: The counter names and the events they count.
COUNTERS = {
    "logins_succeeded": "logins that started a session",
    "logins_failed": "logins refused for any credential problem",
    "tokens_rotated": "refresh tokens spent and replaced",
    "rotation_retries": "retries within the grace interval, given the same successor",
    "reuse_detected": "spent refresh tokens presented after the grace interval",
    "sessions_revoked": "sessions revoked, for any reason",
}


class Metrics:
    """Thread-safe event counters of one app.

    Read them with :meth:`snapshot`, for example from a Prometheus collector::

        for name, value in get_state(app).metrics.snapshot().items():
            yield CounterMetricFamily(f"flask_refresh_{name}", COUNTERS[name], value)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._revocations: Counter[str] = Counter()

    def increment(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """Return every counter's current value, zero included."""
        with self._lock:
            return {name: self._counts[name] for name in COUNTERS}

    def revocations_by_reason(self) -> dict[str, int]:
        """Return how many sessions were revoked for each reason."""
        with self._lock:
            return dict(self._revocations)

    def connect(self, app: Flask) -> None:
        """Count the signals ``app`` sends."""

        def on_login(sender: Flask, **extra: Any) -> None:
            self.increment("logins_succeeded")

        def on_login_failed(sender: Flask, **extra: Any) -> None:
            self.increment("logins_failed")

        def on_rotated(sender: Flask, *, retry: bool = False, **extra: Any) -> None:
            self.increment("rotation_retries" if retry else "tokens_rotated")

        def on_reuse(sender: Flask, **extra: Any) -> None:
            self.increment("reuse_detected")

        def on_revoked(sender: Flask, *, reason: str = "", **extra: Any) -> None:
            with self._lock:
                self._counts["sessions_revoked"] += 1
                self._revocations[str(reason)] += 1

        # Blinker keeps weak references to receivers by default, and these closures
        # have no other reference, so they are connected with weak=False.
        signals.login_succeeded.connect(on_login, sender=app, weak=False)
        signals.login_failed.connect(on_login_failed, sender=app, weak=False)
        signals.token_rotated.connect(on_rotated, sender=app, weak=False)
        signals.token_reuse_detected.connect(on_reuse, sender=app, weak=False)
        signals.session_revoked.connect(on_revoked, sender=app, weak=False)
