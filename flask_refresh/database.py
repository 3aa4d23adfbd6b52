"""Database helpers shared by the modules that read and write tokens."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from .errors import TemporarilyUnavailable

if TYPE_CHECKING:
    from .extension import State

logger = logging.getLogger("flask_refresh")


@contextmanager
def database_errors_as_unavailable(state: State, action: str) -> Iterator[None]:
    """Roll back and raise :class:`TemporarilyUnavailable` on a database error.

    The transaction is rolled back, so a presented token that was being spent is
    unspent again and the client can retry with it. Database errors fail closed.
    """
    try:
        yield
    except (DBAPIError, PoolTimeoutError) as error:
        state.db.session.rollback()
        logger.error(
            "Database error while %s, responded 503: %s", action, describe_error(error)
        )
        raise TemporarilyUnavailable() from None


def describe_error(error: Exception) -> str:
    """Describe a database error for the log without the values it carried.

    SQLAlchemy's messages include the statement parameters and drivers quote
    duplicate key values, either of which can be a token digest.
    """
    if isinstance(error, DBAPIError):
        original = error.orig
        if isinstance(error, IntegrityError) or original is None:
            return type(error).__name__
        # The driver's class names its module: sqlite3.OperationalError, say.
        driver_class = f"{type(original).__module__}.{type(original).__name__}"
        return f"{type(error).__name__}: {driver_class}: {original}"

    return type(error).__name__


def rowcount(result: sa.Result[Any]) -> int:
    """Return how many rows a DML statement matched."""
    return cast(CursorResult[Any], result).rowcount
