"""Refresh token rotation (OAuth 2.0 Security BCP, RFC 9700 section 4.14.2).

A presented token is spent by one conditional UPDATE whose row count decides the
single winner, however many requests, workers or app instances race for it. The
UPDATE comes first in the transaction: a read before it would let SQLite start a
read transaction that cannot later be upgraded to a write, and would give MariaDB a
snapshot older than the row the UPDATE locks.

The winner inserts the successor, derived from the spent token with an HMAC, in the
same transaction. On PostgreSQL it is also the same statement (see
:mod:`.rotation_sql`). A loser reads the row to learn why it lost. A token spent
within the grace interval is a client retrying (a lost response, two tabs), and
it gets the same successor again. After the interval, the token was stolen or
replayed, so its whole family is revoked.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from flask import current_app

from . import signals
from .access_tokens import new_jti
from .database import database_errors_as_unavailable, rowcount
from .errors import InvalidGrant, TemporarilyUnavailable
from .rotation_sql import (
    EXPIRY_CUTOFF,
    IDLE_END,
    IP_ADDRESS,
    JWT_ID,
    NOW,
    SPENT_HASH,
    SUCCESSOR_HASH,
    SUCCESSOR_ID,
    USER_AGENT,
    combined_rotation,
    rotation_statements,
    use_read_committed,
)
from .store import (
    ClientInfo,
    IssuedRefreshToken,
    RevokeReason,
    revoke_family,
    subject_of,
)
from .tokens import derive_successor, hash_refresh_token, is_well_formed, new_id

if TYPE_CHECKING:
    from .extension import State

logger = logging.getLogger("flask_refresh")


class _Spent(NamedTuple):
    """The facts the spending statement returned about the token it spent."""

    user_id: Any
    family_id: str
    session_expires_at: datetime
    claims: dict[str, Any] | None
    #: The user; None when the host's loader criteria hide it.
    owner: Any
    #: The successor's expiry, when the same statement inserted it.
    successor_expires_at: datetime | None


class _Successor(NamedTuple):
    """The token that replaces the spent one, and its row's values."""

    token: str
    id: str
    jwt_id: str
    now: datetime
    client: ClientInfo


def rotate(
    state: State, presented: str, *, now: datetime, client: ClientInfo
) -> IssuedRefreshToken:
    """Spend ``presented`` and return its successor in the same family.

    :raises InvalidGrant: the token is unknown, expired, revoked, belongs to an
        inactive user, or was spent before the grace interval (its family is then
        revoked).
    :raises TemporarilyUnavailable: the database failed; nothing was changed.
    """
    if not is_well_formed(presented):
        logger.debug("Refresh rejected: the token is malformed.")
        raise InvalidGrant()

    token_hash = hash_refresh_token(presented)
    successor = _Successor(
        token=derive_successor(state.successor_key, presented),
        id=new_id(),
        jwt_id=new_jti(),
        now=now,
        client=client.truncated(),
    )
    session = state.db.session

    with database_errors_as_unavailable(state, "rotating a refresh token"):
        dialect = use_read_committed(state)
        if dialect == "postgresql":
            spent = _spend_and_insert(state, token_hash, successor)
        else:
            spent = _spend(state, token_hash, successor)
        if spent is None:
            session.rollback()
            return _explain_loss(state, presented, token_hash, now=now)

        if spent.owner is None:
            # The row exists (deleting a user deletes its tokens), so the host
            # hides it, for example soft-deleted users behind loader criteria.
            session.rollback()
            logger.debug("Refresh rejected: user %s is not visible.", spent.user_id)
            raise InvalidGrant()
        if not spent.owner.is_active:
            session.rollback()
            logger.debug("Refresh rejected: user %s is inactive.", spent.user_id)
            raise InvalidGrant("The user account is disabled.")

        subject = subject_of(spent.owner)
        expires_at = spent.successor_expires_at
        if expires_at is None:
            expires_at = _insert(state, spent, successor)
        session.commit()

    _send_rotated(spent.user_id, spent.family_id, retry=False)
    return IssuedRefreshToken(
        token=successor.token,
        token_id=successor.id,
        family_id=spent.family_id,
        jwt_id=successor.jwt_id,
        subject=subject,
        user_id=spent.user_id,
        expires_at=expires_at,
        session_expires_at=spent.session_expires_at,
        fresh=False,
        claims=spent.claims,
    )


def _spend_and_insert(
    state: State, token_hash: str, successor: _Successor
) -> _Spent | None:
    """Spend the token and insert its successor in one statement (PostgreSQL)."""
    now = successor.now
    row = state.db.session.execute(
        combined_rotation(state.models),
        {
            SPENT_HASH: token_hash,
            NOW: now,
            EXPIRY_CUTOFF: now - state.settings.leeway,
            SUCCESSOR_ID: successor.id,
            SUCCESSOR_HASH: hash_refresh_token(successor.token),
            JWT_ID: successor.jwt_id,
            IDLE_END: now + state.settings.idle_timeout,
            USER_AGENT: successor.client.user_agent,
            IP_ADDRESS: successor.client.ip_address,
        },
    ).one_or_none()
    return None if row is None else _Spent(*row)


def _spend(state: State, token_hash: str, successor: _Successor) -> _Spent | None:
    """Spend the token and read what its successor needs; insert nothing yet."""
    statements = rotation_statements(state.models)
    now = successor.now
    session = state.db.session
    result = session.execute(
        statements.spend,
        {
            SPENT_HASH: token_hash,
            NOW: now,
            EXPIRY_CUTOFF: now - state.settings.leeway,
            SUCCESSOR_ID: successor.id,
        },
    )
    if rowcount(result) != 1:
        return None

    user_id, family_id, session_expires_at, claims, owner = session.execute(
        statements.read_spent, {SPENT_HASH: token_hash}
    ).one()
    return _Spent(user_id, family_id, session_expires_at, claims, owner, None)


def _insert(state: State, spent: _Spent, successor: _Successor) -> datetime:
    """Insert the successor of a token :func:`_spend` spent; return its expiry."""
    now = successor.now
    expires_at = min(now + state.settings.idle_timeout, spent.session_expires_at)
    state.db.session.execute(
        rotation_statements(state.models).insert_successor,
        {
            "id": successor.id,
            "token_hash": hash_refresh_token(successor.token),
            "family_id": spent.family_id,
            "user_id": spent.user_id,
            "jwt_id": successor.jwt_id,
            "created_at": now,
            "expires_at": expires_at,
            "user_agent": successor.client.user_agent,
            "ip_address": successor.client.ip_address,
        },
    )
    return expires_at


def _explain_loss(
    state: State, presented: str, token_hash: str, *, now: datetime
) -> IssuedRefreshToken:
    """Decide what a token that the UPDATE did not spend gets instead."""
    token, family = state.models.token, state.models.family
    # Concurrent losers may all revoke the family as reuse.
    use_read_committed(state)

    row = state.db.session.execute(
        sa.select(token, family)
        .join(family, family.id == token.family_id)
        .where(token.token_hash == token_hash)
    ).one_or_none()

    if row is None:
        logger.debug("Refresh rejected: unknown token.")
        raise InvalidGrant()

    spent, spent_family = row
    if spent_family.revoked_at is not None:
        logger.debug(
            "Refresh rejected: family %s was revoked (%s).",
            spent_family.id,
            spent_family.revoked_reason,
        )
        raise InvalidGrant("The refresh token was revoked.")

    if spent.used_at is not None:
        return _handle_spent(state, presented, spent, spent_family, now=now)

    cutoff = now - state.settings.leeway
    if spent.expires_at <= cutoff or spent_family.expires_at <= cutoff:
        logger.debug("Refresh rejected: token %s expired.", spent.id)
        raise InvalidGrant("The refresh token expired.")

    # Live and unspent, yet the UPDATE matched nothing: a concurrent transaction
    # held the row and rolled back. Nothing was written, so the client may retry.
    logger.info("Refresh of token %s lost to a rolled-back transaction.", spent.id)
    raise TemporarilyUnavailable()


def _handle_spent(
    state: State, presented: str, spent: Any, spent_family: Any, *, now: datetime
) -> IssuedRefreshToken:
    """Give a retry within the grace interval the same successor; else it is reuse."""
    models = state.models
    grace = state.settings.reuse_grace
    # A zero interval turns retries off. Without the first test, a concurrent
    # loser that read the clock no later than the winner would count as a retry.
    within_grace = grace > timedelta(0) and now - spent.used_at <= grace

    if within_grace and spent.replaced_by_id is not None:
        row = state.db.session.execute(
            sa.select(models.token, models.user)
            .join(
                models.user,
                getattr(models.user, models.user_id_attribute) == models.token.user_id,
            )
            .where(models.token.id == spent.replaced_by_id)
        ).one_or_none()

        # Only the immediate predecessor of the live token qualifies: once the
        # successor is spent too, an older token is reuse whatever its age.
        if row is not None:
            successor, owner = row
            live = (
                successor.used_at is None
                and successor.expires_at > now - state.settings.leeway
            )
            # A client retrying after its user was disabled is not a thief, so it
            # gets the response a first refresh would get, not a reuse alarm.
            if live and not owner.is_active:
                logger.debug("Refresh rejected: user %s is inactive.", spent.user_id)
                raise InvalidGrant("The user account is disabled.")
            if live:
                _send_rotated(spent.user_id, spent_family.id, retry=True)
                return IssuedRefreshToken(
                    token=derive_successor(state.successor_key, presented),
                    token_id=successor.id,
                    family_id=spent_family.id,
                    jwt_id=new_jti(),
                    subject=subject_of(owner),
                    user_id=spent.user_id,
                    expires_at=successor.expires_at,
                    session_expires_at=spent_family.expires_at,
                    fresh=False,
                    retry=True,
                    claims=spent_family.claims,
                )

    _report_reuse(state, spent, spent_family, now=now)
    raise InvalidGrant("The refresh token was already used.")


def _report_reuse(
    state: State, spent: Any, spent_family: Any, *, now: datetime
) -> None:
    report_only = state.settings.reuse_report_only
    logger.warning(
        "Refresh token reuse detected: user_id=%s family_id=%s token_id=%s"
        " used_at=%s%s",
        spent.user_id,
        spent_family.id,
        spent.id,
        spent.used_at.isoformat(),
        " (report-only mode: the family stays live)" if report_only else "",
    )

    revoked = False
    if not report_only:
        revoked = revoke_family(
            state,
            spent_family.id,
            reason=RevokeReason.REUSE_DETECTED,
            now=now,
        )

    signals.token_reuse_detected.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        user_id=spent.user_id,
        family_id=spent_family.id,
        token_id=spent.id,
        revoked=revoked,
    )


def _send_rotated(user_id: Any, family_id: str, *, retry: bool) -> None:
    signals.token_rotated.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        user_id=user_id,
        family_id=family_id,
        retry=retry,
    )
