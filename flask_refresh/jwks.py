"""The JWKS route: the public keys that verify this app's access tokens.

Another service verifies access tokens by fetching this JSON Web Key Set (RFC 7517
section 5), for example with PyJWT's ``PyJWKClient``, and picking the key by the
token's ``kid``. Only keys of asymmetric algorithms are listed, because an HMAC
secret cannot be published. A key set of HMAC keys alone gives ``{"keys": []}``.
"""

from __future__ import annotations

from flask import Response, jsonify, request

from .extension import get_state
from .views import blueprint


@blueprint.get("/jwks.json")
def jwks() -> Response:
    """Return the public keys as a JWK Set.

    Clients may cache it for ``REFRESH_JWKS_MAX_AGE``, and revalidate with the
    ETag. A new key is listed before it signs when it is added at the end of
    ``REFRESH_SIGNING_KEYS`` first.
    """
    state = get_state()
    response = jsonify(state.settings.signing_keys.public_jwks())
    response.cache_control.public = True
    response.cache_control.max_age = int(state.settings.jwks_max_age.total_seconds())
    response.add_etag()
    # Returns 304 Not Modified when the client's If-None-Match matches.
    response.make_conditional(request)
    return response
