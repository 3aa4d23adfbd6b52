"""Reading the parameters of token endpoint requests.

RFC 6749 section 4.3 and 6 send token requests form-encoded; many JavaScript clients
send JSON. Both are accepted, so standard OAuth client libraries work unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Request

from .errors import InvalidRequest, UnsupportedGrantType
from .request_body import read_body


class TokenRequest:
    """The parameters of one request to a token endpoint."""

    def __init__(self, params: dict[str, Any], *, form_encoded: bool) -> None:
        self.params = params
        #: OAuth clients send forms and always name the grant type; JSON clients
        #: of this library's own routes may leave it out.
        self.form_encoded = form_encoded

    @classmethod
    def from_request(cls, request: Request) -> TokenRequest:
        """Parse a JSON object or a form-encoded body.

        :raises InvalidRequest: the body is neither, a parameter repeats, or the
            server could not read the body.
        :raises RequestTooLarge: the body is longer than
            ``REFRESH_MAX_CONTENT_LENGTH``.
        """
        data = read_body(request)
        if request.is_json:
            return cls(_json_object(data), form_encoded=False)

        if request.mimetype == "application/x-www-form-urlencoded":
            # request.form parses the body that read_body cached, not the
            # stream, so it parses the same bytes that were checked.
            params: dict[str, Any] = {}
            for key, values in request.form.lists():
                # RFC 6749 section 3.2: parameters must not be included more than
                # once.
                if len(values) > 1:
                    raise InvalidRequest(f"The {key} parameter is repeated.")
                params[key] = values[0]
            return cls(params, form_encoded=True)

        raise InvalidRequest(
            "Send the parameters as a JSON object (Content-Type: application/json)"
            " or form-encoded (Content-Type: application/x-www-form-urlencoded)."
        )

    def require_grant_type(self, expected: str) -> None:
        """Check ``grant_type``, which JSON requests may leave out.

        :raises InvalidRequest: a form request does not name it.
        :raises UnsupportedGrantType: it names another grant.
        """
        grant_type = self.params.get("grant_type")
        if grant_type is None and not self.form_encoded:
            return

        if grant_type is None:
            raise InvalidRequest("The grant_type parameter is missing.")
        if not isinstance(grant_type, str):
            raise InvalidRequest("The grant_type parameter must be a string.")
        if grant_type != expected:
            raise UnsupportedGrantType(
                f"This endpoint serves grant_type={expected} only."
            )

    def string(self, *names: str, max_length: int) -> str:
        """Return the first present parameter of ``names`` as a non-empty string.

        :raises InvalidRequest: it is missing, empty, not a string or too long.
        """
        for name in names:
            if name in self.params:
                value = self.params[name]
                break
        else:
            raise InvalidRequest(f"The {names[0]} parameter is missing.")

        if not isinstance(value, str):
            raise InvalidRequest(f"The {name} parameter must be a string.")
        try:
            # JSON escapes can spell lone surrogates, which no database driver or
            # password hash can encode.
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"The {name} parameter is not valid Unicode text."
            ) from None
        if "\x00" in value:
            # PostgreSQL rejects NUL in text, which would turn a bad request into
            # a database error; no username, password or token contains one.
            raise InvalidRequest(f"The {name} parameter contains a NUL character.")
        if not value:
            raise InvalidRequest(f"The {name} parameter is empty.")
        if len(value) > max_length:
            raise InvalidRequest(
                f"The {name} parameter is longer than {max_length} characters."
            )

        return value


def _json_object(data: bytes) -> dict[str, Any]:
    """Parse a JSON object, rejecting repeated keys.

    :raises InvalidRequest: the body is not a JSON object, nests too deeply to
        parse, or repeats a key.
    """
    try:
        # json.loads detects UTF-8, UTF-16 and UTF-32 from the bytes (RFC 8259).
        body = json.loads(data, object_pairs_hook=_reject_repeated_keys)
    except _RepeatedKey as error:
        raise InvalidRequest(f"The {error.key[:64]} parameter is repeated.") from None
    except (ValueError, RecursionError):
        raise InvalidRequest("The request body must be a JSON object.") from None

    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")

    return body


def _reject_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which of two equal keys wins, so a proxy and this
    # endpoint could read different credentials from one body.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RepeatedKey(key)
        result[key] = value

    return result


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key
