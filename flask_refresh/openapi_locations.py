"""The parts of the OpenAPI document that follow the token location settings.

The packaged ``openapi.json`` describes the defaults: access tokens in the
``Authorization`` header as Bearer tokens, refresh tokens in the request body.
:func:`apply_token_locations` rewrites it for an app's
``REFRESH_ACCESS_TOKEN_LOCATION``, ``REFRESH_HEADER_NAME``,
``REFRESH_HEADER_TYPE`` and ``REFRESH_REFRESH_TOKEN_LOCATION``: the security
schemes and requirements, the request bodies of refresh and logout, the form
bodies that cookie modes reject, and the token fields of the response body.
"""

from __future__ import annotations

from typing import Any

from .cookies import STATE_CHANGING_METHODS, tokens_fit_in_body, uses_cookies
from .credentials import QUERY_PARAMETER
from .settings import Settings

#: Names of the security schemes in ``components.securitySchemes``.
BEARER_SCHEME = "bearerAuth"
ACCESS_HEADER_SCHEME = "accessTokenHeader"
ACCESS_COOKIE_SCHEME = "accessTokenCookie"
ACCESS_QUERY_SCHEME = "accessTokenQuery"
REFRESH_COOKIE_SCHEME = "refreshTokenCookie"
CSRF_COOKIE_SCHEME = "csrfCookie"
CSRF_HEADER_SCHEME = "csrfHeader"
#: The schemes that a state-changing request authenticated by a cookie needs
#: besides that cookie: the CSRF cookie and the header that repeats it.
CSRF_REQUIREMENT: dict[str, list[str]] = {
    CSRF_COOKIE_SCHEME: [],
    CSRF_HEADER_SCHEME: [],
}

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"

#: The operations that read a refresh token, by path relative to the prefix.
REFRESH_TOKEN_PATHS = ("/refresh", "/logout")


def apply_token_locations(document: dict[str, Any], settings: Settings) -> None:
    """Rewrite ``document``, whose paths are still relative, for ``settings``."""
    schemes: dict[str, Any] = document["components"]["securitySchemes"]
    schemes.clear()
    if uses_cookies(settings):
        schemes[CSRF_COOKIE_SCHEME] = {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.csrf_cookie_name,
            "description": (
                "The CSRF cookie that /login and /refresh set, which scripts read"
                f" to send it in the {settings.csrf_header_name} header."
            ),
        }
        schemes[CSRF_HEADER_SCHEME] = {
            "type": "apiKey",
            "in": "header",
            "name": settings.csrf_header_name,
            "description": (
                f"The value of the {settings.csrf_cookie_name} cookie. A POST, PUT,"
                " PATCH or DELETE request that a token cookie authenticates needs it."
            ),
        }

    _apply_access_locations(document, settings, schemes)
    _apply_refresh_locations(document, settings, schemes)
    _apply_cookie_rules(document, settings)
    _apply_token_fields(document, settings)


def _apply_access_locations(
    document: dict[str, Any], settings: Settings, schemes: dict[str, Any]
) -> None:
    # Each entry is one way to authenticate: the scheme of the token, and
    # whether a state-changing request needs the CSRF cookie and header with it.
    alternatives: list[tuple[str, bool]] = []
    for location in settings.access_token_location:
        if location == "headers":
            name = _add_header_scheme(settings, schemes)
            alternatives.append((name, False))
        elif location == "cookies":
            schemes[ACCESS_COOKIE_SCHEME] = {
                "type": "apiKey",
                "in": "cookie",
                "name": settings.access_cookie_name,
                "description": "The access token cookie that /login and /refresh set.",
            }
            alternatives.append((ACCESS_COOKIE_SCHEME, True))
        else:
            schemes[ACCESS_QUERY_SCHEME] = {
                "type": "apiKey",
                "in": "query",
                "name": QUERY_PARAMETER,
                "description": "An access token in the query string (RFC 6750 "
                "section 2.3).",
            }
            alternatives.append((ACCESS_QUERY_SCHEME, False))

    for item in document["paths"].values():
        for method, operation in item.items():
            if "security" not in operation:
                continue

            needs_csrf = method.upper() in STATE_CHANGING_METHODS
            requirements: list[dict[str, list[str]]] = []
            for name, with_csrf in alternatives:
                requirement: dict[str, list[str]] = {name: []}
                if with_csrf and needs_csrf:
                    requirement |= CSRF_REQUIREMENT
                requirements.append(requirement)
            operation["security"] = requirements


def _add_header_scheme(settings: Settings, schemes: dict[str, Any]) -> str:
    """Add the scheme of the access token header and return its name."""
    is_bearer = settings.header_type.lower() == "bearer"
    if settings.header_name.lower() == "authorization" and is_bearer:
        schemes[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "An access token from /login or /refresh, in the Authorization"
                " header (RFC 6750)."
            ),
        }
        return BEARER_SCHEME

    # OpenAPI's http scheme names only the Authorization header, so another
    # header or scheme is an API key header.
    if settings.header_type:
        form = f'"{settings.header_type} <token>"'
    else:
        form = "the token alone, without a scheme"
    schemes[ACCESS_HEADER_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": settings.header_name,
        "description": f"An access token from /login or /refresh, as {form}.",
    }
    return ACCESS_HEADER_SCHEME


def _apply_refresh_locations(
    document: dict[str, Any], settings: Settings, schemes: dict[str, Any]
) -> None:
    locations = settings.refresh_token_location
    if "cookies" not in locations:
        return

    schemes[REFRESH_COOKIE_SCHEME] = {
        "type": "apiKey",
        "in": "cookie",
        "name": settings.refresh_cookie_name,
        "description": (
            "The refresh token cookie that /login and /refresh set, on the path"
            " of these routes."
        ),
    }
    for path in REFRESH_TOKEN_PATHS:
        operation = document["paths"][path]["post"]
        requirements: list[dict[str, list[str]]] = [
            {REFRESH_COOKIE_SCHEME: [], **CSRF_REQUIREMENT}
        ]
        # The empty requirement: no cookie, for a token in the body, or for a
        # logout without any token, which is a 204 too.
        if "body" in locations or path == "/logout":
            requirements.append({})
        operation["security"] = requirements

        if "body" in locations:
            operation["requestBody"]["required"] = False
        else:
            # The body is not read at all.
            del operation["requestBody"]


def _apply_cookie_rules(document: dict[str, Any], settings: Settings) -> None:
    if not uses_cookies(settings):
        return

    # A form-encoded login or refresh gets no cookies, so where a token travels
    # in cookies only it is rejected with 400 (see views.cookies_allowed).
    if not tokens_fit_in_body(settings):
        for path in ("/login", "/refresh"):
            body = document["paths"][path]["post"].get("requestBody")
            if body is not None:
                body["content"].pop(FORM_MEDIA_TYPE, None)

    headers = document["components"]["responses"]["Tokens"]["headers"]
    headers["Set-Cookie"] = {
        "description": (
            "The token cookies and a new CSRF cookie, for a JSON request or one"
            " with the CSRF header."
        ),
        "schema": {"type": "string"},
    }


def _apply_token_fields(document: dict[str, Any], settings: Settings) -> None:
    # The body carries a token exactly when a place other than cookies is
    # configured for it, whatever the request (see views.token_response).
    schema = document["components"]["schemas"]["TokenResponse"]
    if set(settings.access_token_location) == {"cookies"}:
        del schema["properties"]["access_token"]
    else:
        schema["required"].append("access_token")

    if "body" in settings.refresh_token_location:
        schema["required"].append("refresh_token")
    else:
        del schema["properties"]["refresh_token"]
