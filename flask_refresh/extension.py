"""The extension object and its per-app state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy

from .authentication import (
    PasswordChecker,
    UsernameLoader,
    authenticate,
    validated_claims,
)
from .errors import AuthError, BearerError
from .metrics import Metrics
from .models import Models, build_models
from .session_status import StatusCache, build_cache, is_session_live
from .settings import Settings, load_settings
from .store import RevokeReason, revoke_family, revoke_user_families
from .tokens import successor_key

EXTENSION_KEY = "flask-refresh"

ClaimsLoader = Callable[[Any], Mapping[str, Any] | None]


def utc_now() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass
class State:
    """Per-app state of flask-refresh, in ``app.extensions["flask-refresh"]``."""

    auth: RefreshAuth
    db: SQLAlchemy
    settings: Settings
    models: Models
    successor_key: bytes
    metrics: Metrics
    #: Cache of session states for ``REFRESH_CHECK_REVOKED``; None when off.
    status_cache: StatusCache | None = None
    #: The source of "now" for every expiry decision. Tests replace it to move time
    #: instead of sleeping.
    clock: Callable[[], datetime] = field(default=utc_now)
    #: The Flask-Limiter limiter of failed logins; None when both limits are off.
    login_limiter: Limiter | None = None


def get_state(app: Flask | None = None) -> State:
    """Return the flask-refresh state of ``app``, or of the current app.

    :raises RuntimeError: ``init_app`` was not called on the app.
    """
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError(
            f"flask-refresh is not initialised on app {app.name!r}."
            " Call auth.init_app(app) in your app factory."
        )

    return state  # type: ignore[no-any-return]


class RefreshAuth:
    """The flask-refresh extension.

    Give it the app's Flask-SQLAlchemy ``db`` and user model, here or in
    :meth:`init_app`::

        auth = RefreshAuth(db=db, user_model=User)

        def create_app():
            app = Flask(__name__)
            db.init_app(app)
            login_manager.init_app(app)
            auth.init_app(app)
            return app

    :param app: an app to initialise now, as every Flask extension allows.
    :param db: the host's :class:`~flask_sqlalchemy.SQLAlchemy` instance. The token
        tables are defined on it, so Flask-Migrate includes them.
    :param user_model: the host's user model. It needs a single-column primary key,
        Flask-Login's ``get_id()`` and ``is_active``, and either a
        ``check_password(password)`` method or a :meth:`password_checker`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        user_model: type[Any] | None = None,
    ) -> None:
        self._db: SQLAlchemy | None = None
        self._models: Models | None = None
        self._password_checker: PasswordChecker | None = None
        self._username_loader: UsernameLoader | None = None
        self._claims_loader: ClaimsLoader | None = None

        if db is not None or user_model is not None:
            self._bind(db, user_model)

        if app is not None:
            self.init_app(app)

    @property
    def models(self) -> Models:
        """The family and token models.

        :raises RuntimeError: no ``db`` and user model were given yet.
        """
        if self._models is None:
            raise RuntimeError(
                "flask-refresh has no models yet: pass db= and user_model= to"
                " RefreshAuth() or to init_app()."
            )

        return self._models

    def init_app(
        self,
        app: Flask,
        *,
        db: SQLAlchemy | None = None,
        user_model: type[Any] | None = None,
    ) -> None:
        """Read the ``REFRESH_*`` config, register the routes and error handlers.

        :raises RuntimeError: the extension is already registered on ``app``, or
            ``db.init_app(app)`` was not called first.
        :raises ConfigError: a ``REFRESH_*`` value is missing or invalid.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "flask-refresh is already initialised on this app. Call"
                " init_app(app) once per app."
            )

        if db is not None or user_model is not None or self._models is None:
            self._bind(db, user_model)
        assert self._db is not None

        # Flask-SQLAlchemy's init_app stores its instance under this key. Another
        # db initialised on the app does not count, because the token models are
        # defined on ours.
        registered_db: object = app.extensions.get("sqlalchemy")
        if registered_db is not self._db:
            raise RuntimeError(
                "Call db.init_app(app) before auth.init_app(app), with the db given"
                " to RefreshAuth: flask-refresh stores its tokens through it."
            )

        settings = load_settings(app.config)
        state = State(
            auth=self,
            db=self._db,
            settings=settings,
            models=self.models,
            successor_key=successor_key(settings.secret_key),
            metrics=Metrics(),
            status_cache=build_cache(
                settings.redis_url, settings.revocation_cache_ttl.total_seconds()
            ),
        )
        app.extensions[EXTENSION_KEY] = state
        state.metrics.connect(app)

        with app.app_context():
            _enforce_sqlite_foreign_keys(self._db)

        # Each adds its routes to the blueprint.
        from . import jwks, session_views  # noqa: F401
        from .cli import tokens_cli
        from .openapi import install_openapi_route
        from .request_limits import install_method_check
        from .throttling import init_login_throttle
        from .views import blueprint

        app.register_blueprint(blueprint, url_prefix=settings.url_prefix)
        app.register_error_handler(AuthError, _handle_auth_error)
        app.cli.add_command(tokens_cli)
        install_method_check(app)
        state.login_limiter = init_login_throttle(app, state)
        if settings.serve_openapi:
            install_openapi_route(app)

    def _bind(self, db: SQLAlchemy | None, user_model: type[Any] | None) -> None:
        if self._models is not None:
            if (db is None or db is self._db) and (
                user_model is None or user_model is self._models.user
            ):
                return
            raise RuntimeError(
                "This RefreshAuth is already bound to another db or user model."
                " Create one RefreshAuth per db."
            )

        if db is None or user_model is None:
            raise RuntimeError(
                "flask-refresh needs both db= and user_model=, in RefreshAuth() or"
                " in init_app()."
            )

        self._db = db
        self._models = build_models(db, user_model)

    def revoke_session(
        self,
        session_id: str,
        *,
        reason: str = RevokeReason.REVOKED,
        user_id: Any = None,
        commit: bool = True,
    ) -> bool:
        """Revoke one session (token family); its refresh tokens stop working.

        Return False when the session was unknown or already revoked.

        :param user_id: when given, only a session of this user is revoked.
        :param commit: commit ``db.session``, including the caller's pending
            changes. Pass False to commit yourself, together with other changes.
            The :data:`~flask_refresh.signals.session_revoked` signal is sent
            either way, before your commit.
        """
        state = get_state()
        return revoke_family(
            state,
            session_id,
            reason=reason,
            now=state.clock(),
            user_id=user_id,
            commit=commit,
        )

    def revoke_user_sessions(
        self,
        user_id: Any,
        *,
        reason: str = RevokeReason.REVOKED,
        keep_session_id: str | None = None,
        commit: bool = True,
    ) -> int:
        """Revoke every session of a user, for a password change or deactivation.

        Return how many sessions were revoked.

        :param keep_session_id: a session to leave alive, usually the current one
            (``get_claims()["sid"]``).
        :param commit: as for :meth:`revoke_session`.
        """
        state = get_state()
        return revoke_user_families(
            state,
            user_id,
            reason=reason,
            now=state.clock(),
            keep_family_id=keep_session_id,
            commit=commit,
        )

    def is_session_live(self, session_id: str) -> bool:
        """Return whether a session exists and is not revoked.

        For views that must refuse a revoked session's access token even when
        ``REFRESH_CHECK_REVOKED`` is off, such as a password change: pass
        ``get_claims()["sid"]``. Uses the session cache when one is configured.
        """
        return is_session_live(get_state(), session_id)

    def password_checker(self, callback: PasswordChecker) -> PasswordChecker:
        """Register ``callback(user, password) -> bool`` to check passwords.

        Without one, ``user.check_password(password)`` is called. For an unknown
        user the callback is not called: a Werkzeug hash of a random password is
        checked instead, so that the response time does not tell which usernames
        exist. If your hashes are much slower or faster than Werkzeug's default,
        check them in the callback so that both costs match.
        """
        self._password_checker = callback
        return callback

    def username_loader(self, callback: UsernameLoader) -> UsernameLoader:
        """Register ``callback(username) -> user | None`` to find users at login.

        Without one, the user whose ``REFRESH_LOGIN_FIELD`` column equals the
        submitted username is loaded.
        """
        self._username_loader = callback
        return callback

    def additional_claims_loader(self, callback: ClaimsLoader) -> ClaimsLoader:
        """Register ``callback(user) -> dict`` to add claims to access tokens.

        It is called once per login, and its result is stored with the session, so
        every access token of the session carries the same claims, refreshed ones
        included, even if the callback would now return something else::

            @auth.additional_claims_loader
            def add_claims(user):
                return {"roles": user.role_names()}

        The claims must be JSON values and must not replace a claim that
        flask-refresh sets: ``sub``, ``iat``, ``nbf``, ``exp``, ``jti``, ``type``,
        ``fresh``, ``sid``, ``iss`` and ``aud``.
        """
        self._claims_loader = callback
        return callback

    def additional_claims_for(self, user: Any) -> dict[str, Any] | None:
        """Return the additional claims for a login of ``user``, or None.

        :raises TypeError: the callback returned something other than a dict of
            JSON values.
        :raises ValueError: the callback returned a reserved claim.
        """
        if self._claims_loader is None:
            return None

        return validated_claims(self._claims_loader(user))

    def authenticate(self, username: str, password: str) -> Any | None:
        """Return the active user with these credentials, or None.

        Unknown users, wrong passwords and inactive users all cost one password
        check and return the same None.
        """
        return authenticate(
            get_state(),
            username,
            password,
            username_loader=self._username_loader,
            password_checker=self._password_checker,
        )


def _handle_auth_error(error: AuthError) -> Any:
    if isinstance(error, BearerError):
        error.realm = get_state().settings.realm

    return error.get_response()


def _enforce_sqlite_foreign_keys(db: SQLAlchemy) -> None:
    """Make SQLite enforce foreign keys on every connection of ``db``.

    SQLite ignores ``ON DELETE CASCADE`` unless ``PRAGMA foreign_keys`` is on for
    the connection, and then deleting a user would leave its tokens behind.
    """
    for engine in db.engines.values():
        if engine.dialect.name != "sqlite":
            continue
        if sa.event.contains(engine, "connect", _sqlite_foreign_keys_on):
            continue

        # NOTE: connections the pool opened before init_app keep foreign keys off;
        # init_app normally runs before the first query.
        sa.event.listen(engine, "connect", _sqlite_foreign_keys_on)


def _sqlite_foreign_keys_on(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
