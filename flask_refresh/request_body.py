"""Reading the body of a token request, at most ``REFRESH_MAX_CONTENT_LENGTH`` bytes.

Werkzeug enforces ``max_content_length`` in two ways. A ``Content-Length`` above it
raises 413 before anything is read. A body without ``Content-Length``, as with
``Transfer-Encoding: chunked``, is read through a stream that stops at the limit
and drops the rest without an error (Werkzeug 3.1). A longer chunked body would
then be parsed cut short, so a parameter after the cut would be lost. Here the
stream may read one byte past the limit, and a body that reaches that byte gets
413 like a declared one.
"""

from __future__ import annotations

from flask import Request

from .errors import AuthError, RequestTooLarge

#: The request attribute that keeps the body, or the error that reading it
#: raised, because the login throttle and the view both parse the body.
_BODY_ATTRIBUTE = "_flask_refresh_body"


def body_limit(token_request: Request) -> int:
    """Return the largest body in bytes that a token route reads.

    That is ``REFRESH_MAX_CONTENT_LENGTH``, or the request's own
    ``max_content_length`` (by default the app's ``MAX_CONTENT_LENGTH``) when
    that is lower.
    """
    from .extension import get_state

    limit = get_state().settings.max_content_length
    current = token_request.max_content_length
    return limit if current is None else min(limit, current)


def read_body(token_request: Request) -> bytes:
    """Return the whole body of ``token_request``, read once per request.

    :raises RequestTooLarge: the body is longer than :func:`body_limit`, by its
        ``Content-Length`` or by what arrived.
    """
    outcome = getattr(token_request, _BODY_ATTRIBUTE, None)
    if outcome is None:
        try:
            outcome = _read_within_limit(token_request)
        except AuthError as error:
            outcome = error
        setattr(token_request, _BODY_ATTRIBUTE, outcome)

    if isinstance(outcome, AuthError):
        raise outcome
    return outcome


def _read_within_limit(token_request: Request) -> bytes:
    limit = body_limit(token_request)
    declared = token_request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)

    # With one byte more than the limit, a body that ends at the limit differs
    # from a longer one, which Werkzeug's stream would cut without an error.
    # Werkzeug builds request.stream on first use with the max_content_length of
    # that moment, so the limit is put back after the read.
    token_request.max_content_length = limit + 1
    try:
        data = token_request.get_data(cache=True)
    finally:
        token_request.max_content_length = limit

    if len(data) > limit:
        raise _too_large(limit)
    return data


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than {limit} bytes.")
