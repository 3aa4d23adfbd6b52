"""The token routes: login, refresh, logout and revocation."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from . import signals
from .access_tokens import decode_access_token, encode_access_token
from .cookies import (
    check_csrf,
    clear_token_cookies,
    may_set_cookies,
    set_token_cookies,
    tokens_fit_in_body,
    uses_cookies,
)
from .credentials import find_refresh_token
from .errors import InvalidGrant, InvalidRequest, InvalidToken
from .extension import State, get_state
from .rotation import rotate
from .store import (
    ClientInfo,
    IssuedRefreshToken,
    RevokeReason,
    family_of_token,
    issue_family,
    revoke_family,
    session_owner,
)
from .token_request import TokenRequest
from .tokens import is_well_formed

logger = logging.getLogger("flask_refresh")

#: Longest accepted username; longer ones cannot exist and are not looked up.
MAX_USERNAME_LENGTH = 255

blueprint = Blueprint("flask_refresh", __name__)


def empty_response(status: int) -> Response:
    """Return a response with no body and, since it has none, no Content-Type."""
    response = current_app.response_class(status=status)
    del response.headers["Content-Type"]
    return response


def client_info() -> ClientInfo:
    """Describe the client of the current request for the session list."""
    return ClientInfo(
        user_agent=request.user_agent.string or None,
        ip_address=request.remote_addr,
    )


def token_response(
    state: State, issued: IssuedRefreshToken, now: datetime, *, with_cookies: bool
) -> Response:
    """Build the RFC 6749 section 5.1 response for a new token pair.

    A token that travels in a cookie is set as a cookie when ``with_cookies`` is
    true (see :func:`cookies_allowed`). It is left out of the JSON body when no
    other configured place needs it there, so that scripts on the page cannot
    read it.
    """
    settings = state.settings
    access = encode_access_token(
        settings,
        subject=issued.subject,
        session_id=issued.family_id,
        fresh=issued.fresh,
        now=now,
        jti=issued.jwt_id,
        additional_claims=issued.claims,
    )
    refresh_expires_in = _seconds_until(issued.expires_at, now)
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "expires_in": access.expires_in,
        "refresh_expires_in": refresh_expires_in,
        "session_expires_in": _seconds_until(issued.session_expires_at, now),
    }
    if set(settings.access_token_location) != {"cookies"}:
        body["access_token"] = access.token
    if "body" in settings.refresh_token_location:
        body["refresh_token"] = issued.token

    response = jsonify(body)
    if with_cookies:
        set_token_cookies(
            response,
            settings,
            access_token=access.token,
            access_max_age=access.expires_in,
            refresh_token=issued.token,
            refresh_max_age=refresh_expires_in,
        )
    # RFC 6749 section 5.1: responses carrying tokens must not be cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def cookies_allowed(state: State) -> bool:
    """Decide whether the token response to this request may set cookies.

    Call it before anything changes. A request that another site's page could
    send (see :func:`~flask_refresh.cookies.may_set_cookies`) gets its tokens in
    the JSON body only, which that page cannot read.

    :raises InvalidRequest: such a request, where a token travels in cookies
        only and so would have nowhere to go.
    """
    settings = state.settings
    if not uses_cookies(settings) or may_set_cookies(request, settings):
        return True

    if not tokens_fit_in_body(settings):
        raise InvalidRequest(
            "Send this request as JSON (Content-Type: application/json). This app"
            " returns tokens in cookies, which are set only for JSON requests and"
            " requests with the CSRF header."
        )
    return False


def _seconds_until(instant: datetime, now: datetime) -> int:
    return max(0, int((instant - now).total_seconds()))


@blueprint.post("/login")
def login() -> Response:
    """Exchange a username and password for a new session's tokens."""
    state = get_state()
    params = TokenRequest.from_request(request)
    params.require_grant_type("password")
    username = params.string(
        state.settings.login_field, "username", max_length=MAX_USERNAME_LENGTH
    )
    password = params.string("password", max_length=state.settings.max_password_length)
    with_cookies = cookies_allowed(state)

    user = state.auth.authenticate(username, password)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if user is None:
        logger.debug("Login failed.")
        signals.login_failed.send(app, username=username)
        # The same response for unknown users, wrong passwords and inactive users,
        # so that it does not reveal which accounts exist.
        raise InvalidGrant("The username or password is incorrect.")

    now = state.clock()
    issued = issue_family(
        state,
        user,
        now=now,
        client=client_info(),
        claims=state.auth.additional_claims_for(user),
    )
    signals.login_succeeded.send(
        app, user_id=issued.user_id, family_id=issued.family_id
    )
    return token_response(state, issued, now, with_cookies=with_cookies)


@blueprint.post("/refresh")
def refresh() -> Response:
    """Rotate a refresh token: spend it and return its successor."""
    state = get_state()
    credential = find_refresh_token(
        request, state, "refresh_token", grant_type="refresh_token"
    )
    if credential is None:
        raise InvalidRequest("The request carries no refresh token.")
    if credential.from_cookie:
        # A request that passes the CSRF check may get cookies.
        check_csrf(request, state.settings)
        with_cookies = True
    else:
        with_cookies = cookies_allowed(state)

    now = state.clock()
    issued = rotate(state, credential.token, now=now, client=client_info())
    return token_response(state, issued, now, with_cookies=with_cookies)


@blueprint.post("/logout")
def logout() -> Response:
    """Revoke the family of a refresh token, and clear the token cookies.

    The response is 204 whether or not the token was known, as for RFC 7009
    revocation, so that it reveals nothing to an attacker and a client can always
    forget its tokens. With cookies configured, a request without any refresh
    token also gets 204. The cookies are cleared only for a request that another
    site's page cannot send (see :func:`~flask_refresh.cookies.may_set_cookies`),
    so that such a page cannot log the browser out.
    """
    state = get_state()
    settings = state.settings
    response = empty_response(204)
    credential = find_refresh_token(request, state, "refresh_token", "token")
    from_cookie = credential is not None and credential.from_cookie
    if from_cookie:
        check_csrf(request, settings)
    if uses_cookies(settings) and (from_cookie or may_set_cookies(request, settings)):
        clear_token_cookies(response, settings)

    if credential is None:
        return response

    presented = credential.token
    if is_well_formed(presented):
        found = family_of_token(state, presented)
        if found is not None:
            family_id, user_id = found
            revoke_family(
                state,
                family_id,
                reason=RevokeReason.LOGOUT,
                now=state.clock(),
                user_id=user_id,
            )

    return response


@blueprint.post("/revoke")
def revoke() -> Response:
    """Revoke a refresh or access token, as RFC 7009 describes.

    Either kind revokes the whole session it belongs to. The response is 200 for
    unknown and invalid tokens too (RFC 7009 section 2.2). No client
    authentication is asked for: holding a token is what entitles a client to
    revoke it.
    """
    state = get_state()
    params = TokenRequest.from_request(request)
    presented = params.string("token", max_length=state.settings.max_token_length)
    hint = params.params.get("token_type_hint")

    # RFC 7009 section 2.1: the hint decides which kind is tried first; an
    # unknown hint is ignored.
    if hint == "access_token":
        found = _session_of_access_token(state, presented) or _session_of_refresh_token(
            state, presented
        )
    else:
        found = _session_of_refresh_token(state, presented) or _session_of_access_token(
            state, presented
        )

    if found is not None:
        family_id, user_id = found
        revoke_family(
            state,
            family_id,
            reason=RevokeReason.REVOKED,
            now=state.clock(),
            user_id=user_id,
        )

    return empty_response(200)


def _session_of_refresh_token(state: State, token: str) -> tuple[str, Any] | None:
    if not is_well_formed(token):
        return None

    return family_of_token(state, token)


def _session_of_access_token(state: State, token: str) -> tuple[str, Any] | None:
    try:
        claims = decode_access_token(state.settings, token, now=state.clock())
    except InvalidToken:
        return None

    session_id = claims["sid"]
    user_id = session_owner(state, session_id)
    return None if user_id is None else (session_id, user_id)
