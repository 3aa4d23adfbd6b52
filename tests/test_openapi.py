"""The OpenAPI 3.1 description of the token routes, and schemathesis against it.

The document is validated with openapi-spec-validator and compared with the
routes the app really has. Then schemathesis generates requests from it and sends
them to the example app under gunicorn on 127.0.0.1, once per database, checking
that no response is a server error or breaks the description.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD, create_user
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from test_e2e_gunicorn import (
    REPO_ROOT,
    USERNAME,
    VENV_BIN,
    Server,
    example_app_environment,
    run_flask,
    stop,
    wait_until_ready,
)

from flask_refresh import openapi_spec
from flask_refresh.openapi import packaged_document

#: Requests per operation and phase. About 800 requests in all, which take well
#: under a minute per database on a 2-core machine.
MAX_EXAMPLES = 50
SCHEMATHESIS_TIMEOUT_SECONDS = 300
#: The checks that need no knowledge beyond the document. positive_data_acceptance
#: is left out because a valid-looking login with a made-up password must fail.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
]
#: schemathesis counts only these statuses as rejecting invalid data; 413 is
#: added because an oversized body is rejected before it is parsed.
SCHEMATHESIS_CONFIG = """\
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", \
"422", "428", "429"]
"""
#: Methods that Flask serves itself for every route.
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}


def test_packaged_document_is_valid() -> None:
    validate(packaged_document())


def test_document_of_app_is_valid(app: Flask) -> None:
    validate(openapi_spec(app))


def routes_of(app: Flask, prefix: str) -> set[tuple[str, str]]:
    """Return (path, method) of every flask-refresh route, in OpenAPI syntax."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("flask_refresh."):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        assert path.startswith(prefix)
        for method in (rule.methods or set()) - AUTOMATIC_METHODS:
            routes.add((path, method.lower()))
    return routes


def documented(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {(path, method) for path, item in paths.items() for method in item}


@pytest.mark.parametrize(
    "config_overrides",
    [
        {},
        {"REFRESH_URL_PREFIX": "/api/v1/auth", "REFRESH_SERVE_OPENAPI": True},
    ],
    ids=["default", "prefix-and-served"],
)
def test_document_covers_every_route(
    app: Flask, config_overrides: dict[str, object]
) -> None:
    prefix = str(config_overrides.get("REFRESH_URL_PREFIX", "/auth"))

    document = openapi_spec(app)

    assert documented(document) == routes_of(app, prefix)
    assert "servers" not in document


@pytest.mark.parametrize("config_overrides", [{"REFRESH_SERVE_OPENAPI": True}])
def test_document_is_served_when_enabled(app: Flask, client: FlaskClient) -> None:
    response = client.get("/auth/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == openapi_spec(app)
    assert "/auth/openapi.json" in response.json["paths"]


def test_document_is_not_served_by_default(app: Flask, client: FlaskClient) -> None:
    response = client.get("/auth/openapi.json")

    assert response.status_code == 404
    assert "/auth/openapi.json" not in openapi_spec(app)["paths"]


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            "REFRESH_LOGIN_FIELD": "email",
            "REFRESH_MAX_TOKEN_LENGTH": 2048,
            "REFRESH_MAX_PASSWORD_LENGTH": 200,
        }
    ],
)
def test_document_follows_config(app: Flask) -> None:
    schemas = openapi_spec(app)["components"]["schemas"]

    login = schemas["LoginRequest"]
    assert login["properties"]["email"]["type"] == "string"
    assert login["anyOf"] == [{"required": ["email"]}, {"required": ["username"]}]
    assert login["properties"]["password"]["maxLength"] == 200
    assert schemas["RefreshRequest"]["properties"]["refresh_token"]["maxLength"] == 2048
    assert schemas["RevokeRequest"]["properties"]["token"]["maxLength"] == 2048
    assert (
        packaged_document()["components"]["schemas"]["LoginRequest"]["properties"][
            "password"
        ]["maxLength"]
        == 1024
    )


# ---------------------------------------------------------------------------
# Token locations
# ---------------------------------------------------------------------------

COOKIES = {
    "REFRESH_ACCESS_TOKEN_LOCATION": "cookies",
    "REFRESH_REFRESH_TOKEN_LOCATION": "cookies",
}
MIXED = {
    "REFRESH_ACCESS_TOKEN_LOCATION": ["headers", "cookies"],
    "REFRESH_REFRESH_TOKEN_LOCATION": ["body", "cookies"],
}
FORM = "application/x-www-form-urlencoded"


def operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    item: dict[str, Any] = document["paths"][path][method]
    return item


@pytest.mark.parametrize("config_overrides", [{}])
def test_default_document_uses_bearer_and_body(app: Flask) -> None:
    document = openapi_spec(app)

    validate(document)
    assert set(document["components"]["securitySchemes"]) == {"bearerAuth"}
    assert operation(document, "/auth/sessions", "get")["security"] == [
        {"bearerAuth": []}
    ]
    refresh = operation(document, "/auth/refresh", "post")
    assert "security" not in refresh
    assert refresh["requestBody"]["required"] is True
    assert FORM in refresh["requestBody"]["content"]
    required = document["components"]["schemas"]["TokenResponse"]["required"]
    assert {"access_token", "refresh_token"} <= set(required)


@pytest.mark.parametrize("config_overrides", [COOKIES])
def test_cookie_document_uses_cookies_and_csrf(app: Flask) -> None:
    document = openapi_spec(app)
    schemes = document["components"]["securitySchemes"]

    validate(document)
    assert schemes["accessTokenCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "access_token",
        "description": "The access token cookie that /login and /refresh set.",
    }
    assert schemes["refreshTokenCookie"]["in"] == "cookie"
    assert schemes["refreshTokenCookie"]["name"] == "refresh_token"
    assert schemes["csrfCookie"]["in"] == "cookie"
    assert schemes["csrfCookie"]["name"] == "csrf_token"
    assert schemes["csrfHeader"]["in"] == "header"
    assert schemes["csrfHeader"]["name"] == "X-CSRF-Token"
    assert "bearerAuth" not in schemes
    assert operation(document, "/auth/sessions", "get")["security"] == [
        {"accessTokenCookie": []}
    ]
    assert operation(document, "/auth/logout-all", "post")["security"] == [
        {"accessTokenCookie": [], "csrfCookie": [], "csrfHeader": []}
    ]
    refresh = operation(document, "/auth/refresh", "post")
    logout = operation(document, "/auth/logout", "post")
    assert refresh["security"] == [
        {"refreshTokenCookie": [], "csrfCookie": [], "csrfHeader": []}
    ]
    assert logout["security"] == [
        {"refreshTokenCookie": [], "csrfCookie": [], "csrfHeader": []},
        {},
    ]
    assert "requestBody" not in refresh
    assert "requestBody" not in logout
    login_content = operation(document, "/auth/login", "post")["requestBody"]
    assert set(login_content["content"]) == {"application/json"}
    token_fields = document["components"]["schemas"]["TokenResponse"]["properties"]
    assert "access_token" not in token_fields
    assert "refresh_token" not in token_fields
    assert "Set-Cookie" in document["components"]["responses"]["Tokens"]["headers"]


@pytest.mark.parametrize("config_overrides", [MIXED])
def test_mixed_document_makes_body_optional(app: Flask) -> None:
    document = openapi_spec(app)

    validate(document)
    refresh = operation(document, "/auth/refresh", "post")
    assert refresh["requestBody"]["required"] is False
    assert FORM in refresh["requestBody"]["content"]
    assert refresh["security"] == [
        {"refreshTokenCookie": [], "csrfCookie": [], "csrfHeader": []},
        {},
    ]
    assert operation(document, "/auth/logout-others", "post")["security"] == [
        {"bearerAuth": []},
        {"accessTokenCookie": [], "csrfCookie": [], "csrfHeader": []},
    ]
    required = document["components"]["schemas"]["TokenResponse"]["required"]
    assert {"access_token", "refresh_token"} <= set(required)


@pytest.mark.parametrize(
    "config_overrides",
    [
        {
            "REFRESH_HEADER_NAME": "X-Access-Token",
            "REFRESH_HEADER_TYPE": "",
            "REFRESH_ACCESS_TOKEN_LOCATION": ["headers", "query_string"],
        }
    ],
)
def test_document_follows_header_settings(app: Flask) -> None:
    document = openapi_spec(app)
    schemes = document["components"]["securitySchemes"]

    validate(document)
    assert schemes["accessTokenHeader"]["type"] == "apiKey"
    assert schemes["accessTokenHeader"]["in"] == "header"
    assert schemes["accessTokenHeader"]["name"] == "X-Access-Token"
    assert "without a scheme" in schemes["accessTokenHeader"]["description"]
    assert schemes["accessTokenQuery"]["in"] == "query"
    assert schemes["accessTokenQuery"]["name"] == "access_token"
    assert operation(document, "/auth/sessions", "get")["security"] == [
        {"accessTokenHeader": []},
        {"accessTokenQuery": []},
    ]


def assert_documented(document: dict[str, Any], path: str, response: Any) -> None:
    """Check a response against the document: status, headers and body schema."""
    method = response.request.method.lower()
    responses = operation(document, path, method)["responses"]
    status = str(response.status_code)
    assert status in responses, (path, status, response.data[:200])

    documented = responses[status]
    if "$ref" in documented:
        name = documented["$ref"].rsplit("/", 1)[1]
        documented = document["components"]["responses"][name]
    for header, spec in documented.get("headers", {}).items():
        if "$ref" in spec:
            spec = document["components"]["headers"][spec["$ref"].rsplit("/", 1)[1]]
        if spec.get("required"):
            assert header in response.headers, (path, header)

    content = documented.get("content")
    if content is None:
        assert response.data == b"", path
        return
    assert response.mimetype in content, path
    # The schema's references point into the document's components.
    schema = {
        **content[response.mimetype]["schema"],
        "components": document["components"],
    }
    OAS31Validator(schema).validate(response.json)


@pytest.mark.parametrize("config_overrides", [COOKIES])
def test_cookie_document_matches_routes(app: Flask, client: FlaskClient) -> None:
    """Requests built as the cookie-mode document describes get documented responses."""
    document = openapi_spec(app)
    create_user(app, "alice")

    login = client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    form_login = app.test_client().post(
        "/auth/login",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
    )
    csrf_cookie = client.get_cookie("csrf_token")
    assert csrf_cookie is not None
    csrf = {"X-CSRF-Token": csrf_cookie.value}
    sessions = client.get("/auth/sessions")
    refreshed = client.post("/auth/refresh", headers=csrf)
    csrf = {"X-CSRF-Token": client.get_cookie("csrf_token").value}  # type: ignore[union-attr]
    without_csrf = client.post("/auth/refresh")
    others = client.post("/auth/logout-others", headers=csrf)
    logout = client.post("/auth/logout", headers=csrf)

    assert login.status_code == 200
    assert login.headers.getlist("Set-Cookie")
    assert form_login.status_code == 400
    assert sessions.status_code == 200
    assert refreshed.status_code == 200
    assert without_csrf.status_code == 403
    assert others.status_code == 200
    assert logout.status_code == 204
    for path, response in [
        ("/auth/login", login),
        ("/auth/login", form_login),
        ("/auth/sessions", sessions),
        ("/auth/refresh", refreshed),
        ("/auth/refresh", without_csrf),
        ("/auth/logout-others", others),
        ("/auth/logout", logout),
    ]:
        assert_documented(document, path, response)


def test_document_ships_in_the_package() -> None:
    setup = (REPO_ROOT / "setup.cfg").read_text()

    assert re.search(r"^flask_refresh = .*\bopenapi\.json\b", setup, re.MULTILINE)


# ---------------------------------------------------------------------------
# schemathesis against the example app under gunicorn
# ---------------------------------------------------------------------------


@pytest.fixture
def gunicorn_server(
    fresh_database_url: str, tmp_path: Path, config_overrides: dict[str, Any]
) -> Iterator[Server]:
    """The example app under gunicorn, with the test's config overrides."""
    environment = example_app_environment(fresh_database_url)
    # Flask's from_prefixed_env parses each value as JSON.
    for key, value in config_overrides.items():
        environment[f"FLASK_{key}"] = json.dumps(value)
    run_flask(environment, "db", "upgrade")
    run_flask(environment, "users", "create", USERNAME, "--password", PASSWORD)

    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "2",
                "--no-control-socket",
                "example_app:create_app()",
            ],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Server(
            base_url=wait_until_ready(process, log_path),
            process=process,
            log_path=log_path,
        )
    finally:
        stop(process)


def run_schemathesis(
    server: Server, document: Path, config: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """Log in, then run schemathesis with the new session's credentials.

    The access token goes in the Authorization header. In cookie mode the login
    sets cookies instead, which go into ``config`` as the values of the
    document's cookie and CSRF security schemes, so that schemathesis puts them
    in the request parts that the schemes name.
    """
    login = server.post(
        "/auth/login", json={"username": USERNAME, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    headers: list[str] = []
    config_text = SCHEMATHESIS_CONFIG
    if "access_token" in login.json():
        headers = ["--header", f"Authorization: Bearer {login.json()['access_token']}"]
    else:
        credentials = {
            "accessTokenCookie": login.cookies["access_token"],
            "refreshTokenCookie": login.cookies["refresh_token"],
            "csrfCookie": login.cookies["csrf_token"],
            "csrfHeader": login.cookies["csrf_token"],
        }
        for scheme, value in credentials.items():
            config_text += f'\n[auth.openapi.{scheme}]\napi_key = "{value}"\n'
    config.write_text(config_text)

    return subprocess.run(
        [
            str(VENV_BIN / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            str(document),
            "--url",
            server.base_url,
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(MAX_EXAMPLES),
            # A fixed seed makes a failure in CI reproducible locally.
            "--seed",
            "20261204",
            *headers,
            "--no-color",
            *options,
        ],
        # schemathesis keeps a cache of crashes in .schemathesis/ under its
        # working directory, which belongs in the test's directory.
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=SCHEMATHESIS_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.mark.parametrize(
    "config_overrides", [{}, COOKIES], ids=["headers-and-body", "cookies"]
)
def test_schemathesis_finds_no_failure(
    app: Flask, gunicorn_server: Server, tmp_path: Path
) -> None:
    spec = openapi_spec(app)
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec))
    config = tmp_path / "schemathesis.toml"

    # logout-all revokes the session of the access token that the other
    # operations use, so it runs after them, on its own. With the refresh token
    # in a cookie, schemathesis sends the session's real refresh token, so
    # logout and refresh (whose replays count as reuse) end the session too.
    # Each run logs in afresh.
    ending = ["logoutAll"]
    if "refreshTokenCookie" in spec["components"]["securitySchemes"]:
        ending += ["logout", "refresh"]
    excluded = [
        option for name in ending for option in ("--exclude-operation-id", name)
    ]
    results = [run_schemathesis(gunicorn_server, document, config, *excluded)]
    for name in ending:
        results.append(
            run_schemathesis(
                gunicorn_server, document, config, "--include-operation-id", name
            )
        )

    for result in results:
        assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
        assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout
        # The credentials worked: no operation got only 401 and 403.
        assert "Authentication failed" not in result.stdout, result.stdout[-4000:]
    log = gunicorn_server.log()
    assert "Traceback" not in log, log[-4000:]
    assert (
        requests.get(
            gunicorn_server.base_url + "/auth/sessions", timeout=10
        ).status_code
        == 401
    )
