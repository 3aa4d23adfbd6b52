"""The two tables flask-refresh adds to the host app's database.

A *family* is everything descended from one login: the user sees it as a session, and
it is the unit of revocation. Each refresh token ever issued is one row, linked to its
family and to the host's user model. Only a SHA-256 digest of a token is stored.

The models are built on the host's Flask-SQLAlchemy ``db``, so ``flask db migrate``
includes them like any other model. Their columns are declared on the mixins below,
which also give the library's own code its types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from .types import UTCDateTime

FAMILY_TABLE = "refresh_token_family"
TOKEN_TABLE = "refresh_token"


class TokenFamilyMixin:
    """Columns of a token family, one row per login."""

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The absolute end of the session: rotation never moves it.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    #: Set once, when the family is revoked. Revocation lives on the family and not
    #: on each token so that a token inserted by a rotation racing the revocation is
    #: dead too: every liveness check reads this column.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(32))
    #: Claims the app's ``additional_claims_loader`` returned at login. Every access
    #: token of the family carries them, so they survive rotation unchanged.
    claims: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)

    if TYPE_CHECKING:
        user_id: Mapped[Any]
        user: Mapped[Any]


class RefreshTokenMixin:
    """Columns of one refresh token."""

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    #: Hex SHA-256 of the token. 64 ASCII characters fit MariaDB's index key limit
    #: in utf8mb4.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    family_id: Mapped[str] = mapped_column(
        sa.String(32),
        sa.ForeignKey(f"{FAMILY_TABLE}.id", ondelete="CASCADE"),
        index=True,
    )
    #: ``jti`` of the access token issued together with this refresh token.
    jwt_id: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    #: Set by the single conditional UPDATE that spends the token.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The successor's id. Not a foreign key: the same UPDATE that spends this token
    #: writes it, before the successor row is inserted in that transaction.
    replaced_by_id: Mapped[str | None] = mapped_column(sa.String(32))
    user_agent: Mapped[str | None] = mapped_column(sa.String(255))
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))

    if TYPE_CHECKING:
        user_id: Mapped[Any]
        user: Mapped[Any]
        family: Mapped[Any]


@dataclass(frozen=True)
class Models:
    """The model classes built for one host ``db`` and user model."""

    family: type[TokenFamilyMixin]
    token: type[RefreshTokenMixin]
    user: type[Any]
    #: The user model's attribute that maps its primary key column.
    user_id_attribute: str


def user_primary_key(user_model: type[Any]) -> sa.Column[Any]:
    """Return the single primary key column of the host's user model.

    :raises RuntimeError: the model is not mapped or has a composite primary key.
    """
    table = getattr(user_model, "__table__", None)
    if not isinstance(table, sa.Table):
        raise RuntimeError(
            f"user_model={user_model!r} is not a mapped Flask-SQLAlchemy model."
            " Pass the class of your users, for example user_model=User."
        )

    columns = list(table.primary_key.columns)
    if len(columns) != 1:
        raise RuntimeError(
            f"{user_model.__name__} has a composite primary key; flask-refresh"
            " needs a single-column primary key to reference."
        )

    return columns[0]


def build_models(db: SQLAlchemy, user_model: type[Any]) -> Models:
    """Define the family and token models on ``db``, referencing ``user_model``.

    The foreign keys copy the type of the user's primary key (integer, UUID or
    string) and cascade on delete, so deleting a user removes its tokens.
    """
    user_pk = user_primary_key(user_model)
    bind_key = getattr(user_model, "__bind_key__", None)

    def user_fk_column() -> Mapped[Any]:
        return mapped_column(
            user_pk.type.copy(),
            sa.ForeignKey(user_pk, ondelete="CASCADE"),
            index=True,
        )

    class TokenFamily(TokenFamilyMixin, db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = FAMILY_TABLE
        __bind_key__ = bind_key

        user_id: Mapped[Any] = user_fk_column()
        user: Mapped[Any] = relationship(
            user_model,
            backref=backref(
                "refresh_token_families",
                cascade="all, delete-orphan",
                passive_deletes=True,
            ),
        )

    class RefreshToken(RefreshTokenMixin, db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = TOKEN_TABLE
        __bind_key__ = bind_key

        user_id: Mapped[Any] = user_fk_column()
        user: Mapped[Any] = relationship(
            user_model,
            backref=backref(
                "refresh_tokens",
                cascade="all, delete-orphan",
                passive_deletes=True,
            ),
        )
        family: Mapped[Any] = relationship(
            TokenFamily,
            backref=backref(
                "tokens", cascade="all, delete-orphan", passive_deletes=True
            ),
        )

    return Models(
        family=TokenFamily,
        token=RefreshToken,
        user=user_model,
        user_id_attribute=sa.inspect(user_model).get_property_by_column(user_pk).key,
    )
