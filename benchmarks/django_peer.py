"""djangorestframework-simplejwt with rotation and blacklisting, for the refresh peer.

:func:`configure` sets Django up in the calling process, once, with
``ROTATE_REFRESH_TOKENS`` and ``BLACKLIST_AFTER_ROTATION`` on and the
``token_blacklist`` app installed, on a database of its own on the same server as
flask-refresh. The module is also the URL configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import (
    ACCESS_TOKEN_LIFETIME,
    ALGORITHM,
    REFRESH_TOKEN_LIFETIME,
    SECRET_KEY,
    USERNAME,
)

REFRESH_PATH = "/api/token/refresh/"

urlpatterns: list[Any] = []


def database_settings(backend: str, name: str, workdir: Path) -> dict[str, Any]:
    """Return Django's ``DATABASES["default"]`` for the benchmark database ``name``.

    Connections are kept open between requests (``CONN_MAX_AGE=None``), as
    SQLAlchemy's pool keeps them for the Flask apps. MariaDB is reached through
    PyMySQL, the driver flask-refresh uses there.
    """
    if backend == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(workdir / f"{name}.sqlite"),
            # The same pragmas as the Flask apps' SQLite connections.
            "OPTIONS": {
                "init_command": "PRAGMA foreign_keys=ON; PRAGMA journal_mode=WAL;"
                " PRAGMA busy_timeout=5000;",
            },
        }
    if backend == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "CONN_MAX_AGE": None,
        }
    if backend == "mariadb":
        import pymysql

        pymysql.install_as_MySQLdb()
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": "3306",
            "CONN_MAX_AGE": None,
            "OPTIONS": {"charset": "utf8mb4"},
        }
    raise ValueError(f"Unknown backend {backend!r}.")


def configure(database: dict[str, Any]) -> None:
    """Configure Django and simplejwt, create the tables and the benchmark user."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS=["testserver", "127.0.0.1", "localhost"],
        ROOT_URLCONF="benchmarks.django_peer",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
            "rest_framework_simplejwt.token_blacklist",
        ],
        # No middleware: the Flask apps run none either.
        MIDDLEWARE=[],
        DATABASES={"default": database},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [],
            "DEFAULT_PERMISSION_CLASSES": [],
            "UNAUTHENTICATED_USER": None,
        },
        SIMPLE_JWT={
            "ACCESS_TOKEN_LIFETIME": ACCESS_TOKEN_LIFETIME,
            "REFRESH_TOKEN_LIFETIME": REFRESH_TOKEN_LIFETIME,
            "ROTATE_REFRESH_TOKENS": True,
            "BLACKLIST_AFTER_ROTATION": True,
            "UPDATE_LAST_LOGIN": False,
            "ALGORITHM": ALGORITHM,
            "SIGNING_KEY": SECRET_KEY,
        },
    )
    django.setup()

    from django.core.management import call_command
    from django.urls import path
    from rest_framework_simplejwt.views import TokenRefreshView

    urlpatterns.append(path(REFRESH_PATH.lstrip("/"), TokenRefreshView.as_view()))
    call_command("migrate", verbosity=0, interactive=False)

    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    if not user_model.objects.filter(username=USERNAME).exists():
        user = user_model(username=USERNAME)
        # No password: tokens are issued directly, so no hash is ever checked.
        user.set_unusable_password()
        user.save()


def issue_refresh_token() -> str:
    """Return a new refresh token of the benchmark user, recorded as outstanding."""
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import RefreshToken

    user = get_user_model().objects.get(username=USERNAME)
    return str(RefreshToken.for_user(user))


def refresh_operation() -> Any:
    """Return an operation that rotates a refresh token ``n`` times in a chain."""
    from django.test import Client

    client = Client()
    state = {"token": issue_refresh_token()}

    def run(count: int) -> None:
        for _ in range(count):
            response = client.post(
                REFRESH_PATH,
                data={"refresh": state["token"]},
                content_type="application/json",
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"simplejwt refresh returned {response.status_code}:"
                    f" {response.content[:200]!r}"
                )
            state["token"] = response.json()["refresh"]

    return run


def django_connection() -> Any:
    """Return Django's default database connection wrapper."""
    from django.db import connection

    return connection
