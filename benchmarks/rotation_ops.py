"""Refresh operations: flask-refresh's route, the raw Core loop and the peers'.

Each function returns an operation that rotates one refresh token ``n`` times in
a chain: every request presents the token the previous one returned.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from benchmarks import apps
from benchmarks.common import REFRESH_TOKEN_LIFETIME, Operation


def ours_refresh_operation(app: Flask) -> Operation:
    """Return an operation that posts to flask-refresh's ``/auth/refresh``."""
    client = app.test_client()
    state = {"token": apps.ours_issue_refresh_tokens(app, 1)[0]}

    def run(count: int) -> None:
        for _ in range(count):
            response = client.post(
                "/auth/refresh", json={"refresh_token": state["token"]}
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"/auth/refresh returned {response.status_code}: {response.text}"
                )
            state["token"] = response.get_json()["refresh_token"]

    return run


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class RawRotation:
    """The raw SQLAlchemy Core rotation on flask-refresh's own table.

    One transaction: a conditional UPDATE that spends the token, a row count
    check, and an INSERT of the successor, both statements built once. It uses
    the engine, table and indexes that flask-refresh uses, but checks neither
    the family nor the user: the database work every rotation needs at least.
    It rotates one chain, whose family and user it looks up once.
    """

    def __init__(self, app: Flask) -> None:
        from example_app import auth

        self.engine = apps.ours_engine(app)
        table: sa.Table = auth.models.token.__table__  # type: ignore[attr-defined]
        self.first_token = apps.ours_issue_refresh_tokens(app, 1)[0]
        with self.engine.connect() as connection:
            self.family_id, self.user_id = connection.execute(
                sa.select(table.c.family_id, table.c.user_id).where(
                    table.c.token_hash == _digest(self.first_token)
                )
            ).one()
        self.spend = (
            sa.update(table)
            .where(
                table.c.token_hash == sa.bindparam("b_hash"),
                table.c.used_at.is_(None),
                table.c.expires_at > sa.bindparam("b_now"),
            )
            .values(
                used_at=sa.bindparam("b_now"),
                replaced_by_id=sa.bindparam("b_successor"),
            )
        )
        self.insert = table.insert()

    def rotate(self, token: str) -> str:
        """Spend ``token`` and return its successor."""
        now = datetime.now(UTC)
        successor = secrets.token_urlsafe(32)
        # Time-ordered like flask-refresh's ids, so both append to the index.
        successor_id = f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
        with self.engine.begin() as connection:
            spent = connection.execute(
                self.spend,
                {"b_hash": _digest(token), "b_now": now, "b_successor": successor_id},
            )
            if spent.rowcount != 1:
                raise RuntimeError("The raw rotation found no live token.")
            connection.execute(
                self.insert,
                {
                    "id": successor_id,
                    "token_hash": _digest(successor),
                    "family_id": self.family_id,
                    "user_id": self.user_id,
                    "jwt_id": secrets.token_hex(16),
                    "created_at": now,
                    "expires_at": now + REFRESH_TOKEN_LIFETIME,
                },
            )
        return successor


def raw_rotation_operation(app: Flask) -> Operation:
    """Return an operation that runs :class:`RawRotation` in a loop, without HTTP."""
    raw = RawRotation(app)
    state = {"token": raw.first_token}

    def run(count: int) -> None:
        for _ in range(count):
            state["token"] = raw.rotate(state["token"])

    return run


RAW_ROUTE_PATH = "/bench/raw-refresh"


def raw_route_operation(app: Flask) -> Operation:
    """Return an operation that posts to a bare JSON route running :class:`RawRotation`.

    The route reads ``refresh_token`` from a JSON body and returns
    ``{"refresh_token": ...}``, so it costs what any Flask refresh route costs
    around the least database work, with no JWT and no checks.
    """
    raw = RawRotation(app)

    def raw_refresh() -> ResponseReturnValue:
        body = request.get_json()
        return jsonify(refresh_token=raw.rotate(body["refresh_token"]))

    app.add_url_rule(RAW_ROUTE_PATH, "bench_raw_refresh", raw_refresh, methods=["POST"])
    client = app.test_client()
    state = {"token": raw.first_token}

    def run(count: int) -> None:
        for _ in range(count):
            response = client.post(
                RAW_ROUTE_PATH, json={"refresh_token": state["token"]}
            )
            if response.status_code != 200:
                raise RuntimeError(f"{RAW_ROUTE_PATH} returned {response.status_code}")
            state["token"] = response.get_json()["refresh_token"]

    return run


def fje_refresh_operation(app: Flask) -> Operation:
    """Return an operation that posts a refresh JWT to Flask-JWT-Extended's route."""
    client = app.test_client()
    state = {"token": apps.fje_tokens(app)[1]}

    def run(count: int) -> None:
        for _ in range(count):
            response = client.post(
                "/refresh", headers={"Authorization": f"Bearer {state['token']}"}
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"Flask-JWT-Extended /refresh returned {response.status_code}:"
                    f" {response.text}"
                )
            state["token"] = response.get_json()["refresh_token"]

    return run
