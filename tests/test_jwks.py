"""The JWKS route, read by the test client and by PyJWKClient over real HTTP.

PyJWKClient fetches the key set from the example app served by Werkzeug on a free
port of 127.0.0.1, the way another service would, and verifies our tokens with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import app_config, create_user, login
from signing_keys import ASYMMETRIC_ALGORITHMS, key_entry, private_key
from werkzeug.serving import BaseWSGIServer, make_server

from example_app import create_app, db

KEYS = [
    key_entry("ec-1", "ES256"),
    key_entry("hmac-1", "HS256"),
    key_entry("rsa-1", "RS256"),
    key_entry("ed-1", "EdDSA"),
]
PRIVATE_PARAMETERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


@pytest.fixture
def make_app(database_url: str, app: Flask) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test database, as a redeploy with new config would."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        new_app = create_app(app_config(database_url, **overrides))
        apps.append(new_app)
        return new_app

    yield make

    for made in apps:
        with made.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


@dataclass
class Deployment:
    """An HTTP server on 127.0.0.1 whose app can be replaced, like a redeploy."""

    app: Flask
    server: BaseWSGIServer | None = None
    #: How many requests the server received.
    requests: int = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.requests += 1
        return self.app.wsgi_app(environ, start_response)

    @property
    def jwks_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/auth/jwks.json"


@pytest.fixture
def deployment(app: Flask) -> Iterator[Deployment]:
    current = Deployment(app)
    server = make_server("127.0.0.1", 0, current, threaded=True)
    current.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield current
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def verify_with_jwks(client: jwt.PyJWKClient, token: str) -> dict[str, Any]:
    """Verify as another service would: the key from the JWKS, its own alg."""
    signing_key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, signing_key, algorithms=[signing_key.algorithm_name]
    )
    return claims


# ---------------------------------------------------------------------------
# The route
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{"REFRESH_SIGNING_KEYS": KEYS}])
def test_jwks_lists_public_keys_only(client: FlaskClient) -> None:
    response = client.get("/auth/jwks.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json is not None
    keys = response.json["keys"]
    assert [(key["kid"], key["alg"], key["kty"]) for key in keys] == [
        ("ec-1", "ES256", "EC"),
        ("rsa-1", "RS256", "RSA"),
        ("ed-1", "EdDSA", "OKP"),
    ]
    for key in keys:
        assert key["use"] == "sig"
        assert not PRIVATE_PARAMETERS & set(key), key
    assert KEYS[1]["key"] not in response.get_data(as_text=True)


@pytest.mark.parametrize("config_overrides", [{"REFRESH_SIGNING_KEYS": KEYS}])
def test_jwks_key_matches_private_key(client: FlaskClient) -> None:
    response = client.get("/auth/jwks.json")
    assert response.json is not None
    (rsa_jwk,) = [key for key in response.json["keys"] if key["kid"] == "rsa-1"]

    public = jwt.PyJWK(rsa_jwk).key

    expected = private_key("RS256").public_key().public_numbers()
    assert public.public_numbers() == expected


@pytest.mark.parametrize("config_overrides", [{"REFRESH_SIGNING_KEYS": KEYS}])
def test_jwks_cache_headers(client: FlaskClient) -> None:
    response = client.get("/auth/jwks.json")

    assert response.cache_control.public is True
    assert response.cache_control.max_age == 300
    assert response.headers["ETag"]


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_SIGNING_KEYS": KEYS, "REFRESH_JWKS_MAX_AGE": 60}],
)
def test_jwks_max_age_configurable(client: FlaskClient) -> None:
    response = client.get("/auth/jwks.json")

    assert response.cache_control.max_age == 60


@pytest.mark.parametrize("config_overrides", [{"REFRESH_SIGNING_KEYS": KEYS}])
def test_jwks_revalidation_not_modified(client: FlaskClient) -> None:
    etag = client.get("/auth/jwks.json").headers["ETag"]

    response = client.get("/auth/jwks.json", headers={"If-None-Match": etag})

    assert response.status_code == 304
    assert response.get_data() == b""


def test_jwks_empty_for_hmac_secret(client: FlaskClient) -> None:
    response = client.get("/auth/jwks.json")

    assert response.status_code == 200
    assert response.json == {"keys": []}


# ---------------------------------------------------------------------------
# Another service verifying our tokens over HTTP
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_overrides",
    [
        {"REFRESH_SIGNING_KEYS": [key_entry(f"key-{algorithm}", algorithm)]}
        for algorithm in ASYMMETRIC_ALGORITHMS
    ],
    ids=ASYMMETRIC_ALGORITHMS,
)
def test_pyjwkclient_verifies_our_token(
    app: Flask, client: FlaskClient, deployment: Deployment
) -> None:
    alice = create_user(app, "alice")
    token = login(client)["access_token"]
    jwks_client = jwt.PyJWKClient(deployment.jwks_url, timeout=10)

    claims = verify_with_jwks(jwks_client, token)

    assert claims["sub"] == str(alice)
    assert claims["type"] == "access"


@pytest.mark.parametrize(
    "config_overrides", [{"REFRESH_SIGNING_KEYS": [key_entry("old", "ES256")]}]
)
def test_pyjwkclient_follows_rotation(
    app: Flask,
    client: FlaskClient,
    deployment: Deployment,
    make_app: Callable[..., Flask],
) -> None:
    """The README's procedure: publish the new key, then let it sign."""
    create_user(app, "alice")
    old_token = login(client)["access_token"]
    jwks_client = jwt.PyJWKClient(deployment.jwks_url, timeout=10)
    assert verify_with_jwks(jwks_client, old_token)["type"] == "access"
    old_key, new_key = key_entry("old", "ES256"), key_entry("new", "RS256")

    # Step 1: the new key is listed last, so it is published but does not sign.
    deployment.app = make_app(REFRESH_SIGNING_KEYS=[old_key, new_key])
    # The client fetches again once its cached set is older than its lifespan,
    # which should not exceed REFRESH_JWKS_MAX_AGE.
    jwks_client.get_signing_keys(refresh=True)
    fetches = deployment.requests
    # Step 2: the new key moves to the front and signs.
    deployment.app = make_app(REFRESH_SIGNING_KEYS=[new_key, old_key])
    new_token = login(deployment.app.test_client())["access_token"]

    assert jwt.get_unverified_header(new_token)["kid"] == "new"
    assert verify_with_jwks(jwks_client, new_token)["type"] == "access"
    assert verify_with_jwks(jwks_client, old_token)["type"] == "access"
    # Both verified from the cached set: no fetch was needed after the switch.
    assert deployment.requests == fetches


@pytest.mark.parametrize(
    "config_overrides", [{"REFRESH_SIGNING_KEYS": [key_entry("old", "ES256")]}]
)
def test_pyjwkclient_rejects_retired_key(
    app: Flask,
    client: FlaskClient,
    deployment: Deployment,
    make_app: Callable[..., Flask],
) -> None:
    create_user(app, "alice")
    old_token = login(client)["access_token"]

    deployment.app = make_app(REFRESH_SIGNING_KEYS=[key_entry("new", "RS256")])
    jwks_client = jwt.PyJWKClient(deployment.jwks_url, timeout=10)

    with pytest.raises(jwt.PyJWKClientError, match="Unable to find a signing key"):
        jwks_client.get_signing_key_from_jwt(old_token)


@pytest.mark.parametrize(
    "config_overrides",
    [{"REFRESH_SIGNING_KEYS": KEYS, "REFRESH_AUDIENCE": "billing"}],
)
def test_pyjwkclient_checks_audience(
    app: Flask, client: FlaskClient, deployment: Deployment
) -> None:
    create_user(app, "alice")
    token = login(client)["access_token"]
    jwks_client = jwt.PyJWKClient(deployment.jwks_url, timeout=10)
    signing_key = jwks_client.get_signing_key_from_jwt(token)

    claims = jwt.decode(token, signing_key, audience="billing")

    assert claims["aud"] == "billing"
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, signing_key, audience="shipping")


@pytest.mark.parametrize("config_overrides", [{"REFRESH_SIGNING_KEYS": KEYS}])
def test_jwks_served_at_well_known_path(app: Flask, client: FlaskClient) -> None:
    """The README's one line that adds the RFC 8615 location."""
    app.add_url_rule(
        "/.well-known/jwks.json", view_func=app.view_functions["flask_refresh.jwks"]
    )

    well_known = client.get("/.well-known/jwks.json")
    prefixed = client.get("/auth/jwks.json")

    assert well_known.status_code == 200
    assert well_known.json == prefixed.json
