"""Protecting views with access tokens: ``@jwt_required()`` and its helpers."""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from flask import Request, g, request

from .access_tokens import decode_access_token
from .errors import (
    InsufficientScope,
    InvalidToken,
    MalformedAuthorization,
    MissingToken,
)
from .extension import State, get_state
from .login_bridge import use_token_user
from .session_status import is_session_live

logger = logging.getLogger("flask_refresh")

P = ParamSpec("P")
R = TypeVar("R")

_CLAIMS_KEY = "_flask_refresh_claims"

#: RFC 6750 section 2.1: the b64token syntax of a bearer token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


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

    CORS preflight requests (``OPTIONS``) reach the view without a token. Async
    views are supported, and the decorated view keeps its signature.

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

    :raises MissingToken: no token was sent and ``optional`` is false.
    :raises InvalidToken: the token is invalid, expired or revoked.
    :raises InsufficientScope: ``fresh`` is true and the token is not fresh.
    """
    if request.method == "OPTIONS":
        return

    state = get_state()
    token = bearer_token(request, state)
    if token is None:
        if not optional:
            raise MissingToken()
        setattr(g, _CLAIMS_KEY, {})
        return

    claims = decode_access_token(state.settings, token, now=state.clock())
    if state.settings.check_revoked and not is_session_live(state, claims["sid"]):
        logger.debug("Access token rejected: session %s is revoked.", claims["sid"])
        raise InvalidToken("The session of this access token was revoked.")

    if fresh and not claims["fresh"]:
        raise InsufficientScope()

    setattr(g, _CLAIMS_KEY, claims)
    use_token_user(claims)


def get_claims() -> dict[str, Any]:
    """Return the verified claims of the current request's access token.

    The dict is empty in an ``optional`` view that got no token.

    :raises RuntimeError: called outside a view protected by :func:`jwt_required`.
    """
    claims = g.get(_CLAIMS_KEY)
    if claims is None:
        raise RuntimeError(
            "get_claims() needs a view decorated with @jwt_required() or a call to"
            " verify_jwt_in_request() first."
        )

    return cast(dict[str, Any], claims)


def bearer_token(request: Request, state: State) -> str | None:
    """Return the Bearer token of the ``Authorization`` header, or None.

    A header with another scheme (Basic, say) counts as no token.

    :raises MalformedAuthorization: the header is repeated, or names the Bearer
        scheme without a well-formed token.
    :raises InvalidToken: the token is longer than ``REFRESH_MAX_TOKEN_LENGTH``.
    """
    value = request.headers.get("Authorization")
    if value is None:
        return None

    scheme, _, credentials = value.strip().partition(" ")
    # RFC 7235 section 2.1: the scheme is case-insensitive.
    if scheme.lower() != "bearer":
        return None

    token = credentials.strip()
    if not token:
        raise MalformedAuthorization("The Authorization header has no token.")
    if len(token) > state.settings.max_token_length:
        raise InvalidToken("The access token is too long.")
    if _B64TOKEN.fullmatch(token) is None:
        # WSGI servers join repeated headers with a comma, which no token contains.
        if "," in token:
            raise MalformedAuthorization("Send one Authorization header, not several.")
        raise MalformedAuthorization("The bearer token has invalid characters.")

    return token
