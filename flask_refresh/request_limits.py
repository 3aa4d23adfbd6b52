"""Limits on what the routes of flask-refresh accept: body size and methods.

The token routes read at most ``REFRESH_MAX_CONTENT_LENGTH`` bytes of body; a
longer one gets 413 before it is read. A method that a route does not serve gets
405 with an ``Allow`` header. Both responses are JSON, like every other error of
the routes, where Flask would return an HTML page.
"""

from __future__ import annotations

from flask import Flask, Request, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.routing import Rule

from .errors import MethodNotAllowed, RequestTooLarge
from .extension import get_state
from .views import blueprint


def limit_body_size(token_request: Request) -> None:
    """Make ``token_request`` refuse a body above ``REFRESH_MAX_CONTENT_LENGTH``.

    Call it before the body is read. The app's ``MAX_CONTENT_LENGTH`` still
    applies when it is lower. Werkzeug then raises
    :class:`~werkzeug.exceptions.RequestEntityTooLarge` on reading the body, from
    the ``Content-Length`` header when there is one, so that a declared oversized
    body is never read.
    """
    limit = get_state().settings.max_content_length
    current = token_request.max_content_length
    if current is None or current > limit:
        token_request.max_content_length = limit


@blueprint.errorhandler(RequestEntityTooLarge)
def _body_too_large(error: RequestEntityTooLarge) -> Response:
    limit = request.max_content_length
    description = f"The request body is larger than {limit} bytes." if limit else None
    return RequestTooLarge(description).get_response()


def install_method_check(app: Flask) -> None:
    """Return a JSON 405 for a method that a route of the blueprint does not serve."""
    app.before_request(_reject_unserved_method)


def _reject_unserved_method() -> None:
    # Routing failed before any view or blueprint was chosen, so a blueprint
    # error handler never receives this 405. Before-request functions still run,
    # with the routing error in request.routing_exception.
    error = request.routing_exception
    if not isinstance(error, WerkzeugMethodNotAllowed) or not error.valid_methods:
        return

    methods = list(error.valid_methods)
    if _is_blueprint_path(methods[0]):
        raise MethodNotAllowed(methods)


def _is_blueprint_path(served_method: str) -> bool:
    """Return whether the request's path, with a method it serves, is ours."""
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return False

    try:
        rule, _ = adapter.match(method=served_method, return_rule=True)
    except HTTPException:
        return False

    endpoint = rule.endpoint if isinstance(rule, Rule) else str(rule)
    return bool(endpoint.startswith(f"{blueprint.name}."))
