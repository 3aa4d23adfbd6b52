"""Reading the body of a token request, at most ``REFRESH_MAX_CONTENT_LENGTH`` bytes.

Werkzeug enforces ``max_content_length`` in two ways. A ``Content-Length`` above it
raises 413 before anything is read. A body without ``Content-Length``, as with
``Transfer-Encoding: chunked``, is read through a stream that stops at the limit
and drops the rest without an error (Werkzeug 3.1). A longer chunked body would
then be parsed cut short, so a parameter after the cut would be lost. Here the
stream may read one byte past the limit, and a body that reaches that byte gets
413 like a declared one.

The WSGI server decodes chunked bodies, and its errors reach the app while the
body is read. Werkzeug turns an ``OSError`` or ``ValueError`` of the server's
stream into :class:`~werkzeug.exceptions.ClientDisconnected`. Gunicorn's errors
for a malformed chunked body (``InvalidChunkSize``, ``ChunkMissingTerminator``
and the other subclasses of ``gunicorn.http.errors.ParseException``, gunicorn 27)
derive from ``Exception`` alone, so they pass through. Both become 400
``invalid_request``.
"""

from __future__ import annotations

import logging
import sys

from flask import Request
from werkzeug.exceptions import ClientDisconnected

from .errors import AuthError, InvalidRequest, RequestTooLarge

logger = logging.getLogger("flask_refresh")

#: The request attribute that keeps the body, or the error that reading it
#: raised, because the login throttle and the view both parse the body. Reading
#: a server's stream again after an error could return the bytes after the
#: point of failure as if they were a whole body.
_BODY_ATTRIBUTE = "_flask_refresh_body"

_GUNICORN_ERRORS_MODULE = "gunicorn.http.errors"


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
    :raises InvalidRequest: the server could not read the body, because its
        chunked encoding is malformed or the client disconnected.
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

    unreadable: tuple[type[Exception], ...] = (
        ClientDisconnected,
        *_server_parse_errors(),
    )
    # With one byte more than the limit, a body that ends at the limit differs
    # from a longer one, which Werkzeug's stream would cut without an error.
    # Werkzeug builds request.stream on first use with the max_content_length of
    # that moment, so the limit is put back after the read.
    token_request.max_content_length = limit + 1
    try:
        data = token_request.get_data(cache=True)
    except unreadable as error:
        logger.info("Token request body could not be read: %s.", type(error).__name__)
        raise InvalidRequest(
            "The request body could not be read: its chunked encoding is"
            " malformed, or it ended early."
        ) from None
    finally:
        token_request.max_content_length = limit

    if len(data) > limit:
        raise _too_large(limit)
    return data


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than {limit} bytes.")


def _server_parse_errors() -> tuple[type[Exception], ...]:
    # An error of gunicorn exists only if gunicorn imported its module, so an app
    # served by another server never imports gunicorn here.
    module = sys.modules.get(_GUNICORN_ERRORS_MODULE)
    parse_error = getattr(module, "ParseException", None)
    if isinstance(parse_error, type) and issubclass(parse_error, Exception):
        return (parse_error,)
    return ()
