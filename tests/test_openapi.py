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

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD
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


def test_document_ships_in_the_package() -> None:
    setup = (REPO_ROOT / "setup.cfg").read_text()

    assert re.search(r"^flask_refresh = .*\bopenapi\.json\b", setup, re.MULTILINE)


# ---------------------------------------------------------------------------
# schemathesis against the example app under gunicorn
# ---------------------------------------------------------------------------


@pytest.fixture
def gunicorn_server(fresh_database_url: str, tmp_path: Path) -> Iterator[Server]:
    environment = example_app_environment(fresh_database_url)
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
    login = server.post(
        "/auth/login", json={"username": USERNAME, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    access_token = login.json()["access_token"]

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
            "--header",
            f"Authorization: Bearer {access_token}",
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


def test_schemathesis_finds_no_failure(
    app: Flask, gunicorn_server: Server, tmp_path: Path
) -> None:
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(openapi_spec(app)))
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)

    # logout-all revokes the session of the access token that the other
    # operations use, so it runs last, on its own.
    others = run_schemathesis(
        gunicorn_server, document, config, "--exclude-operation-id", "logoutAll"
    )
    logout_all = run_schemathesis(
        gunicorn_server, document, config, "--include-operation-id", "logoutAll"
    )

    for result in (others, logout_all):
        assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
        assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout
    log = gunicorn_server.log()
    assert "Traceback" not in log, log[-4000:]
    assert (
        requests.get(
            gunicorn_server.base_url + "/auth/sessions", timeout=10
        ).status_code
        == 401
    )
