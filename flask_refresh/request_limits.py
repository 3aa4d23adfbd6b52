"""Limits on what the routes of flask-refresh accept: body size and methods.

The token routes read at most ``REFRESH_MAX_CONTENT_LENGTH`` bytes of body (see
:mod:`flask_refresh.request_body`); a longer one gets 413. A method that a route
does not serve gets 405 with an ``Allow`` header. Both responses are JSON, like
every other error of the routes, where Flask would return an HTML page.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.routing import Rule

from .errors import MethodNotAllowed, RequestTooLarge
from .views import blueprint


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
