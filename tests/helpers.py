"""Shared test helpers: the fake clock, users, logins and config."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from example_app import db
from example_app.models import User

SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
PASSWORD = "correct horse battery staple"
#: A cheap hash keeps tests fast; tests of login timing use Werkzeug's default.
FAST_HASH_METHOD = "pbkdf2:sha256:1"


class FakeClock:
    """A clock that tests move by hand, in place of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def app_config(database_url: str, **overrides: Any) -> dict[str, Any]:
    """Return the example app's config for a test on ``database_url``."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REFRESH_SECRET_KEY": SECRET_KEY,
        **overrides,
    }


def create_user(
    app: Flask, username: str, *, password: str = PASSWORD, active: bool = True
) -> int:
    """Insert a user with a fast password hash and return its id."""
    with app.app_context():
        user = User(
            username=username,
            password_hash=generate_password_hash(password, method=FAST_HASH_METHOD),
            active=active,
        )
        db.session.add(user)
        db.session.commit()
        return user.id


def login(
    client: FlaskClient, username: str = "alice", password: str = PASSWORD
) -> dict[str, Any]:
    """Log in through the API and return the token response body."""
    response = client.post(
        "/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def refresh(client: FlaskClient, refresh_token: str) -> Any:
    """POST a refresh token to /auth/refresh and return the response."""
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


def bearer(access_token: str) -> dict[str, str]:
    """Return the Authorization header for an access token."""
    return {"Authorization": f"Bearer {access_token}"}


# ---------------------------------------------------------------------------
# Sessions, revocation and the revocation check
# ---------------------------------------------------------------------------


def verified_claims(access_token: str) -> dict[str, Any]:
    """Check an access token's signature with the test key and return its claims.

    The time claims are not checked, because tests move the app's clock ahead of
    the real one.
    """
    import jwt

    claims: dict[str, Any] = jwt.decode(
        access_token,
        SECRET_KEY,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    return claims


def session_of(access_token: str) -> str:
    """Return the session (family) id in an access token's ``sid`` claim."""
    return str(verified_claims(access_token)["sid"])


def family_rows(app: Flask) -> list[Any]:
    """Return every token family row, oldest first."""
    import sqlalchemy as sa

    from example_app import auth

    with app.app_context():
        family = auth.models.family
        rows = db.session.execute(sa.select(family).order_by(family.id)).scalars()
        return list(rows)


def token_rows(app: Flask) -> list[Any]:
    """Return every refresh token row, oldest first."""
    import sqlalchemy as sa

    from example_app import auth

    with app.app_context():
        token = auth.models.token
        rows = db.session.execute(sa.select(token).order_by(token.id)).scalars()
        return list(rows)


class StatementCounter:
    """Count the SQL statements the app's engines send while it is active."""

    def __init__(self, app: Flask) -> None:
        with app.app_context():
            self.engines = list(db.engines.values())
        self.statements: list[str] = []

    def _record(self, *args: Any, **kwargs: Any) -> None:
        # before_cursor_execute receives (conn, cursor, statement, parameters, ...).
        self.statements.append(str(args[2]))

    def __enter__(self) -> StatementCounter:
        import sqlalchemy as sa

        for engine in self.engines:
            sa.event.listen(engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc_info: object) -> None:
        import sqlalchemy as sa

        for engine in self.engines:
            sa.event.remove(engine, "before_cursor_execute", self._record)

    @property
    def count(self) -> int:
        """How many statements were sent."""
        return len(self.statements)


# ---------------------------------------------------------------------------
# DATABASE_URL values for the example app
# ---------------------------------------------------------------------------

#: The scheme a deployment would write in DATABASE_URL, without a driver, for
#: each SQLAlchemy backend name of the test databases.
DRIVERLESS_SCHEMES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "mysql": "mariadb",
}


def driverless_url(database_url: str) -> str:
    """Return ``database_url`` as DATABASE_URL would name it: no driver.

    The example app must then pick the driver itself (psycopg, PyMySQL).
    """
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    scheme = DRIVERLESS_SCHEMES[url.get_backend_name()]
    return url.set(drivername=scheme).render_as_string(hide_password=False)


# ---------------------------------------------------------------------------
# Database invariants of token families
# ---------------------------------------------------------------------------

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class TokenInvariants:
    """Check the invariants that rotation and revocation must keep, step by step.

    After every :meth:`check`, for every family in the database:

    * at most one of its refresh tokens is unspent, so at most one is live;
    * its absolute expiry is its creation plus ``REFRESH_SESSION_LIFETIME``, and
      never differs from what an earlier check saw;
    * no token of it expires after the family;
    * a token is spent exactly when it names a successor, which is a row of the
      same family, and its ``used_at`` never differs from what an earlier check
      saw;
    * every ``token_hash`` is a hex SHA-256 digest, and no column of any row
      contains a token that the test received.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.seen_tokens: set[str] = set()
        self.used_at: dict[str, datetime] = {}
        self.family_expiry: dict[str, datetime] = {}
        self.checks = 0

    def remember(self, *bodies: Any) -> None:
        """Record the tokens of token responses, bodies or raw strings."""
        for body in bodies:
            if isinstance(body, str):
                self.seen_tokens.add(body)
            elif isinstance(body, dict):
                for name in ("access_token", "refresh_token"):
                    if isinstance(body.get(name), str):
                        self.seen_tokens.add(body[name])

    def check(self, *bodies: Any) -> None:
        """Assert every invariant on the current rows; ``bodies`` as for remember."""
        from flask_refresh import get_state

        self.remember(*bodies)
        self.checks += 1
        settings = get_state(self.app).settings
        families = {family.id: family for family in family_rows(self.app)}
        tokens = token_rows(self.app)
        token_ids = {token.id: token for token in tokens}

        for family in families.values():
            own = [token for token in tokens if token.family_id == family.id]
            unspent = [token.id for token in own if token.used_at is None]
            assert len(unspent) <= 1, f"family {family.id} has unspent {unspent}"
            assert family.expires_at == family.created_at + settings.session_lifetime
            first_seen = self.family_expiry.setdefault(family.id, family.expires_at)
            assert family.expires_at == first_seen, f"family {family.id} moved"

        for token in tokens:
            family = families[token.family_id]
            assert token.expires_at <= family.expires_at, token.id
            assert (token.used_at is None) == (token.replaced_by_id is None), token.id
            if token.replaced_by_id is not None:
                successor = token_ids[token.replaced_by_id]
                assert successor.family_id == token.family_id, token.id
            if token.used_at is not None:
                first_use = self.used_at.setdefault(token.id, token.used_at)
                assert token.used_at == first_use, f"used_at of {token.id} changed"
            assert _HEX_DIGEST.fullmatch(token.token_hash), token.id

        for row in [*families.values(), *tokens]:
            for column in row.__table__.columns:
                stored = str(getattr(row, column.key))
                for secret in self.seen_tokens:
                    assert secret not in stored, f"{row.__tablename__}.{column.key}"
