"""Finding a request's access or refresh token in the configured places.

``REFRESH_ACCESS_TOKEN_LOCATION`` and ``REFRESH_REFRESH_TOKEN_LOCATION`` list the
places in order of precedence. The first place that carries a token is used and the
others are ignored, so a request with both an ``Authorization`` header and a token
cookie is authenticated by whichever comes first in the list. Where the token came
from decides whether the request needs the CSRF check: only cookies do.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from flask import Request, after_this_request
from werkzeug.wrappers import Response

from .cookies import single_cookie
from .errors import InvalidRequest, InvalidToken, MalformedAuthorization
from .token_request import TokenRequest

if TYPE_CHECKING:
    from .extension import State

#: RFC 6750 section 2.1: the b64token syntax of a bearer token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

#: RFC 6750 section 2.3 names the query parameter of an access token.
QUERY_PARAMETER = "access_token"


class Credential(NamedTuple):
    """A token found in a request, and the place it was found in.

    A named tuple because one is built for every protected request, and a tuple
    is cheaper to build than a frozen dataclass.
    """

    token: str
    #: One of "headers", "cookies", "query_string" or "body".
    location: str

    @property
    def from_cookie(self) -> bool:
        """Whether the browser may have sent it on its own, so CSRF applies."""
        return self.location == "cookies"


def find_access_token(request: Request, state: State) -> Credential | None:
    """Return the access token from the first configured place that has one.

    :raises MalformedAuthorization: the header names the configured scheme but
        carries no well-formed token, or the query parameter or the cookie is
        repeated.
    :raises InvalidToken: the token is longer than ``REFRESH_MAX_TOKEN_LENGTH``.
    """
    settings = state.settings
    for location in settings.access_token_location:
        token: str | None
        if location == "headers":
            token = bearer_token(request, state)
        elif location == "cookies":
            token = _cookie_token(request, state, settings.access_cookie_name)
        else:
            token = _query_token(request, state)

        if token is not None:
            return Credential(token, location)

    return None


def bearer_token(request: Request, state: State) -> str | None:
    """Return the token of the ``REFRESH_HEADER_NAME`` header, or None.

    The header carries ``REFRESH_HEADER_TYPE`` and the token, or the token alone
    when the type is empty. A header with another scheme (Basic, say) counts as no
    token.

    :raises MalformedAuthorization: the header is repeated, or names the scheme
        without a well-formed token.
    :raises InvalidToken: the token is longer than ``REFRESH_MAX_TOKEN_LENGTH``.
    """
    settings = state.settings
    value = request.environ.get(_environ_key(settings.header_name))
    if value is None:
        return None

    if settings.header_type:
        scheme, _, credentials = value.strip().partition(" ")
        # RFC 7235 section 2.1: the scheme is case-insensitive.
        if scheme.lower() != settings.header_type.lower():
            return None
    else:
        credentials = value

    token = credentials.strip()
    if not token:
        raise MalformedAuthorization(f"The {settings.header_name} header has no token.")
    return _checked_token(token, state, f"Send one {settings.header_name} header")


@lru_cache(maxsize=8)
def _environ_key(header_name: str) -> str:
    """Return the WSGI environ key of a request header, as Werkzeug derives it.

    Reading the environ directly skips the name conversion that
    ``request.headers.get`` repeats on every request.
    """
    key = header_name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


def _cookie_token(request: Request, state: State, name: str) -> str | None:
    token = single_cookie(request, name, MalformedAuthorization)
    if not token:
        return None

    if len(token) > state.settings.max_token_length:
        raise InvalidToken("The access token is too long.")
    if _B64TOKEN.fullmatch(token) is None:
        raise InvalidToken(f"The {name} cookie has invalid characters.")

    return token


def _query_token(request: Request, state: State) -> str | None:
    values = request.args.getlist(QUERY_PARAMETER)
    if not values:
        return None
    if len(values) > 1:
        raise MalformedAuthorization(f"Send one {QUERY_PARAMETER} parameter.")

    token = _checked_token(
        values[0].strip(), state, f"Send one {QUERY_PARAMETER} parameter"
    )

    # RFC 6750 section 2.3: a response to a request with the token in its URL
    # should be marked private, so that shared caches do not keep it.
    @after_this_request
    def mark_private(response: Response) -> Response:
        response.cache_control.private = True
        return response

    return token


def _checked_token(token: str, state: State, repeated_hint: str) -> str:
    if not token:
        raise MalformedAuthorization("The access token is empty.")
    if len(token) > state.settings.max_token_length:
        raise InvalidToken("The access token is too long.")
    if _B64TOKEN.fullmatch(token) is None:
        # WSGI servers join repeated headers with a comma, which no token contains.
        if "," in token:
            raise MalformedAuthorization(f"{repeated_hint}, not several.")
        raise MalformedAuthorization("The bearer token has invalid characters.")

    return token


def find_refresh_token(
    request: Request, state: State, *names: str, grant_type: str | None = None
) -> Credential | None:
    """Return the refresh token from the first configured place that has one.

    With "body" alone, the default, the body must be a token request that names
    the token. When cookies are configured too, a request without a body is fine,
    because the refresh cookie may carry the token.

    :param names: the body parameters that may carry the token, in order.
    :param grant_type: the ``grant_type`` a body must name, if it names one.
    :raises InvalidRequest: the body is malformed, "body" is the only place and
        it has no token, or the refresh cookie is repeated.
    :raises UnsupportedGrantType: the body names another grant type.
    """
    settings = state.settings
    max_length = settings.max_token_length
    if settings.refresh_token_location == ("body",):
        params = _token_request(request, grant_type)
        return Credential(params.string(*names, max_length=max_length), "body")

    for location in settings.refresh_token_location:
        if location == "cookies":
            token = single_cookie(request, settings.refresh_cookie_name)
            if token:
                # Longer tokens are never issued, so the lookup is skipped.
                if len(token) > max_length:
                    raise InvalidRequest("The refresh token cookie is too long.")
                return Credential(token, "cookies")
        elif _has_body(request):
            params = _token_request(request, grant_type)
            if any(name in params.params for name in names):
                return Credential(params.string(*names, max_length=max_length), "body")

    return None


def _token_request(request: Request, grant_type: str | None) -> TokenRequest:
    params = TokenRequest.from_request(request)
    if grant_type is not None:
        params.require_grant_type(grant_type)
    return params


def _has_body(request: Request) -> bool:
    # fetch() sends a POST without a body with Content-Length: 0.
    return bool(request.content_length) or "Transfer-Encoding" in request.headers
