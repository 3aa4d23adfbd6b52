"""Database operations on families and refresh tokens, except rotation.

Every function runs in ``db.session``. Functions that write commit before they return
unless told otherwise, and roll back on any database error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from . import signals
from .access_tokens import new_jti
from .errors import TemporarilyUnavailable
from .tokens import generate_refresh_token, hash_refresh_token, new_id

if TYPE_CHECKING:
    from .extension import State

logger = logging.getLogger("flask_refresh")


class RevokeReason(StrEnum):
    """Why a family was revoked; stored in ``revoked_reason``."""

    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    LOGOUT_OTHERS = "logout_others"
    REUSE_DETECTED = "reuse_detected"
    PASSWORD_CHANGED = "password_changed"
    REVOKED = "revoked"
    ADMIN = "admin"


@dataclass(frozen=True)
class ClientInfo:
    """What is recorded about the client that obtained a token."""

    user_agent: str | None = None
    ip_address: str | None = None

    def truncated(self) -> ClientInfo:
        """Return a copy that fits the token table's columns."""
        return ClientInfo(
            user_agent=self.user_agent[:255] if self.user_agent else None,
            ip_address=self.ip_address[:45] if self.ip_address else None,
        )


@dataclass(frozen=True)
class IssuedRefreshToken:
    """A refresh token handed to a client, with what its response needs."""

    token: str
    token_id: str
    family_id: str
    #: The ``jti`` for the access token issued with this refresh token.
    jwt_id: str
    #: ``user.get_id()``, the access token's ``sub``.
    subject: str
    user_id: Any
    expires_at: datetime
    session_expires_at: datetime
    #: True for the first token of a login, False after a refresh.
    fresh: bool
    #: True when a retry within the grace interval got an existing successor.
    retry: bool = False


def subject_of(user: Any) -> str:
    """Return the access token ``sub`` for ``user``: Flask-Login's ``get_id()``."""
    return str(user.get_id())


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
            "Database error while %s, answered 503: %s", action, describe_error(error)
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
        return f"{type(error).__name__}: {type(original).__name__}: {original}"

    return type(error).__name__


def rowcount(result: sa.Result[Any]) -> int:
    """Return how many rows a DML statement matched."""
    return cast(CursorResult[Any], result).rowcount


def issue_family(
    state: State, user: Any, *, now: datetime, client: ClientInfo
) -> IssuedRefreshToken:
    """Start a family for ``user`` with its first refresh token, and commit."""
    models = state.models
    settings = state.settings
    client = client.truncated()

    user_id = getattr(user, models.user_id_attribute)
    family_id = new_id()
    token_id = new_id()
    token = generate_refresh_token()
    jwt_id = new_jti()
    session_expires_at = now + settings.session_lifetime
    expires_at = min(now + settings.idle_timeout, session_expires_at)

    session = state.db.session
    with database_errors_as_unavailable(state, "starting a session"):
        session.execute(
            sa.insert(models.family).values(
                id=family_id,
                user_id=user_id,
                created_at=now,
                expires_at=session_expires_at,
            )
        )
        session.execute(
            sa.insert(models.token).values(
                id=token_id,
                token_hash=hash_refresh_token(token),
                family_id=family_id,
                user_id=user_id,
                jwt_id=jwt_id,
                created_at=now,
                expires_at=expires_at,
                user_agent=client.user_agent,
                ip_address=client.ip_address,
            )
        )
        session.commit()

    return IssuedRefreshToken(
        token=token,
        token_id=token_id,
        family_id=family_id,
        jwt_id=jwt_id,
        subject=subject_of(user),
        user_id=user_id,
        expires_at=expires_at,
        session_expires_at=session_expires_at,
        fresh=True,
    )


def revoke_family(
    state: State,
    family_id: str,
    *,
    reason: str,
    now: datetime,
    user_id: Any = None,
    commit: bool = True,
) -> bool:
    """Revoke one family. Return False when it was unknown or already revoked.

    :param user_id: when given, only a family of this user is revoked.
    """
    family = state.models.family
    statement = (
        sa.update(family)
        .where(family.id == family_id, family.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    if user_id is not None:
        statement = statement.where(family.user_id == user_id)

    with database_errors_as_unavailable(state, "revoking a session"):
        owner = state.db.session.execute(
            sa.select(family.user_id).where(family.id == family_id)
        ).scalar_one_or_none()
        revoked = rowcount(state.db.session.execute(statement)) == 1
        if commit:
            state.db.session.commit()

    if revoked:
        _report_revoked(owner, [family_id], reason)

    return revoked


def revoke_user_families(
    state: State,
    user_id: Any,
    *,
    reason: str,
    now: datetime,
    keep_family_id: str | None = None,
    commit: bool = True,
) -> int:
    """Revoke every live family of a user, except ``keep_family_id``.

    Return how many families were revoked.
    """
    family = state.models.family
    conditions = [family.user_id == user_id, family.revoked_at.is_(None)]
    if keep_family_id is not None:
        conditions.append(family.id != keep_family_id)

    with database_errors_as_unavailable(state, "revoking a user's sessions"):
        family_ids = list(
            state.db.session.execute(sa.select(family.id).where(*conditions)).scalars()
        )
        if not family_ids:
            return 0

        statement = (
            sa.update(family)
            .where(family.id.in_(family_ids), family.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        state.db.session.execute(statement)
        if commit:
            state.db.session.commit()

    _report_revoked(user_id, family_ids, reason)
    return len(family_ids)


def family_of_token(state: State, token: str) -> tuple[str, Any] | None:
    """Return the family id and user id of a stored refresh token, or None."""
    model = state.models.token
    with database_errors_as_unavailable(state, "looking up a refresh token"):
        row = state.db.session.execute(
            sa.select(model.family_id, model.user_id).where(
                model.token_hash == hash_refresh_token(token)
            )
        ).one_or_none()

    return None if row is None else (row[0], row[1])


def _report_revoked(user_id: Any, family_ids: list[str], reason: str) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # A revocation caused by token reuse is a security event; a logout is routine.
    level = logging.WARNING if reason == RevokeReason.REUSE_DETECTED else logging.INFO
    for family_id in family_ids:
        logger.log(
            level,
            "Session revoked: user_id=%s family_id=%s reason=%s",
            user_id,
            family_id,
            reason,
        )
        signals.session_revoked.send(
            app, user_id=user_id, family_id=family_id, reason=reason
        )
