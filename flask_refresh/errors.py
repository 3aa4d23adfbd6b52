"""Errors a client can cause, and the JSON responses they turn into.

Every error is a subclass of :class:`AuthError` with a status code and an OAuth error
code. One app-wide handler renders them. An app replaces the response for one case by
registering its own handler for that class, for example
``app.register_error_handler(InvalidToken, handler)``, because Flask picks the handler
of the most specific class.
"""

from __future__ import annotations

from typing import ClassVar

from flask import Response, jsonify


class AuthError(Exception):
    """Base class of the errors flask-refresh turns into HTTP responses."""

    status_code: ClassVar[int] = 400
    #: The OAuth ``error`` code of the response body.
    error: ClassVar[str] = "invalid_request"
    default_description: ClassVar[str] = "The request is invalid."

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)

    def headers(self) -> dict[str, str]:
        """Return the headers the response needs besides ``Content-Type``."""
        return {"Cache-Control": "no-store", "Pragma": "no-cache"}

    def get_response(self) -> Response:
        """Build the JSON response for this error."""
        response = jsonify(error=self.error, error_description=self.description)
        response.status_code = self.status_code
        response.headers.update(self.headers())
        return response


# Errors of the token endpoints, returned with status 400 (RFC 6749 section 5.2).


class InvalidRequest(AuthError):
    """The token request is missing a parameter or is malformed."""

    error = "invalid_request"


class InvalidGrant(AuthError):
    """The credentials or the refresh token are invalid, expired, used or revoked."""

    error = "invalid_grant"
    default_description = "The refresh token is invalid."


class UnsupportedGrantType(AuthError):
    """The ``grant_type`` is not one this endpoint serves."""

    error = "unsupported_grant_type"
    default_description = "This grant type is not supported here."


class SessionNotFound(AuthError):
    """The session does not exist, is not live, or belongs to another user."""

    status_code = 404
    error = "not_found"
    default_description = "No such session."


class CSRFError(AuthError):
    """A state-changing request authenticated by a cookie failed the CSRF check.

    The request must repeat the CSRF cookie's value in the CSRF header (the
    double-submit pattern); a cross-site page cannot read the cookie to do so.
    """

    status_code = 403
    error = "invalid_csrf_token"
    default_description = "The CSRF token is missing or does not match."


class TemporarilyUnavailable(AuthError):
    """The database failed; nothing was changed and the client may retry."""

    status_code = 503
    error = "temporarily_unavailable"
    default_description = "The service is temporarily unavailable. Retry shortly."
    retry_after_seconds: ClassVar[int] = 1

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after_seconds)}


class LoginThrottled(AuthError):
    """Too many failed logins for the submitted account or from the client address.

    The description is the same for both limits, so that the response does not
    tell which one applies.
    """

    status_code = 429
    error = "too_many_requests"
    default_description = (
        "Too many failed logins. Retry after the number of seconds in Retry-After."
    )

    def __init__(self, retry_after_seconds: int, description: str | None = None):
        super().__init__(description)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after_seconds)}


class RequestTooLarge(AuthError):
    """The body of a request to a token route is longer than allowed."""

    status_code = 413
    error = "invalid_request"
    default_description = "The request body is too large."


class MethodNotAllowed(AuthError):
    """A route of flask-refresh got a method that it does not serve."""

    status_code = 405
    error = "invalid_request"

    def __init__(self, allowed_methods: list[str]) -> None:
        self.allowed_methods = sorted(allowed_methods)
        super().__init__(
            "This route does not serve that method. Allowed methods: "
            + ", ".join(self.allowed_methods)
            + "."
        )

    def headers(self) -> dict[str, str]:
        # RFC 9110 section 15.5.6: a 405 response lists the allowed methods.
        return {**super().headers(), "Allow": ", ".join(self.allowed_methods)}


# Errors of protected resources: RFC 6750 section 3 adds a WWW-Authenticate header.


class BearerError(AuthError):
    """Base class of the errors raised by :func:`~flask_refresh.jwt_required`."""

    status_code = 401
    error = "invalid_token"
    #: Whether the ``WWW-Authenticate`` challenge names the error. RFC 6750 section
    #: 3.1 requires a bare challenge for a request without any credentials.
    challenge_names_error: ClassVar[bool] = True
    #: The realm of the challenge; set from ``REFRESH_REALM`` by the handler.
    realm: str | None = None

    def challenge(self) -> str:
        """Return the ``WWW-Authenticate`` value for this error."""
        params: list[str] = []
        if self.realm:
            params.append(f'realm="{_quote(self.realm)}"')
        if self.challenge_names_error:
            params.append(f'error="{self.error}"')
            params.append(f'error_description="{_quote(self.description)}"')

        return "Bearer " + ", ".join(params) if params else "Bearer"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": self.challenge()}


class MissingToken(BearerError):
    """The request carries no access token."""

    error = "missing_token"
    challenge_names_error = False
    default_description = "This resource needs a bearer access token."


class MalformedAuthorization(BearerError):
    """The ``Authorization`` header names the Bearer scheme but has no usable token."""

    status_code = 400
    error = "invalid_request"
    default_description = "The Authorization header is malformed."


class InvalidToken(BearerError):
    """The access token is malformed, forged, expired or revoked."""

    error = "invalid_token"
    default_description = "The access token is invalid."


class InsufficientScope(BearerError):
    """The access token is valid but not enough, for example not fresh."""

    status_code = 403
    error = "insufficient_scope"
    default_description = "This resource needs a fresh access token from a login."


def _quote(value: str) -> str:
    # RFC 6750 section 3 allows only printable ASCII without '"' and '\' in these
    # parameters, so anything else is replaced rather than escaped.
    return "".join(
        char if 0x20 <= ord(char) <= 0x7E and char not in '"\\' else "?"
        for char in value
    )
