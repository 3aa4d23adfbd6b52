"""Token cookies for browsers: setting, clearing, and the double-submit CSRF check.

Three cookies, each only when ``REFRESH_ACCESS_TOKEN_LOCATION`` or
``REFRESH_REFRESH_TOKEN_LOCATION`` lists "cookies":

* the access token, HttpOnly, on ``REFRESH_ACCESS_COOKIE_PATH`` ("/" by default);
* the refresh token, HttpOnly, on ``REFRESH_URL_PREFIX``. A cookie has one Path, and
  the refresh and logout routes share only the prefix, so the prefix is the
  narrowest path that both receive it on;
* a CSRF token, readable by scripts, on "/" so that every page of the app can read
  it. A state-changing request authenticated by a cookie must repeat it in the
  ``REFRESH_CSRF_HEADER_NAME`` header. A cross-site page can make the browser send
  the cookies but cannot read them, so it cannot send the header.

A response sets or clears these cookies only for a request that a page of another
site cannot send: one with a JSON body, or one whose CSRF header matches the CSRF
cookie (see :func:`may_set_cookies`).

Every cookie gets the same Domain, Secure and SameSite attributes, and clearing a
cookie repeats the attributes it was set with, because browsers keep a cookie that
a Set-Cookie with another Path or Domain tries to delete.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Request, Response

from .errors import AuthError, CSRFError, InvalidRequest
from .settings import Settings

#: Methods that may change state, so a cookie-authenticated request with one of
#: them needs the CSRF header. GET, HEAD and OPTIONS must not change state.
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSRF_TOKEN_BYTES = 32


def uses_access_cookie(settings: Settings) -> bool:
    """Return whether access tokens travel in a cookie."""
    return "cookies" in settings.access_token_location


def uses_refresh_cookie(settings: Settings) -> bool:
    """Return whether refresh tokens travel in a cookie."""
    return "cookies" in settings.refresh_token_location


def uses_cookies(settings: Settings) -> bool:
    """Return whether any token travels in a cookie, so the CSRF cookie is needed."""
    return uses_access_cookie(settings) or uses_refresh_cookie(settings)


def may_set_cookies(request: Request, settings: Settings) -> bool:
    """Return whether the response to ``request`` may set or clear token cookies.

    A page of another site can make the browser POST a form-encoded or
    text/plain body without asking first. If the response to such a login set
    cookies, the victim's browser would be signed in to the attacker's account
    (login CSRF). If a logout cleared them, any site could log the victim out.
    A JSON body needs a CORS preflight that the app has to allow, and a CSRF
    header that matches the CSRF cookie needs a script that can read the app's
    cookies, so neither can come from another site.

    :raises InvalidRequest: the CSRF cookie appears more than once.
    """
    if request.is_json:
        return True

    header = request.headers.get(settings.csrf_header_name)
    cookie = single_cookie(request, settings.csrf_cookie_name)
    if not header or not cookie:
        return False
    return _same_token(header, cookie)


def tokens_fit_in_body(settings: Settings) -> bool:
    """Return whether a token response can carry both tokens without cookies.

    That needs a place other than cookies for each token: "headers" or
    "query_string" for the access token, "body" for the refresh token.
    """
    return "body" in settings.refresh_token_location and any(
        location != "cookies" for location in settings.access_token_location
    )


def single_cookie(
    request: Request, name: str, error: type[AuthError] = InvalidRequest
) -> str | None:
    """Return the value of the cookie ``name``, or None when the request has none.

    A browser sends two cookies of one name when a second one was set for
    another Path or Domain, for example by a sibling subdomain for the parent
    domain on a more specific Path. It sends the one with the longer Path first
    (RFC 6265 section 5.4), and Werkzeug reads the first, so the injected cookie
    would win. The server
    cannot tell which one it set, so it uses neither.

    :raises AuthError: an ``error`` (400 ``invalid_request`` by default), when
        the cookie appears more than once.
    """
    values = request.cookies.getlist(name)
    if len(values) > 1:
        raise error(f"Send one {name} cookie, not several.")

    return values[0] if values else None


def refresh_cookie_path(settings: Settings) -> str:
    """Return the Path of the refresh cookie: the prefix of the token routes."""
    return settings.url_prefix


def set_token_cookies(
    response: Response,
    settings: Settings,
    *,
    access_token: str,
    access_max_age: int,
    refresh_token: str,
    refresh_max_age: int,
) -> None:
    """Set the cookies of a new token pair, and a new CSRF token, on ``response``.

    Each cookie lives as long as its token. The CSRF cookie lives as long as the
    longest of them, because every cookie-authenticated request needs it.
    """
    csrf_max_age = 0
    if uses_access_cookie(settings):
        _set(
            response,
            settings,
            settings.access_cookie_name,
            access_token,
            path=settings.access_cookie_path,
            max_age=access_max_age,
            httponly=True,
        )
        csrf_max_age = access_max_age

    if uses_refresh_cookie(settings):
        _set(
            response,
            settings,
            settings.refresh_cookie_name,
            refresh_token,
            path=refresh_cookie_path(settings),
            max_age=refresh_max_age,
            httponly=True,
        )
        csrf_max_age = max(csrf_max_age, refresh_max_age)

    if uses_cookies(settings):
        _set(
            response,
            settings,
            settings.csrf_cookie_name,
            secrets.token_urlsafe(CSRF_TOKEN_BYTES),
            path="/",
            max_age=csrf_max_age,
            httponly=False,
        )


def clear_token_cookies(response: Response, settings: Settings) -> None:
    """Expire every cookie that :func:`set_token_cookies` sets (Max-Age=0)."""
    cookies: list[tuple[str, str, bool]] = []
    if uses_access_cookie(settings):
        cookies.append((settings.access_cookie_name, settings.access_cookie_path, True))
    if uses_refresh_cookie(settings):
        cookies.append(
            (settings.refresh_cookie_name, refresh_cookie_path(settings), True)
        )
    if uses_cookies(settings):
        cookies.append((settings.csrf_cookie_name, "/", False))

    for name, path, httponly in cookies:
        response.delete_cookie(
            name,
            path=path,
            domain=settings.cookie_domain,
            secure=settings.cookie_secure,
            httponly=httponly,
            samesite=settings.cookie_samesite,
        )


def check_csrf(request: Request, settings: Settings) -> None:
    """Require the CSRF header to match the CSRF cookie on a state-changing request.

    Call it only when a cookie authenticated the request: a token from a header or
    a request body is not sent by the browser on its own, so it needs no check.

    :raises CSRFError: the method may change state and the header or the cookie
        is missing, or they differ.
    :raises InvalidRequest: the CSRF cookie appears more than once.
    """
    if request.method not in STATE_CHANGING_METHODS:
        return

    header = request.headers.get(settings.csrf_header_name)
    cookie = single_cookie(request, settings.csrf_cookie_name)
    if not header:
        raise CSRFError(f"The {settings.csrf_header_name} header is missing.")
    if not cookie:
        raise CSRFError(f"The {settings.csrf_cookie_name} cookie is missing.")

    if not _same_token(header, cookie):
        raise CSRFError(
            f"The {settings.csrf_header_name} header does not match the"
            f" {settings.csrf_cookie_name} cookie."
        )


def _same_token(header: str, cookie: str) -> bool:
    # A constant-time comparison, so that response times do not reveal how much
    # of a guessed token is right. surrogatepass encodes any str, one to one.
    return hmac.compare_digest(
        header.encode("utf-8", "surrogatepass"),
        cookie.encode("utf-8", "surrogatepass"),
    )


def _set(
    response: Response,
    settings: Settings,
    name: str,
    value: str,
    *,
    path: str,
    max_age: int,
    httponly: bool,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        domain=settings.cookie_domain,
        secure=settings.cookie_secure,
        httponly=httponly,
        samesite=settings.cookie_samesite,
    )
