"""``flask tokens ...``: purge old rows, list and revoke a user's sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from .extension import State, get_state
from .models import user_primary_key
from .store import RevokeReason, list_sessions, revoke_family, revoke_user_families


@click.group("tokens")
def tokens_cli() -> None:
    """Manage flask-refresh sessions and refresh tokens."""


def parse_user_id(state: State, text: str) -> Any:
    """Convert a user id given on the command line to the primary key's type."""
    column = user_primary_key(state.models.user)
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return text

    try:
        if python_type is uuid.UUID:
            return uuid.UUID(text)
        return python_type(text)
    except (TypeError, ValueError) as error:
        raise click.BadParameter(
            f"{text!r} is not a valid {python_type.__name__} user id."
        ) from error


@tokens_cli.command("sessions")
@click.argument("user_id")
@with_appcontext
def sessions_command(user_id: str) -> None:
    """List the live sessions of USER_ID (the user's primary key)."""
    state = get_state()
    listed = list_sessions(state, parse_user_id(state, user_id), now=state.clock())
    if not listed:
        click.echo("No live sessions.")
        return

    for info in listed:
        click.echo(
            f"{info.id}  created {_minutes(info.created_at)}"
            f"  last used {_minutes(info.last_used_at)}"
            f"  expires {_minutes(info.expires_at)}"
            f"  {info.ip_address or '-'}  {info.user_agent or '-'}"
        )


@tokens_cli.command("revoke")
@click.argument("user_id")
@click.option(
    "--session",
    "session_id",
    help="Revoke only this session; by default every session of the user.",
)
@click.option(
    "--reason",
    default=RevokeReason.ADMIN.value,
    show_default=True,
    help="Stored as the revocation reason (up to 32 characters).",
)
@with_appcontext
def revoke_command(user_id: str, session_id: str | None, reason: str) -> None:
    """Revoke the sessions of USER_ID (the user's primary key)."""
    if len(reason) > 32:
        raise click.BadParameter("at most 32 characters", param_hint="--reason")

    state = get_state()
    owner = parse_user_id(state, user_id)
    now = state.clock()
    if session_id is not None:
        if not revoke_family(state, session_id, reason=reason, now=now, user_id=owner):
            raise click.ClickException(
                f"User {user_id} has no live session {session_id}."
            )
        click.echo(f"Revoked session {session_id}.")
        return

    count = revoke_user_families(state, owner, reason=reason, now=now)
    click.echo(f"Revoked {count} session(s) of user {user_id}.")


@tokens_cli.command("purge")
@click.option(
    "--batch-size",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows deleted per transaction; smaller batches hold locks for less time.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go, delete nothing.")
@with_appcontext
def purge_command(batch_size: int, dry_run: bool) -> None:
    """Delete refresh tokens and sessions that ended long ago.

    A row goes REFRESH_PURGE_AFTER after it expired or was revoked. Until then a
    replayed token is still recognised as reuse and revokes its session.
    """
    state = get_state()
    cutoff = state.clock() - state.settings.purge_after
    tokens = _expired_tokens(state, cutoff)
    families = _ended_families(state, cutoff)

    if dry_run:
        token_count = _count(state, tokens)
        family_count = _count(state, families)
        click.echo(
            f"Would delete {token_count} refresh token(s) and {family_count}"
            f" session(s) that ended before {_minutes(cutoff)}."
        )
        return

    token_count = _delete_in_batches(state, tokens, batch_size, "tokens")
    # Tokens go first: deleting a family first would take its expired tokens with
    # it through the foreign key's cascade, and the token count would miss them.
    family_count = _delete_in_batches(state, families, batch_size, "sessions")
    click.echo(
        f"Deleted {token_count} refresh token(s) and {family_count} session(s)"
        " with the tokens they still had."
    )


def _expired_tokens(state: State, cutoff: datetime) -> sa.Select[Any]:
    token = state.models.token
    return sa.select(token.id).where(token.expires_at < cutoff)


def _ended_families(state: State, cutoff: datetime) -> sa.Select[Any]:
    family, token = state.models.family, state.models.token
    # Tokens the token purge deletes do not count, so that a dry run, which
    # deletes none, counts the families that the token purge empties.
    keeps_tokens = (
        sa.select(token.id)
        .where(token.family_id == family.id, token.expires_at >= cutoff)
        .exists()
    )
    return sa.select(family.id).where(
        sa.or_(
            family.expires_at < cutoff,
            family.revoked_at < cutoff,
            sa.and_(family.created_at < cutoff, ~keeps_tokens),
        )
    )


def _count(state: State, ids: sa.Select[Any]) -> int:
    return state.db.session.execute(
        sa.select(sa.func.count()).select_from(ids.subquery())
    ).scalar_one()


def _delete_in_batches(
    state: State, ids: sa.Select[Any], batch_size: int, label: str
) -> int:
    """Delete the rows ``ids`` selects, ``batch_size`` per transaction.

    Each batch is selected anew: holding every id of a million-row purge in memory
    is what this avoids. The batches' own ids never come back, so it ends.
    """
    session = state.db.session
    model = ids.column_descriptions[0]["entity"]
    total = _count(state, ids)
    deleted = 0
    with click.progressbar(length=total, label=f"Deleting {label}") as bar:
        while True:
            batch = list(session.execute(ids.limit(batch_size)).scalars())
            if not batch:
                break
            session.execute(sa.delete(model).where(model.id.in_(batch)))
            session.commit()
            deleted += len(batch)
            bar.update(len(batch))

    return deleted


def _minutes(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M UTC")
