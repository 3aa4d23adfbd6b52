"""Column types that behave the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant, returned timezone-aware and kept to the microsecond.

    PostgreSQL stores it as ``timestamp with time zone``. SQLite and MariaDB have no
    zone, so naive UTC is stored there, and MariaDB's ``DATETIME`` is declared with
    ``fsp=6`` because it drops the fraction of a second otherwise. Comparisons in SQL
    (``expires_at > :now``) then order the same way on every backend.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))

        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None

        if value.tzinfo is None:
            raise ValueError(
                "UTCDateTime columns take timezone-aware datetimes; got a naive one."
            )

        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value

        return value.replace(tzinfo=None)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None

        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)

        return value.astimezone(UTC)
