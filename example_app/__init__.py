"""An API built on flask-refresh: login, protected views, refresh and logout.

Run it with ``flask --app example_app run`` after ``flask --app example_app db
upgrade``. Configuration comes from environment variables: ``DATABASE_URL`` picks
the database (SQLite in the instance folder by default) and any config key can be
set with Flask's ``FLASK_`` prefix, for example ``FLASK_REFRESH_SECRET_KEY``.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from flask_refresh import RefreshAuth

logger = logging.getLogger(__name__)

MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
migrate = Migrate(directory=str(MIGRATIONS_DIRECTORY))

from .models import User  # noqa: E402  (the model needs db above)

auth = RefreshAuth(db=db, user_model=User)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the example app.

    :param config: values that override the environment, for tests.
    """
    app = Flask(__name__, instance_relative_config=True)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(
        os.environ.get("DATABASE_URL"), app.instance_path
    )
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    if "REFRESH_SECRET_KEY" not in app.config:
        app.config["REFRESH_SECRET_KEY"] = development_secret(app.instance_path)

    db.init_app(app)
    login_manager.init_app(app)
    migrate.init_app(app, db)
    auth.init_app(app)

    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_wal)

    from .api import api
    from .cli import users

    app.register_blueprint(api)
    app.cli.add_command(users)
    return app


def database_url(url: str | None, instance_path: str) -> str:
    """Return the SQLAlchemy URL for ``DATABASE_URL``, defaulting to SQLite.

    URLs without a driver get the one this project installs: ``postgresql://``
    uses psycopg 3 and ``mysql://`` or ``mariadb://`` use PyMySQL.
    """
    if not url:
        return f"sqlite:///{Path(instance_path) / 'example.sqlite'}"

    parsed = sa.make_url(url)
    drivers = {
        "postgres": "postgresql+psycopg",
        "postgresql": "postgresql+psycopg",
        "mysql": "mysql+pymysql",
        "mariadb": "mariadb+pymysql",
    }
    if parsed.drivername in drivers:
        parsed = parsed.set(drivername=drivers[parsed.drivername])

    return parsed.render_as_string(hide_password=False)


def development_secret(instance_path: str) -> str:
    """Return a secret kept in the instance folder, creating it on first use.

    Good for trying the app on one machine. In production set
    ``FLASK_REFRESH_SECRET_KEY`` so that every instance signs with the same key.
    """
    path = Path(instance_path) / "refresh_secret_key"
    if not path.exists() and _create_secret_file(path):
        logger.warning(
            "FLASK_REFRESH_SECRET_KEY is not set; generated a development secret"
            " in %s.",
            path,
        )

    return path.read_text().strip()


def _create_secret_file(path: Path) -> bool:
    """Create ``path`` (mode 0600) with a new secret unless it exists already.

    Several workers may start at once, as under ``gunicorn -w 2``. Each writes a
    complete file under a temporary name and hard-links it to ``path``. The link
    fails when ``path`` exists, so every worker reads the one secret that won, and
    none reads a half-written file. Return whether this call created the file.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(64))
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)

    return True


def _sqlite_wal(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL lets readers run while one writer commits, which several gunicorn
    # workers sharing the file need.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
