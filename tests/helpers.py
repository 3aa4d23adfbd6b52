"""Shared test helpers: the fake clock, users, logins and config."""

from __future__ import annotations

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
