"""The Flask apps under test: flask-refresh, Flask-JWT-Extended and the baselines.

Every protected route runs the same view body, :func:`view_body`, so the apps differ
only in how they authenticate the request. All apps sign HS256 tokens with
:data:`~benchmarks.common.SECRET_KEY` and the same lifetimes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import sqlalchemy as sa
from flask import Flask, abort, g, jsonify, request
from flask.typing import ResponseReturnValue

from benchmarks.common import (
    ACCESS_TOKEN_LIFETIME,
    ALGORITHM,
    PASSWORD,
    REFRESH_TOKEN_LIFETIME,
    SECRET_KEY,
    SESSION_LIFETIME,
    USERNAME,
    sqlite_connection_pragmas,
)

PROTECTED_PATH = "/bench/protected"
BARE_PATH = "/bench/bare"
HANDWRITTEN_PATH = "/bench/handwritten"
CHECKED_ONCE_PATH = "/bench/handwritten-checked-once"
CHECKED_ONCE_LABEL = "the same decorator, HMAC secret checked once"
FJE_PATH = "/bench/fje"


def view_body() -> ResponseReturnValue:
    """Return the response of every benchmarked view, protected or not."""
    return jsonify(message="ok")


# ---------------------------------------------------------------------------
# Baselines: a bare route and a hand-written decode decorator
# ---------------------------------------------------------------------------


def bearer_decode_required(
    view: Callable[..., Any], decode: Callable[..., Any] = jwt.decode
) -> Callable[..., Any]:
    """Check the Bearer token with one ``jwt.decode`` call: the smallest check.

    PyJWT verifies the signature and, with its default options, ``exp``, ``nbf``
    and ``iat``. Nothing else is checked, so this is the lower bound of what a JWT
    decorator built on ``jwt.decode`` can cost. ``decode`` replaces that function.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            abort(401)
        try:
            g.claims = decode(token, SECRET_KEY, algorithms=[ALGORITHM])
        except jwt.PyJWTError:
            abort(401)
        return view(*args, **kwargs)

    return wrapper


def add_baseline_routes(app: Flask) -> None:
    """Add the bare route and the hand-written decorator's routes to ``app``.

    The second decorator decodes with the PyJWT instance flask-refresh uses, which
    checks the HMAC secret once instead of for every token. It shows what the
    limit costs without that check, which flask-refresh no longer pays.
    """
    from flask_refresh.jwt_codec import pyjwt_for

    app.add_url_rule(BARE_PATH, "bench_bare", view_body)
    app.add_url_rule(
        HANDWRITTEN_PATH, "bench_handwritten", bearer_decode_required(view_body)
    )
    checked_once = pyjwt_for(ALGORITHM, SECRET_KEY)
    app.add_url_rule(
        CHECKED_ONCE_PATH,
        "bench_checked_once",
        bearer_decode_required(view_body, decode=checked_once.decode),
    )


# ---------------------------------------------------------------------------
# flask-refresh, through the example app
# ---------------------------------------------------------------------------


def build_ours_app(database_url: str, **config: Any) -> Flask:
    """Build the example app on ``database_url`` with a protected benchmark route.

    ``config`` adds or overrides config keys, such as ``REFRESH_CHECK_REVOKED``
    or ``SQLALCHEMY_ENGINE_OPTIONS``.
    """
    from example_app import create_app
    from flask_refresh import jwt_required

    settings: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REFRESH_SECRET_KEY": SECRET_KEY,
        "REFRESH_ALGORITHM": ALGORITHM,
        "REFRESH_ACCESS_TOKEN_LIFETIME": ACCESS_TOKEN_LIFETIME,
        "REFRESH_IDLE_TIMEOUT": REFRESH_TOKEN_LIFETIME,
        "REFRESH_SESSION_LIFETIME": SESSION_LIFETIME,
    }
    settings.update(config)
    app = create_app(settings)
    app.add_url_rule(PROTECTED_PATH, "bench_protected", jwt_required()(view_body))
    # The baselines and Flask-JWT-Extended share this app, so that every variant
    # of the per-request comparison pays for the same extensions and handlers.
    add_baseline_routes(app)
    add_fje_route(app)
    return app


def prepare_ours_database(app: Flask) -> None:
    """Create the example app's tables and the benchmark user, if missing.

    ``db.create_all()`` creates the same tables, columns and indexes as the
    example app's migration, which Alembic generated from these models.
    """
    from example_app import db
    from example_app.models import User

    with app.app_context():
        db.create_all()
        exists = db.session.execute(
            sa.select(User.id).where(User.username == USERNAME)
        ).scalar_one_or_none()
        if exists is None:
            user = User(username=USERNAME)
            user.set_password(PASSWORD)
            db.session.add(user)
            db.session.commit()


def ours_engine(app: Flask) -> sa.Engine:
    """Return the engine that flask-refresh uses in ``app``."""
    from example_app import db

    with app.app_context():
        return db.engine


def ours_login(app: Flask) -> dict[str, Any]:
    """Log the benchmark user in through ``/auth/login`` and return the response."""
    response = app.test_client().post(
        "/auth/login", json={"username": USERNAME, "password": PASSWORD}
    )
    if response.status_code != 200:
        raise RuntimeError(f"Login failed: {response.status_code} {response.text}")
    return dict(response.get_json())


def ours_issue_refresh_tokens(app: Flask, count: int) -> list[str]:
    """Start ``count`` sessions of the benchmark user without hashing a password.

    Load generators need many independent refresh tokens; a login per token would
    spend most of the setup time in the password hash.
    """
    from example_app import db
    from example_app.models import User
    from flask_refresh import get_state
    from flask_refresh.store import ClientInfo, issue_family

    tokens = []
    with app.test_request_context():
        state = get_state()
        user = db.session.execute(
            sa.select(User).where(User.username == USERNAME)
        ).scalar_one()
        for _ in range(count):
            issued = issue_family(
                state, user, now=state.clock(), client=ClientInfo("bench")
            )
            tokens.append(issued.token)
    return tokens


# ---------------------------------------------------------------------------
# Flask-JWT-Extended
# ---------------------------------------------------------------------------


def fje_config() -> dict[str, Any]:
    """Return the Flask-JWT-Extended settings matching the other libraries'."""
    return {
        "JWT_SECRET_KEY": SECRET_KEY,
        "JWT_ALGORITHM": ALGORITHM,
        "JWT_ACCESS_TOKEN_EXPIRES": ACCESS_TOKEN_LIFETIME,
        "JWT_REFRESH_TOKEN_EXPIRES": REFRESH_TOKEN_LIFETIME,
    }


def add_fje_route(app: Flask) -> None:
    """Register Flask-JWT-Extended on ``app`` and protect :data:`FJE_PATH` with it."""
    from flask_jwt_extended import JWTManager, jwt_required

    app.config.update(fje_config())
    JWTManager(app)
    app.add_url_rule(FJE_PATH, "bench_fje", jwt_required()(view_body))


def build_fje_blocklist_app(database_url: str) -> Flask:
    """Build a Flask-JWT-Extended app with a database blocklist and ``/refresh``.

    Revoked tokens are kept in a ``token_blocklist`` table and checked on every
    request, as the "JWT Revoking / Blocklist" page of the Flask-JWT-Extended 4.x
    documentation recommends for a database. ``/refresh`` follows its explicit
    refresh pattern and also rotates: it blocks the presented refresh token's
    ``jti`` and returns a new access and refresh token.
    """
    from flask_jwt_extended import (
        JWTManager,
        create_access_token,
        create_refresh_token,
        get_jwt,
        get_jwt_identity,
        jwt_required,
    )
    from flask_sqlalchemy import SQLAlchemy

    app = Flask("bench_fje_blocklist")
    app.config.update(fje_config())
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    manager = JWTManager(app)
    app.add_url_rule(PROTECTED_PATH, "bench_protected", jwt_required()(view_body))
    db = SQLAlchemy()

    class TokenBlocklist(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "token_blocklist"
        id = sa.Column(sa.Integer, primary_key=True)
        jti = sa.Column(sa.String(36), nullable=False, index=True)
        type = sa.Column(sa.String(16), nullable=False)
        created_at = sa.Column(sa.DateTime, nullable=False)

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", sqlite_connection_pragmas)
        db.create_all()

    @manager.token_in_blocklist_loader
    def token_is_blocked(
        jwt_header: dict[str, Any], jwt_payload: dict[str, Any]
    ) -> bool:
        found = db.session.execute(
            sa.select(TokenBlocklist.id).where(TokenBlocklist.jti == jwt_payload["jti"])
        ).scalar()
        return found is not None

    @jwt_required(refresh=True)
    def refresh() -> ResponseReturnValue:
        old = get_jwt()
        db.session.add(
            TokenBlocklist(
                jti=old["jti"], type=old["type"], created_at=datetime.now(UTC)
            )
        )
        identity = get_jwt_identity()
        access_token = create_access_token(identity=identity)
        refresh_token = create_refresh_token(identity=identity)
        db.session.commit()
        return jsonify(access_token=access_token, refresh_token=refresh_token)

    app.add_url_rule("/refresh", "refresh", refresh, methods=["POST"])
    app.extensions["bench_db"] = db
    return app


def fje_tokens(app: Flask) -> tuple[str, str]:
    """Return an access and a refresh token of user "1" signed by ``app``."""
    from flask_jwt_extended import create_access_token, create_refresh_token

    with app.app_context():
        return create_access_token(identity="1"), create_refresh_token(identity="1")


def fje_engine(app: Flask) -> sa.Engine:
    """Return the engine of a Flask-JWT-Extended app built with a blocklist."""
    db = app.extensions["bench_db"]
    with app.app_context():
        return db.engine  # type: ignore[no-any-return]
