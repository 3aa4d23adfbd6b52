"""PyJWT instances that sign and verify with one configured key.

PyJWT's HMAC algorithm checks its key on every call: it rejects secrets that look
like PEM, SSH, DER or JWK keys. On the benchmark machine that check took about 6 µs
per token, about a tenth of what a hand-written `jwt.decode` check adds to a
request. A configured secret never changes, so the instance built here runs PyJWT's
own check once per secret and reuses its result. Any other key passed to the same
instance still gets the full check.
"""

from __future__ import annotations

from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

_HMAC_HASHES = {
    "HS256": HMACAlgorithm.SHA256,
    "HS384": HMACAlgorithm.SHA384,
    "HS512": HMACAlgorithm.SHA512,
}


class CheckedSecretHMAC(HMACAlgorithm):
    """PyJWT's HMAC algorithm with one secret checked in advance."""

    def __init__(self, hash_alg: Any, secret: str | bytes) -> None:
        super().__init__(hash_alg)
        self._secret = secret
        # PyJWT's own check, run once. It raises InvalidKeyError for a key-like
        # secret.
        self._prepared = super().prepare_key(secret)

    def prepare_key(self, key: str | bytes) -> bytes:
        """Return the checked secret, or check ``key`` as PyJWT always does."""
        if type(key) is type(self._secret) and key == self._secret:
            return self._prepared
        return super().prepare_key(key)


def pyjwt_for(algorithm: str, secret: Any) -> jwt.PyJWT:
    """Return a PyJWT instance for tokens signed with ``algorithm``.

    For an HMAC algorithm, ``secret`` is checked once, here. For other algorithms
    the instance is PyJWT's usual one and ``secret`` is not used.
    """
    instance = jwt.PyJWT()
    hash_alg = _HMAC_HASHES.get(algorithm)
    # NOTE: PyJWT offers no public way to give one PyJWT instance its own
    # algorithm objects, so this uses its private PyJWS attribute. Without it
    # (another PyJWT version), the instance keeps PyJWT's per-token check.
    jws = getattr(instance, "_jws", None)
    if hash_alg is not None and isinstance(jws, jwt.PyJWS):
        jws.unregister_algorithm(algorithm)
        jws.register_algorithm(algorithm, CheckedSecretHMAC(hash_alg, secret))
    return instance
