"""Checking login credentials and the claims a login adds to its tokens."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from .access_tokens import check_additional_claims
from .database import database_errors_as_unavailable

if TYPE_CHECKING:
    from .extension import State

PasswordChecker = Callable[[Any, str], bool]
UsernameLoader = Callable[[str], Any]


@cache
def _dummy_password_hash() -> str:
    # Hashed with Werkzeug's default method, the one a Flask app most likely uses,
    # so that checking it costs about what checking a real user's hash costs.
    return generate_password_hash(secrets.token_urlsafe(16))


def authenticate(
    state: State,
    username: str,
    password: str,
    *,
    username_loader: UsernameLoader | None,
    password_checker: PasswordChecker | None,
) -> Any | None:
    """Return the active user with these credentials, or None.

    Unknown users, wrong passwords and inactive users all cost one password check
    and return the same None, so neither the response nor its timing tells which
    accounts exist.
    """
    # A failed lookup must not read as "no such user": that would let every
    # password fail, and a failing database fails closed with 503 instead.
    with database_errors_as_unavailable(state, "loading a user at login"):
        user = _load_user_by_name(state, username, username_loader)
    if user is None:
        check_password_hash(_dummy_password_hash(), password)
        return None

    if not _check_password(user, password, password_checker):
        return None

    return user if user.is_active else None


def _load_user_by_name(
    state: State, username: str, username_loader: UsernameLoader | None
) -> Any | None:
    if username_loader is not None:
        return username_loader(username)

    user_model = state.models.user
    column = getattr(user_model, state.settings.login_field, None)
    if column is None:
        raise RuntimeError(
            f"REFRESH_LOGIN_FIELD is {state.settings.login_field!r}, but"
            f" {user_model.__name__} has no such attribute."
        )

    return state.db.session.execute(
        sa.select(user_model).where(column == username)
    ).scalar_one_or_none()


def _check_password(
    user: Any, password: str, password_checker: PasswordChecker | None
) -> bool:
    if password_checker is not None:
        return bool(password_checker(user, password))

    check = getattr(user, "check_password", None)
    if check is None:
        raise RuntimeError(
            f"{type(user).__name__} has no check_password(password) method."
            " Add one, or register a function with @auth.password_checker."
        )

    return bool(check(password))


def validated_claims(claims: object) -> dict[str, Any] | None:
    """Check what an ``additional_claims_loader`` returned; None for no claims.

    :raises TypeError: it is not a dict of JSON values.
    :raises ValueError: it names a claim that flask-refresh sets itself.
    """
    if claims is None:
        return None
    if not isinstance(claims, Mapping):
        raise TypeError(
            "The additional_claims_loader must return a dict or None, got"
            f" {type(claims).__name__}."
        )

    result = dict(claims)
    check_additional_claims(result)
    try:
        # The claims are stored in a JSON column and signed as JSON.
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"The additional_claims_loader returned claims that are not JSON"
            f" values: {error}."
        ) from None

    return result or None
