"""Host apps with a Flask-SQLAlchemy ``db`` and user model of their own.

The session databases already contain the example app's ``refresh_token`` and
``refresh_token_family`` tables, so a test that builds other models creates a new
``SQLAlchemy()`` here and runs it on the ``fresh_database_url`` fixture.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_login import LoginManager, UserMixin, current_user
from flask_sqlalchemy import SQLAlchemy
from helpers import FAST_HASH_METHOD, PASSWORD, SECRET_KEY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from flask_refresh import get_claims, jwt_required

#: The primary key types a host user model is tested with.
PRIMARY_KEY_KINDS = ("integer", "uuid", "string")
USER_TABLE = "account"


@dataclass
class Host:
    """A host app's ``db``, user model and login manager, before ``RefreshAuth``."""

    db: SQLAlchemy
    user_model: type[Any]
    login_manager: LoginManager
    primary_key_kind: str
    #: Every ``sub`` the user loader was called with, in order.
    loaded_subjects: list[str] = field(default_factory=list)

    def new_app(self, database_url: str, **config: Any) -> Flask:
        """Return an app with ``db`` and the login manager initialised on it."""
        app = Flask(f"host_{self.primary_key_kind}")
        app.config.update(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": database_url,
                "REFRESH_SECRET_KEY": SECRET_KEY,
                **config,
            }
        )
        self.db.init_app(app)
        self.login_manager.init_app(app)
        add_me_view(app)
        return app

    def create_tables(self, app: Flask) -> None:
        """Create every table of ``db``, the token tables included."""
        with app.app_context():
            self.db.create_all()

    def add_user(self, app: Flask, username: str, *, email: str | None = None) -> Any:
        """Insert a user with :data:`helpers.PASSWORD` and return its primary key."""
        with app.app_context():
            user = self.user_model(
                username=username,
                email=email,
                password_hash=generate_password_hash(PASSWORD, method=FAST_HASH_METHOD),
            )
            if self.primary_key_kind == "string":
                user.id = f"user-{username}"
            self.db.session.add(user)
            self.db.session.commit()
            return user.id

    def close(self, app: Flask) -> None:
        """End the session and close the pooled connections of ``app``."""
        with app.app_context():
            self.db.session.remove()
            for engine in self.db.engines.values():
                engine.dispose()


def build_host(primary_key_kind: str = "integer") -> Host:
    """Define a new ``db`` with a user model whose primary key is of that kind."""

    class Base(DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)
    user_model = define_user_model(db, primary_key_kind)
    host = Host(
        db=db,
        user_model=user_model,
        login_manager=LoginManager(),
        primary_key_kind=primary_key_kind,
    )
    parse = _subject_parser(primary_key_kind)

    @host.login_manager.user_loader
    def load_user(subject: str) -> Any:
        host.loaded_subjects.append(subject)
        key = parse(subject)
        return None if key is None else db.session.get(user_model, key)

    return host


def define_user_model(db: SQLAlchemy, primary_key_kind: str) -> type[Any]:
    """Define a Flask-Login user model on ``db`` with the given primary key type."""
    id_columns: dict[str, Callable[[], Mapped[Any]]] = {
        "integer": lambda: mapped_column(sa.Integer, primary_key=True),
        "uuid": lambda: mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4),
        "string": lambda: mapped_column(sa.String(40), primary_key=True),
    }

    class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = USER_TABLE

        id: Mapped[Any] = id_columns[primary_key_kind]()
        username: Mapped[str] = mapped_column(sa.String(80), unique=True)
        email: Mapped[str | None] = mapped_column(sa.String(120), unique=True)
        password_hash: Mapped[str] = mapped_column(sa.String(255))

        def check_password(self, password: str) -> bool:
            return check_password_hash(self.password_hash, password)

    return User


def _subject_parser(primary_key_kind: str) -> Callable[[str], Any]:
    def parse_integer(subject: str) -> int | None:
        return int(subject) if subject.isdigit() else None

    def parse_uuid(subject: str) -> uuid.UUID | None:
        try:
            return uuid.UUID(subject)
        except ValueError:
            return None

    def parse_string(subject: str) -> str:
        return subject

    parsers: dict[str, Callable[[str], Any]] = {
        "integer": parse_integer,
        "uuid": parse_uuid,
        "string": parse_string,
    }
    return parsers[primary_key_kind]


def add_me_view(app: Flask) -> None:
    """Add ``GET /me``: the token's user as the user loader returned it."""

    @app.get("/me")
    @jwt_required()
    def me() -> dict[str, Any]:
        return {
            "id": str(current_user.id),
            "username": current_user.username,
            "sub": get_claims()["sub"],
        }
