"""Protecting views with access tokens: ``@jwt_required()`` and its helpers."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from flask import current_app, g, request

from .access_tokens import decode_access_token
from .cookies import check_csrf
from .credentials import bearer_token, find_access_token
from .errors import InsufficientScope, InvalidToken, MissingToken
from .extension import get_state
from .login_bridge import use_token_user
from .session_status import is_session_live

logger = logging.getLogger("flask_refresh")

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["bearer_token", "get_claims", "jwt_required", "verify_jwt_in_request"]

_CLAIMS_KEY = "_flask_refresh_claims"


def jwt_required(
    *, optional: bool = False, fresh: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid access token for a view.

    Inside the view, ``flask_login.current_user`` is the token's user and
    :func:`get_claims` returns the verified claims::

        @app.get("/api/me")
        @jwt_required()
        def me():
            return {"id": current_user.id}

    CORS preflight requests (``OPTIONS``) reach the view without a token, as in
    an ``optional`` view that got none: :func:`get_claims` returns an empty dict
    and no token is read. Async views are supported, and the decorated view keeps
    its signature.

    :param optional: let requests without a token through as anonymous. A token
        that is present must still be valid.
    :param fresh: require a token issued by a login, not by a refresh (403
        ``insufficient_scope`` otherwise). Use it for sensitive actions such as
        changing a password.
    """

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(view):
            async_view = cast(Callable[P, Awaitable[Any]], view)

            @functools.wraps(view)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                verify_jwt_in_request(optional=optional, fresh=fresh)
                return await async_view(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            verify_jwt_in_request(optional=optional, fresh=fresh)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def verify_jwt_in_request(*, optional: bool = False, fresh: bool = False) -> None:
    """Check the request's access token as :func:`jwt_required` does.

    For use in ``before_request`` handlers and views that decide at run time.

    The token is read from the places ``REFRESH_ACCESS_TOKEN_LOCATION`` lists. A
    token from a cookie also needs the CSRF header on POST, PUT, PATCH and DELETE.

    :raises MissingToken: no token was sent and ``optional`` is false.
    :raises InvalidToken: the token is invalid, expired or revoked.
    :raises CSRFError: a cookie carried the token of a state-changing request whose
        CSRF header is missing or wrong.
    :raises InsufficientScope: ``fresh`` is true and the token is not fresh.
    """
    if request.method == "OPTIONS":
        # Browsers send CORS preflight requests without credentials (Fetch
        # standard), so the view gets them as anonymous requests, with or
        # without optional=True.
        setattr(g, _CLAIMS_KEY, {})
        return

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = get_state(app)
    credential = find_access_token(request, state)
    if credential is None:
        if not optional:
            raise MissingToken()
        setattr(g, _CLAIMS_KEY, {})
        return

    if credential.from_cookie:
        check_csrf(request, state.settings)

    claims = decode_access_token(state.settings, credential.token, now=state.clock())
    if state.settings.check_revoked and not is_session_live(state, claims["sid"]):
        logger.debug("Access token rejected: session %s is revoked.", claims["sid"])
        raise InvalidToken("The session of this access token was revoked.")

    if fresh and not claims["fresh"]:
        raise InsufficientScope()

    request_globals = g._get_current_object()
    setattr(request_globals, _CLAIMS_KEY, claims)
    use_token_user(app, request_globals, claims)


def get_claims() -> dict[str, Any]:
    """Return the verified claims of the current request's access token.

    The dict is empty in an ``optional`` view that got no token, and in an
    ``OPTIONS`` request.

    :raises RuntimeError: called outside a view protected by :func:`jwt_required`.
    """
    claims = g.get(_CLAIMS_KEY)
    if claims is None:
        raise RuntimeError(
            "get_claims() needs a view decorated with @jwt_required() or a call to"
            " verify_jwt_in_request() first."
        )

    return cast(dict[str, Any], claims)
