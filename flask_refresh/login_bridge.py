"""Making ``flask_login.current_user`` the access token's user.

Flask-Login resolves ``current_user`` on first use by calling the login manager's
``_load_user``, which prefers the session cookie. In a request authenticated by an
access token, the token's user must take precedence over any cookie. The user is
also loaded only if the view uses it, so a view that does not touch
``current_user`` costs no database query. For both reasons the manager's
``_load_user`` is wrapped once. During a token-authenticated request the wrapper
loads the token's ``sub`` through the host's ``user_loader``; otherwise it calls
the original.

NOTE: this relies on Flask-Login 0.6's private ``_load_user``, ``_user_callback``
and ``_update_request_context_with_user``; the test suite exercises all three.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, current_app, g

from .errors import InvalidToken

_TOKEN_USER_KEY = "_flask_refresh_token_claims"
_WRAPPED_FLAG = "_flask_refresh_wrapped"
_wrap_lock = threading.Lock()


def use_token_user(app: Flask, request_globals: Any, claims: dict[str, Any]) -> None:
    """Make ``current_user`` load the user of ``claims["sub"]`` in this request.

    ``app`` and ``request_globals`` are ``current_app`` and ``g`` already
    resolved, because every protected request calls this and each proxy lookup
    costs more than the work done here.
    """
    manager = getattr(app, "login_manager", None)
    if manager is None:
        # Without Flask-Login the app reads get_claims() instead of current_user.
        return

    _wrap_load_user(manager)
    attributes = vars(request_globals)
    attributes[_TOKEN_USER_KEY] = claims
    # Drop a user resolved earlier in this request (by a before_request handler
    # reading current_user, say), so that the token's user takes its place.
    attributes.pop("_login_user", None)


def load_token_user() -> None:
    """Load ``current_user`` now, as its first use in a view would.

    :raises InvalidToken: the token's user was deleted or is inactive.
    """
    manager = getattr(current_app, "login_manager", None)
    if manager is None or g.get(_TOKEN_USER_KEY) is None:
        return

    # Flask-Login's current_user loads the user the same way on first use.
    if "_login_user" not in g:
        manager._load_user()


def _wrap_load_user(manager: Any) -> None:
    if getattr(manager, _WRAPPED_FLAG, False):
        return

    with _wrap_lock:
        if getattr(manager, _WRAPPED_FLAG, False):
            return

        original = manager._load_user

        def load_user() -> Any:
            claims = g.get(_TOKEN_USER_KEY)
            if claims is None:
                return original()

            return manager._update_request_context_with_user(
                _load_token_user(manager, claims)
            )

        manager._load_user = load_user
        setattr(manager, _WRAPPED_FLAG, True)


def _load_token_user(manager: Any, claims: dict[str, Any]) -> Any:
    if manager._user_callback is None:
        raise RuntimeError(
            "Register a Flask-Login user loader (@login_manager.user_loader) so that"
            " current_user can load the access token's user."
        )

    user = manager._user_callback(claims["sub"])
    # The token outlived its user: deleted or deactivated after the token was
    # issued. This surfaces as a 401 from the first use of current_user.
    if user is None or not user.is_active:
        raise InvalidToken(
            "The user of this access token no longer exists or is inactive."
        )

    return user
