"""The example app under gunicorn, driven over HTTP, then checked in the database.

Per backend: ``flask db upgrade`` and ``flask users create`` run as subprocesses
on a new empty database, gunicorn serves the app with two workers on 127.0.0.1,
and ``requests`` logs in, calls /api/me, refreshes, replays a spent refresh token,
logs in again and logs out. requests-oauthlib then runs the password and refresh
grants, as an OAuth client library would. The server runs with
``FLASK_REFRESH_REUSE_GRACE=0``, so the replay counts as reuse at once instead of
after the 10 second default.

The same server then gets chunked bodies: longer than the body limit, exactly
at it, and with malformed chunk sizes and terminators that gunicorn rejects while
the app reads the body.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import sqlalchemy as sa
from helpers import PASSWORD, SECRET_KEY, driverless_url
from oauthlib.oauth2 import LegacyApplicationClient
from requests_oauthlib import OAuth2Session

from flask_refresh.models import FAMILY_TABLE, TOKEN_TABLE

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
USERNAME = "alice"
COMMAND_TIMEOUT_SECONDS = 120
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 15
REQUEST_TIMEOUT_SECONDS = 10
LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


@dataclass
class Server:
    """A running gunicorn and where its output goes."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(
            self.base_url + path, timeout=REQUEST_TIMEOUT_SECONDS, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(
            self.base_url + path, timeout=REQUEST_TIMEOUT_SECONDS, **kwargs
        )


def example_app_environment(database_url: str) -> dict[str, str]:
    """Return the environment of a deployment of the example app on that database."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FLASK_") and name != "DATABASE_URL"
    }
    environment.update(
        DATABASE_URL=driverless_url(database_url),
        FLASK_REFRESH_SECRET_KEY=SECRET_KEY,
        FLASK_REFRESH_REUSE_GRACE="0",
    )
    return environment


def run_flask(environment: dict[str, str], *args: str) -> str:
    completed = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "example_app", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, (
        f"flask {' '.join(args)} exited with {completed.returncode}:\n"
        f"{completed.stdout}\n{completed.stderr}"
    )
    return completed.stdout


def wait_until_ready(process: subprocess.Popen[bytes], log_path: Path) -> str:
    """Return the server's base URL once it responds to a request."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    base_url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"gunicorn exited with {process.returncode} while starting:\n"
                f"{log_path.read_text(errors='replace')}"
            )
        if base_url is None:
            found = LISTENING.search(log_path.read_text(errors="replace"))
            base_url = found.group(1) if found else None
        if base_url is not None:
            try:
                requests.get(f"{base_url}/api/me", timeout=REQUEST_TIMEOUT_SECONDS)
                return base_url
            except requests.ConnectionError:
                pass
        time.sleep(0.1)

    pytest.fail(
        f"gunicorn did not answer within {START_TIMEOUT_SECONDS} s:\n"
        f"{log_path.read_text(errors='replace')}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop gunicorn's master, which stops its workers, or kill it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


@pytest.fixture
def server(fresh_database_url: str, tmp_path: Path) -> Iterator[Server]:
    environment = example_app_environment(fresh_database_url)
    run_flask(environment, "db", "upgrade")
    run_flask(environment, "users", "create", USERNAME, "--password", PASSWORD)

    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                # Port 0: the kernel picks a free port, which gunicorn logs.
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "2",
                # The default, ~/.gunicorn/gunicorn.ctl, is shared by every gunicorn
                # that the user runs.
                "--no-control-socket",
                "example_app:create_app()",
            ],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = wait_until_ready(process, log_path)
        yield Server(base_url=base_url, process=process, log_path=log_path)
    finally:
        stop(process)


def read_rows(database_url: str, table: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        metadata = sa.MetaData()
        reflected = sa.Table(table, metadata, autoload_with=engine)
        with engine.connect() as connection:
            rows = connection.execute(sa.select(reflected)).mappings().all()
    finally:
        engine.dispose()
    return [dict(row) for row in rows]


def claims_of(access_token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(access_token, SECRET_KEY, algorithms=["HS256"])
    return claims


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def assert_invalid_grant(response: requests.Response, description: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": description,
    }


def test_rotation_reuse_and_logout_over_http(
    server: Server, fresh_database_url: str
) -> None:
    credentials = {"username": USERNAME, "password": PASSWORD}

    # Log in and call a protected view.
    first_login = server.post("/auth/login", json=credentials)
    assert first_login.status_code == 200, first_login.text
    assert first_login.headers["Cache-Control"] == "no-store"
    first = first_login.json()
    me = server.get(
        "/api/me", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert me.status_code == 200, me.text
    assert me.json()["username"] == USERNAME
    user_id = me.json()["id"]

    # Refresh: the spent token is replaced by a new one in the same family.
    rotated = server.post(
        "/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]

    # Replaying the spent token after the grace interval (0 here) is reuse. It
    # revokes the family, so the token it was exchanged for stops working too.
    replayed = server.post(
        "/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert_invalid_grant(replayed, "The refresh token was already used.")
    after_reuse = server.post(
        "/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert_invalid_grant(after_reuse, "The refresh token was revoked.")

    # A new login starts a new family, and logging out revokes it.
    second_login = server.post("/auth/login", json=credentials)
    assert second_login.status_code == 200, second_login.text
    third = second_login.json()
    logout = server.post("/auth/logout", json={"refresh_token": third["refresh_token"]})
    assert logout.status_code == 204, logout.text
    after_logout = server.post(
        "/auth/refresh", json={"refresh_token": third["refresh_token"]}
    )
    assert_invalid_grant(after_logout, "The refresh token was revoked.")

    stop(server.process)
    tokens = read_rows(fresh_database_url, TOKEN_TABLE)
    families = read_rows(fresh_database_url, FAMILY_TABLE)
    seen_refresh_tokens = [
        first["refresh_token"],
        second["refresh_token"],
        third["refresh_token"],
    ]
    seen_access_tokens = [
        first["access_token"],
        second["access_token"],
        third["access_token"],
    ]

    # Hashes only: no stored value contains a token the client saw.
    for table, rows in ((TOKEN_TABLE, tokens), (FAMILY_TABLE, families)):
        for row in rows:
            for column, value in row.items():
                for token in seen_refresh_tokens + seen_access_tokens:
                    assert token not in str(value), f"{table}.{column}"

    # Every stored hash is the SHA-256 of a refresh token the client saw.
    by_hash = {row["token_hash"]: row for row in tokens}
    assert len(tokens) == 3
    assert set(by_hash) == {sha256_hex(token) for token in seen_refresh_tokens}
    first_row, second_row, third_row = (
        by_hash[sha256_hex(token)] for token in seen_refresh_tokens
    )

    # The first token was spent and names its successor. The others never were.
    assert first_row["used_at"] is not None
    assert first_row["replaced_by_id"] == second_row["id"]
    assert second_row["used_at"] is None
    assert second_row["replaced_by_id"] is None
    assert third_row["used_at"] is None
    assert third_row["replaced_by_id"] is None

    # Each row belongs to the session and access token the client was given.
    first_session = claims_of(first["access_token"])["sid"]
    second_session = claims_of(third["access_token"])["sid"]
    assert claims_of(second["access_token"])["sid"] == first_session
    assert first_row["family_id"] == first_session
    assert second_row["family_id"] == first_session
    assert third_row["family_id"] == second_session
    for row, access_token in zip(
        (first_row, second_row, third_row), seen_access_tokens, strict=True
    ):
        assert row["jwt_id"] == claims_of(access_token)["jti"]
        assert row["user_id"] == user_id
        assert row["ip_address"] == "127.0.0.1"
        assert row["user_agent"].startswith("python-requests/")

    # One family per login: reuse revoked the first, logout the second.
    families_by_id = {row["id"]: row for row in families}
    assert set(families_by_id) == {first_session, second_session}
    assert families_by_id[first_session]["revoked_reason"] == "reuse_detected"
    assert families_by_id[first_session]["revoked_at"] is not None
    assert families_by_id[second_session]["revoked_reason"] == "logout"
    assert families_by_id[second_session]["revoked_at"] is not None
    for row in families:
        assert row["user_id"] == user_id

    # The server logged the reuse, and no token value reached its log.
    log = server.log()
    assert "Refresh token reuse detected" in log
    for token in seen_refresh_tokens + seen_access_tokens:
        assert token not in log


def test_oauth_client_library_works_unchanged(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests-oauthlib's password and refresh grants work without adapters."""
    # oauthlib rejects plain HTTP unless this variable is set. The server listens
    # on 127.0.0.1 only, so no token crosses a network.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    oauth = OAuth2Session(client=LegacyApplicationClient(client_id="example-client"))

    issued = oauth.fetch_token(
        server.base_url + "/auth/login",
        username=USERNAME,
        password=PASSWORD,
        include_client_id=True,
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert issued["token_type"] == "Bearer"
    assert issued["expires_in"] > 0
    first_refresh_token = issued["refresh_token"]

    me = oauth.get(server.base_url + "/api/me", timeout=REQUEST_TIMEOUT_SECONDS)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == USERNAME

    refreshed = oauth.refresh_token(
        server.base_url + "/auth/refresh",
        client_id="example-client",
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert refreshed["refresh_token"] != first_refresh_token
    assert refreshed["access_token"] != issued["access_token"]
    assert (
        claims_of(refreshed["access_token"])["sid"]
        == claims_of(issued["access_token"])["sid"]
    )

    # The session now sends the new access token.
    me_again = oauth.get(server.base_url + "/api/me", timeout=REQUEST_TIMEOUT_SECONDS)
    assert me_again.status_code == 200, me_again.text
    assert me_again.request.headers["Authorization"] == (
        f"Bearer {refreshed['access_token']}"
    )


# ---------------------------------------------------------------------------
# Chunked request bodies, which gunicorn decodes before the app reads them
# ---------------------------------------------------------------------------

BODY_LIMIT = 16 * 1024
TOKEN_ROUTES = ("/auth/login", "/auth/refresh", "/auth/logout", "/auth/revoke")
UNREADABLE_BODY = {
    "error": "invalid_request",
    "error_description": (
        "The request body could not be read: its chunked encoding is malformed,"
        " or it ended early."
    ),
}


def pieces(data: bytes, size: int = 4096) -> Iterator[bytes]:
    """Yield ``data`` in parts, so that requests sends it chunked."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def post_raw(server: Server, path: str, content_type: str, body: bytes) -> Any:
    """POST ``body`` unchanged after chunked headers, over a plain socket.

    requests would encode the chunks itself, correctly; this sends bytes that
    gunicorn's chunk parser rejects. Return the parsed response and its body.
    """
    host, _, port = server.base_url.removeprefix("http://").partition(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    with socket.create_connection(
        (host, int(port)), timeout=REQUEST_TIMEOUT_SECONDS
    ) as connection:
        connection.sendall(head + body)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response, response.read()


def test_chunked_body_over_limit_is_413(server: Server) -> None:
    password = PASSWORD.replace(" ", "+").encode()
    # Cut at the limit, this form names one username. Whole, it repeats it.
    form = (
        b"grant_type=password&username="
        + USERNAME.encode()
        + b"&password="
        + password
        + b"&pad="
        + b"x" * (30 * 1024)
        + b"&username=mallory"
    )
    at_limit = {"username": USERNAME, "password": PASSWORD, "pad": ""}
    at_limit["pad"] = "x" * (BODY_LIMIT - len(json.dumps(at_limit)))

    form_response = server.post(
        "/auth/login",
        data=pieces(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    json_response = server.post(
        "/auth/login",
        data=pieces(json.dumps({**at_limit, "pad": at_limit["pad"] + "x"}).encode()),
        headers={"Content-Type": "application/json"},
    )
    accepted = server.post(
        "/auth/login",
        data=pieces(json.dumps(at_limit).encode()),
        headers={"Content-Type": "application/json"},
    )

    too_large = {
        "error": "invalid_request",
        "error_description": f"The request body is larger than {BODY_LIMIT} bytes.",
    }
    assert form_response.request.headers["Transfer-Encoding"] == "chunked"
    assert form_response.status_code == 413, form_response.text
    assert form_response.json() == too_large
    assert json_response.status_code == 413, json_response.text
    assert json_response.json() == too_large
    assert accepted.status_code == 200, accepted.text
    assert "Traceback" not in server.log()


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n"],
    ids=["chunk-size", "chunk-terminator"],
)
def test_malformed_chunked_body_is_400(server: Server, body: bytes) -> None:
    for path in TOKEN_ROUTES:
        for content_type in ("application/json", "application/x-www-form-urlencoded"):
            response, data = post_raw(server, path, content_type, body)

            assert response.status == 400, (path, content_type, data)
            assert response.getheader("Content-Type") == "application/json", path
            assert json.loads(data) == UNREADABLE_BODY, path
    assert "Traceback" not in server.log()
