"""The OpenAPI 3.1 description of the routes that flask-refresh adds.

The package ships ``openapi.json``, whose paths are relative to the URL prefix.
:func:`openapi_spec` returns it for one app: every path under the app's
``REFRESH_URL_PREFIX``, the length limits and login field of its config, and the
places its tokens travel in (see :mod:`flask_refresh.openapi_locations`). A host
merges that into its own document, or sets ``REFRESH_SERVE_OPENAPI = True`` to
serve it at ``<prefix>/openapi.json``.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

from flask import Flask, Response, current_app, jsonify

from .extension import get_state
from .openapi_locations import apply_token_locations

#: The file in this package that contains the document.
DOCUMENT_FILE = "openapi.json"
#: The route that serves the document when ``REFRESH_SERVE_OPENAPI`` is on,
#: relative to the URL prefix.
DOCUMENT_PATH = "/openapi.json"
#: Maximum username length that the login route accepts, as in the view.
MAX_USERNAME_LENGTH = 255


@cache
def _packaged_document() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(DOCUMENT_FILE).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def packaged_document() -> dict[str, Any]:
    """Return a copy of the packaged document, with paths relative to the prefix."""
    return copy.deepcopy(_packaged_document())


def openapi_spec(app: Flask | None = None) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the routes flask-refresh serves in ``app``.

    Each path starts with the app's ``REFRESH_URL_PREFIX``, so the document fits
    a server at the root of the app. The length limits follow
    ``REFRESH_MAX_TOKEN_LENGTH`` and ``REFRESH_MAX_PASSWORD_LENGTH``, and the login
    body names ``REFRESH_LOGIN_FIELD``. The security schemes, the refresh and
    logout bodies and the token fields of responses follow the token locations,
    header name and header type.

    :param app: the app; the current app when left out.
    :raises RuntimeError: flask-refresh is not initialised on the app.
    """
    settings = get_state(app).settings
    document = packaged_document()
    # The packaged file names the default prefix as its server; here the prefix
    # is part of every path instead.
    document.pop("servers", None)
    apply_token_locations(document, settings)

    prefix = "" if settings.url_prefix == "/" else settings.url_prefix
    paths: dict[str, Any] = document["paths"]
    if settings.serve_openapi:
        paths[DOCUMENT_PATH] = _document_route()
    document["paths"] = {prefix + path: item for path, item in paths.items()}

    schemas: dict[str, Any] = document["components"]["schemas"]
    for name in ("LoginRequest", "LoginForm"):
        login = schemas[name]
        login["properties"]["password"]["maxLength"] = settings.max_password_length
        field = settings.login_field
        if field != "username":
            login["properties"][field] = {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_USERNAME_LENGTH,
            }
            # The view accepts the configured field, or "username" as well.
            login["anyOf"] = [{"required": [field]}, {"required": ["username"]}]

    max_token = settings.max_token_length
    for name in ("RefreshRequest", "RefreshForm"):
        schemas[name]["properties"]["refresh_token"]["maxLength"] = max_token
    schemas["RevokeRequest"]["properties"]["token"]["maxLength"] = max_token
    logout = schemas["LogoutRequest"]
    logout["then"]["properties"]["refresh_token"]["maxLength"] = max_token
    logout["else"]["properties"]["token"]["maxLength"] = max_token

    return document


def _document_route() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "openapi",
            "summary": "This OpenAPI document.",
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document of these routes.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }


def install_openapi_route(app: Flask) -> None:
    """Serve :func:`openapi_spec` at ``<prefix>/openapi.json`` in ``app``."""
    prefix = get_state(app).settings.url_prefix.rstrip("/")
    # An endpoint under the blueprint's name, so that the blueprint's error
    # handlers and the JSON 405 apply to it as to the other routes. The route is
    # added to the app because the blueprint is shared by every app, and only
    # some apps serve the document.
    app.add_url_rule(
        prefix + DOCUMENT_PATH,
        endpoint="flask_refresh.openapi",
        view_func=_serve_document,
        methods=["GET"],
    )


def _serve_document() -> Response:
    return jsonify(openapi_spec(current_app._get_current_object()))  # type: ignore[attr-defined]
