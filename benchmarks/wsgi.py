"""The WSGI app that gunicorn serves in the HTTP benchmarks.

Environment variables:

``BENCH_APP``
    ``ours`` (default): the example app with flask-refresh, plus the bare,
    hand-written and Flask-JWT-Extended routes of :mod:`benchmarks.apps`.
    ``fje_blocklist``: Flask-JWT-Extended with its database blocklist.
``BENCH_DATABASE_URL``
    SQLAlchemy URL of a database that the benchmark prepared.
``BENCH_CONFIG``
    JSON object of extra config keys for ``ours``, such as
    ``{"REFRESH_CHECK_REVOKED": true}``.
"""

from __future__ import annotations

import json
import os

from flask import Flask

from benchmarks import apps


def build() -> Flask:
    """Build the app that the environment variables select."""
    url = os.environ["BENCH_DATABASE_URL"]
    kind = os.environ.get("BENCH_APP", "ours")
    if kind == "fje_blocklist":
        return apps.build_fje_blocklist_app(url)
    if kind != "ours":
        raise RuntimeError(f"BENCH_APP must be ours or fje_blocklist, not {kind!r}.")
    config = json.loads(os.environ.get("BENCH_CONFIG", "{}"))
    return apps.build_ours_app(url, **config)


app = build()
