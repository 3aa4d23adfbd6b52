"""``flask --app example_app users ...``: manage accounts from the shell."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from . import db
from .models import User


# AppGroup runs each command in an app context, also when it is invoked through
# app.test_cli_runner() rather than the flask command.
@click.group(cls=AppGroup)
def users() -> None:
    """Manage user accounts."""


@users.command("create")
@click.argument("username")
@click.password_option(help="The new user's password; prompted for when left out.")
@click.option(
    "--exist-ok",
    is_flag=True,
    help="Exit successfully, changing nothing, when the user already exists.",
)
def create_user(username: str, password: str, exist_ok: bool) -> None:
    """Create the user USERNAME."""
    existing = db.session.execute(
        sa.select(User).where(User.username == username)
    ).scalar_one_or_none()
    if existing is not None:
        if exist_ok:
            click.echo(f"User {username!r} already exists; left unchanged.")
            return
        raise click.ClickException(f"User {username!r} already exists.")

    user = User(username=username)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    click.echo(f"Created user {username!r} with id {user.id}.")


@users.command("deactivate")
@click.argument("username")
def deactivate_user(username: str) -> None:
    """Deactivate USERNAME: logins and refreshes are refused from now on."""
    user = db.session.execute(
        sa.select(User).where(User.username == username)
    ).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"User {username!r} does not exist.")

    user.active = False
    db.session.commit()
    click.echo(f"Deactivated user {username!r}.")
