"""Database operations on families and refresh tokens, except rotation.

Every function runs in ``db.session``. Functions that write commit before they return
unless ``commit=False`` is passed, and roll back on any database error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app

from . import signals
from .access_tokens import new_jti
from .database import database_errors_as_unavailable, rowcount
from .session_status import mark_revoked
from .tokens import generate_refresh_token, hash_refresh_token, new_id

if TYPE_CHECKING:
    from .extension import State

logger = logging.getLogger("flask_refresh")


class RevokeReason(StrEnum):
    """Reason for revoking a family, stored in ``revoked_reason``."""

    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    LOGOUT_OTHERS = "logout_others"
    REUSE_DETECTED = "reuse_detected"
    PASSWORD_CHANGED = "password_changed"
    REVOKED = "revoked"
    ADMIN = "admin"


@dataclass(frozen=True)
class ClientInfo:
    """Client details recorded with a token: user agent and IP address."""

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
    #: The family's additional claims, stored at login.
    claims: Mapping[str, Any] | None = None


def subject_of(user: Any) -> str:
    """Return the access token ``sub`` for ``user``: Flask-Login's ``get_id()``."""
    return str(user.get_id())


def issue_family(
    state: State,
    user: Any,
    *,
    now: datetime,
    client: ClientInfo,
    claims: Mapping[str, Any] | None = None,
) -> IssuedRefreshToken:
    """Start a family for ``user`` with its first refresh token, and commit.

    :param claims: additional claims for every access token of the family.
    """
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
                claims=claims,
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
        claims=claims,
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
        _report_revoked(state, owner, [family_id], reason)

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

    _report_revoked(state, user_id, family_ids, reason)
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


def _report_revoked(
    state: State, user_id: Any, family_ids: list[str], reason: str
) -> None:
    mark_revoked(state, family_ids)
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


@dataclass(frozen=True)
class SessionInfo:
    """One live session of a user, as the session list shows it."""

    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip_address: str | None


def list_sessions(state: State, user_id: Any, *, now: datetime) -> list[SessionInfo]:
    """Return the live sessions of a user, the most recently used first.

    A session is live while it is not revoked, has not reached its absolute end and
    its newest refresh token has not expired. Its last use is when that token was
    issued, and the client shown is the one that obtained it.
    """
    family, token = state.models.family, state.models.token
    with database_errors_as_unavailable(state, "listing sessions"):
        rows = state.db.session.execute(
            sa.select(family, token)
            .join(token, sa.and_(token.family_id == family.id, token.used_at.is_(None)))
            .where(
                family.user_id == user_id,
                family.revoked_at.is_(None),
                family.expires_at > now,
                token.expires_at > now,
            )
            .order_by(token.created_at.desc())
        ).all()

    return [
        SessionInfo(
            id=live_family.id,
            created_at=live_family.created_at,
            last_used_at=live_token.created_at,
            expires_at=min(live_family.expires_at, live_token.expires_at),
            user_agent=live_token.user_agent,
            ip_address=live_token.ip_address,
        )
        for live_family, live_token in rows
    ]


def session_owner(state: State, session_id: str) -> Any | None:
    """Return the user id of a session that is not revoked, or None."""
    family = state.models.family
    with database_errors_as_unavailable(state, "looking up a session"):
        return state.db.session.execute(
            sa.select(family.user_id).where(
                family.id == session_id, family.revoked_at.is_(None)
            )
        ).scalar_one_or_none()
