"""Malformed input to every route: bodies, sizes, methods and Authorization headers.

Each case must get one of the route's documented statuses with a JSON error body,
never a 500 or an HTML page. Hypothesis generates the bodies and header values
for the parsers; the other cases are listed by hand.
"""

from __future__ import annotations

import io
import json
import string
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkSize
from helpers import PASSWORD, bearer, create_user, family_rows, login, token_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from flask_refresh import InvalidRequest, TokenRequest
from flask_refresh.errors import AuthError

TOKEN_ROUTES = ["/auth/login", "/auth/refresh", "/auth/logout", "/auth/revoke"]
#: Statuses that each token route may return to a client.
TOKEN_ROUTE_STATUSES = {
    "/auth/login": {200, 400, 413, 429},
    "/auth/refresh": {200, 400, 413},
    "/auth/logout": {204, 400, 413},
    "/auth/revoke": {200, 400, 413},
}
ERROR_CODES = {
    "invalid_request",
    "invalid_grant",
    "unsupported_grant_type",
    "too_many_requests",
}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def alice(app: Flask) -> int:
    return create_user(app, "alice")


def assert_documented(path: str, response: Any) -> None:
    """Check a token route's response against its documented statuses and body."""
    assert response.status_code in TOKEN_ROUTE_STATUSES[path], response.data[:200]
    if response.status_code in (200, 204) and path in ("/auth/logout", "/auth/revoke"):
        return
    assert response.mimetype == "application/json"
    body = response.json
    assert isinstance(body, dict)
    if response.status_code == 200:
        assert body["token_type"] == "Bearer"
        assert response.headers["Cache-Control"] == "no-store"
        return
    assert set(body) == {"error", "error_description"}
    assert body["error"] in ERROR_CODES
    assert response.headers["Cache-Control"] == "no-store"


# ---------------------------------------------------------------------------
# Bodies listed by hand
# ---------------------------------------------------------------------------

MALFORMED_BODIES = [
    ("", "application/json"),
    ("", "application/x-www-form-urlencoded"),
    ("", None),
    ("null", "application/json"),
    ("[]", "application/json"),
    ('"refresh_token"', "application/json"),
    ("42", "application/json"),
    ("{", "application/json"),
    ('{"a": 1} trailing', "application/json"),
    ("\xff\xfe{}", "application/json"),
    ('{"token": "x"}', "text/plain"),
    ('{"token": "x"}', "application/xml"),
    ("token=x", "multipart/form-data; boundary=x"),
    ("[" * 5_000 + "]" * 5_000, "application/json"),
]


@pytest.mark.parametrize("path", TOKEN_ROUTES)
@pytest.mark.parametrize(("data", "content_type"), MALFORMED_BODIES)
def test_malformed_body_is_invalid_request(
    client: FlaskClient, path: str, data: str, content_type: str | None
) -> None:
    response = client.post(path, data=data.encode("latin-1"), content_type=content_type)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "APPLICATION/JSON",
        "application/json; foo=bar",
    ],
)
def test_json_with_parameters_is_read(
    client: FlaskClient, alice: int, content_type: str
) -> None:
    body = json.dumps({"username": "alice", "password": PASSWORD})

    response = client.post("/auth/login", data=body, content_type=content_type)

    assert response.status_code == 200
    assert response.json is not None
    assert response.json["token_type"] == "Bearer"


def test_form_with_charset_is_read(client: FlaskClient, alice: int) -> None:
    response = client.post(
        "/auth/login",
        data="grant_type=password&username=alice&password="
        + PASSWORD.replace(" ", "+"),
        content_type="application/x-www-form-urlencoded; charset=utf-8",
    )

    assert response.status_code == 200


@pytest.mark.parametrize("path", TOKEN_ROUTES)
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_oversized_body_is_413(
    app: Flask, client: FlaskClient, alice: int, path: str, form: bool
) -> None:
    filler = "x" * (16 * 1024)
    if form:
        response = client.post(path, data={"grant_type": "password", "pad": filler})
    else:
        response = client.post(path, json={"pad": filler})

    assert response.status_code == 413
    assert response.json == {
        "error": "invalid_request",
        "error_description": "The request body is larger than 16384 bytes.",
    }
    assert response.headers["Cache-Control"] == "no-store"
    assert family_rows(app) == []


def test_body_at_limit_is_read(client: FlaskClient, alice: int) -> None:
    body = {"username": "alice", "password": PASSWORD, "pad": ""}
    body["pad"] = "x" * (16 * 1024 - len(json.dumps(body)))
    data = json.dumps(body)
    assert len(data) == 16 * 1024

    response = client.post("/auth/login", data=data, content_type="application/json")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "config_overrides", [{"REFRESH_MAX_CONTENT_LENGTH": 1024 * 1024}]
)
def test_app_limit_applies_when_lower(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 100

    response = client.post("/auth/refresh", json={"refresh_token": "x" * 200})

    assert response.status_code == 413
    assert response.json is not None
    assert response.json["error_description"] == (
        "The request body is larger than 100 bytes."
    )


# ---------------------------------------------------------------------------
# Bodies without Content-Length, as Transfer-Encoding: chunked sends them
# ---------------------------------------------------------------------------


class FailingStream(io.RawIOBase):
    """A WSGI input stream whose server fails while decoding the body."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise self.error


def post_chunked(client: FlaskClient, path: str, stream: Any, content_type: str) -> Any:
    """POST a body as a server passes on a chunked one: no Content-Length.

    The server has decoded the chunks, so the app reads plain bytes, and it sets
    wsgi.input_terminated to say that the stream ends where the body ends.
    """
    environ = EnvironBuilder(
        path=path,
        method="POST",
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = stream
    environ["wsgi.input_terminated"] = True
    return client.open(Request(environ))


def chunked_form_login(client: FlaskClient, form: bytes) -> Any:
    return post_chunked(
        client, "/auth/login", io.BytesIO(form), "application/x-www-form-urlencoded"
    )


def test_chunked_form_over_limit_is_413(app: Flask, client: FlaskClient) -> None:
    create_user(app, "alice")
    create_user(app, "bob")
    # Cut at 16 KiB, this body names bob once and would log him in. Whole, it
    # repeats username, which is a 400.
    form = (
        b"grant_type=password&username=bob&password="
        + PASSWORD.replace(" ", "+").encode()
        + b"&pad="
        + b"x" * (30 * 1024)
        + b"&username=alice"
    )

    response = chunked_form_login(client, form)

    assert response.status_code == 413
    assert response.json == {
        "error": "invalid_request",
        "error_description": "The request body is larger than 16384 bytes.",
    }
    assert response.headers["Cache-Control"] == "no-store"
    assert family_rows(app) == []


@pytest.mark.parametrize("path", TOKEN_ROUTES)
def test_chunked_json_over_limit_is_413(
    app: Flask, client: FlaskClient, path: str
) -> None:
    body = json.dumps({"pad": "x" * (16 * 1024)}).encode()

    response = post_chunked(client, path, io.BytesIO(body), "application/json")

    assert response.status_code == 413
    assert response.json is not None
    assert response.json["error_description"] == (
        "The request body is larger than 16384 bytes."
    )


def test_chunked_body_one_byte_over_is_413(app: Flask, client: FlaskClient) -> None:
    create_user(app, "alice")
    body = {"username": "alice", "password": PASSWORD, "pad": ""}
    body["pad"] = "x" * (16 * 1024 + 1 - len(json.dumps(body)))
    data = json.dumps(body).encode()
    assert len(data) == 16 * 1024 + 1

    response = post_chunked(client, "/auth/login", io.BytesIO(data), "application/json")

    assert response.status_code == 413
    assert family_rows(app) == []


def test_chunked_body_at_limit_is_read(app: Flask, client: FlaskClient) -> None:
    create_user(app, "alice")
    body = {"username": "alice", "password": PASSWORD, "pad": ""}
    body["pad"] = "x" * (16 * 1024 - len(json.dumps(body)))
    data = json.dumps(body).encode()
    assert len(data) == 16 * 1024

    response = post_chunked(client, "/auth/login", io.BytesIO(data), "application/json")

    assert response.status_code == 200
    assert len(family_rows(app)) == 1


@pytest.mark.parametrize("path", TOKEN_ROUTES)
@pytest.mark.parametrize(
    "error",
    [
        # What Werkzeug's development server raises for a bad chunk size.
        OSError("Invalid chunk header"),
        # What gunicorn raises for a chunk size of "zz" and a missing CRLF.
        InvalidChunkSize(b"zz"),
        ChunkMissingTerminator(b"XX"),
    ],
    ids=["os-error", "gunicorn-chunk-size", "gunicorn-terminator"],
)
def test_unreadable_chunked_body_is_400(
    app: Flask, client: FlaskClient, path: str, error: Exception
) -> None:
    create_user(app, "alice")

    response = post_chunked(
        client, path, FailingStream(error), "application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_request",
        "error_description": (
            "The request body could not be read: its chunked encoding is"
            " malformed, or it ended early."
        ),
    }
    assert response.headers["Cache-Control"] == "no-store"
    assert family_rows(app) == []


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/auth/login", "GET"),
        ("/auth/login", "PUT"),
        ("/auth/refresh", "DELETE"),
        ("/auth/logout", "PATCH"),
        ("/auth/revoke", "GET"),
        ("/auth/sessions", "POST"),
        ("/auth/sessions/abc", "GET"),
        ("/auth/sessions/abc", "POST"),
        ("/auth/logout-all", "GET"),
        ("/auth/logout-others", "PUT"),
    ],
)
def test_unserved_method_is_json_405(
    client: FlaskClient, path: str, method: str
) -> None:
    response = client.open(path, method=method)

    assert response.status_code == 405
    assert response.json is not None
    assert response.json["error"] == "invalid_request"
    assert response.json["error_description"].startswith(
        "This route does not serve that method."
    )
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert method not in allowed
    assert "OPTIONS" in allowed
    assert response.headers["Cache-Control"] == "no-store"


def test_host_routes_keep_flask_405(client: FlaskClient) -> None:
    response = client.post("/api/me")

    assert response.status_code == 405
    assert response.mimetype == "text/html"


def test_options_lists_methods(client: FlaskClient) -> None:
    response = client.options("/auth/login")

    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


# ---------------------------------------------------------------------------
# Authorization header variants
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "status", "error"),
    [
        ("Bearer {token}", 200, None),
        ("bearer {token}", 200, None),
        ("BEARER {token}", 200, None),
        ("Bearer   {token}", 200, None),
        ("  Bearer {token}  ", 200, None),
        ("{token}", 401, "missing_token"),
        ("Token {token}", 401, "missing_token"),
        ("Basic {token}", 401, "missing_token"),
        ("Bearer\t{token}", 401, "missing_token"),
        ("Bearer", 400, "invalid_request"),
        ("Bearer {token} {token}", 400, "invalid_request"),
        ("Bearer {token},Bearer {token}", 400, "invalid_request"),
        ('Bearer "{token}"', 400, "invalid_request"),
    ],
)
def test_authorization_header_variants(
    client: FlaskClient, alice: int, template: str, status: int, error: str | None
) -> None:
    access = login(client)["access_token"]

    response = client.get(
        "/auth/sessions", headers={"Authorization": template.format(token=access)}
    )

    assert response.status_code == status
    if error is None:
        assert response.json is not None
        assert len(response.json["sessions"]) == 1
    else:
        assert response.json is not None
        assert response.json["error"] == error
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_several_authorization_headers_rejected(
    client: FlaskClient, alice: int
) -> None:
    access = login(client)["access_token"]

    response = client.get(
        "/auth/sessions",
        headers=[
            ("Authorization", f"Bearer {access}"),
            ("Authorization", "Basic eA=="),
        ],
    )

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("length", "status"), [(4096, 401), (4097, 401), (65_536, 401)]
)
def test_long_bearer_token_rejected_before_decoding(
    client: FlaskClient, length: int, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jwt

    decoded: list[str] = []
    real = jwt.api_jwt.PyJWT.decode_complete

    def spy(self: Any, token: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real(self, token, *args, **kwargs)

    monkeypatch.setattr(jwt.api_jwt.PyJWT, "decode_complete", spy)

    response = client.get("/auth/sessions", headers=bearer("a" * length))

    assert response.status_code == status
    assert response.json is not None
    assert response.json["error"] == "invalid_token"
    if length > 4096:
        assert response.json["error_description"] == "The access token is too long."
        assert decoded == []


# ---------------------------------------------------------------------------
# Hypothesis
# ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
parameter_names = st.sampled_from(
    ["username", "password", "grant_type", "refresh_token", "token", "token_type_hint"]
)
token_bodies = st.dictionaries(
    parameter_names | st.text(max_size=10), json_values, max_size=5
)
form_bodies = st.dictionaries(parameter_names, st.text(max_size=60), max_size=5)


@FUZZ
@given(path=st.sampled_from(TOKEN_ROUTES), body=token_bodies | json_values)
def test_json_bodies_get_documented_answers(
    client: FlaskClient, path: str, body: Any
) -> None:
    response = client.post(path, json=body)

    assert_documented(path, response)


@FUZZ
@given(path=st.sampled_from(TOKEN_ROUTES), form=form_bodies)
def test_form_bodies_get_documented_answers(
    client: FlaskClient, path: str, form: dict[str, str]
) -> None:
    response = client.post(path, data=form)

    assert_documented(path, response)


@FUZZ
@given(
    data=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/json; charset=utf-16",
        ]
    ),
)
def test_token_request_parser_raises_only_invalid_request(
    app: Flask, data: bytes, content_type: str
) -> None:
    with app.test_request_context(
        "/auth/refresh", method="POST", data=data, content_type=content_type
    ):
        from flask import request

        rejection: AuthError | None = None
        try:
            parsed = TokenRequest.from_request(request)
            for name in parsed.params:
                parsed.string(name, max_length=100)
        except AuthError as error:
            rejection = error

    # Anything else than InvalidRequest (400) would have failed the test above.
    if rejection is not None:
        assert isinstance(rejection, InvalidRequest)
        assert rejection.status_code == 400
        assert rejection.description


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200
)


@FUZZ
@given(
    value=st.one_of(
        header_text,
        st.builds("Bearer {}".format, header_text),
        st.builds(
            "{} {}".format,
            st.sampled_from(["Bearer", "bearer", "BEARER", "Basic"]),
            st.text(
                alphabet=string.ascii_letters + string.digits + "-._~+/=, ", max_size=80
            ),
        ),
    )
)
def test_authorization_headers_get_documented_answers(
    client: FlaskClient, value: str
) -> None:
    response = client.get("/auth/sessions", headers={"Authorization": value})

    assert response.status_code in (400, 401)
    assert response.json is not None
    assert set(response.json) == {"error", "error_description"}
    assert response.json["error"] in {
        "invalid_request",
        "invalid_token",
        "missing_token",
    }
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@FUZZ
@given(username=st.text(max_size=300), password=st.text(max_size=1100))
def test_login_with_any_text_never_fails_open(
    app: Flask, client: FlaskClient, username: str, password: str
) -> None:
    response = client.post(
        "/auth/login", json={"username": username, "password": password}
    )

    assert_documented("/auth/login", response)
    assert response.status_code != 200
    assert token_rows(app) == []
