"""The example app's user model."""

from __future__ import annotations

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from . import db, login_manager


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    """An account that logs in with a username and a password."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active

    def set_password(self, password: str) -> None:
        """Store a Werkzeug hash of ``password``."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """Return whether ``password`` matches the stored hash."""
        return check_password_hash(self.password_hash, password)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Load the user of an access token's ``sub`` claim."""
    # str.isdigit() and int() also accept other scripts' digits (int() reads
    # Arabic-Indic "\u0661" as 1, and raises for superscript "\u00b2"), so only
    # ASCII digits are ids.
    if not (user_id.isascii() and user_id.isdigit()):
        return None

    return db.session.get(User, int(user_id))
