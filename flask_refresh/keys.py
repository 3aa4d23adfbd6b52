"""Access token signing keys: the key set, its start-up checks and its JWKS.

Without ``REFRESH_SIGNING_KEYS`` the key set is ``REFRESH_SECRET_KEY`` alone, with
``REFRESH_ALGORITHM`` and no ``kid``, exactly as before key sets existed. With it,
every entry names its ``kid`` and its algorithm. The first entry signs, and a token
is verified only by the entry whose ``kid`` its header names, only with that entry's
algorithm. So an RSA or EC public key can never verify an HMAC token, and an HMAC
secret can never verify an RSA one (RFC 8725 section 3.1).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm, get_default_algorithms
from jwt.exceptions import InvalidKeyError
from jwt.utils import is_pem_format

from .config_values import HMAC_KEY_BYTES, ConfigError
from .jwt_codec import pyjwt_for

SETTING = "REFRESH_SIGNING_KEYS"

#: The key type each supported algorithm needs, as JWK ``kty`` names it.
ALGORITHM_KEY_TYPES = {
    "HS256": "oct",
    "HS384": "oct",
    "HS512": "oct",
    "RS256": "RSA",
    "PS256": "RSA",
    "ES256": "EC",
    "EdDSA": "OKP",
}

#: Smallest RSA modulus accepted, in bits. RFC 7518 section 3.3 requires 2048.
MIN_RSA_BITS = 2048

MAX_KID_LENGTH = 128

_ENTRY_FIELDS = {"kid", "algorithm", "key", "key_file"}

# Beginnings of the encodings of public and private keys. A secret that starts like
# one of these is a key of another algorithm family, not an HMAC secret.
_KEY_ENCODING_PREFIXES = (
    b"-----BEGIN",
    b"ssh-rsa",
    b"ssh-ed25519",
    b"ssh-dss",
    b"ecdsa-sha2-",
    b"---- BEGIN SSH2",
)

_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SigningKey:
    """One entry of the key set."""

    #: The ``kid`` header of the tokens it signs; None for ``REFRESH_SECRET_KEY``
    #: used alone.
    kid: str | None
    algorithm: str
    #: The key PyJWT signs with: the secret for HMAC, a private key object
    #: otherwise. None for an asymmetric entry given only its public key.
    signing_key: Any
    #: The key PyJWT verifies with: the secret for HMAC, the public key otherwise.
    verifying_key: Any

    @property
    def is_asymmetric(self) -> bool:
        """True for an RSA, EC or OKP key, which belongs in the JWKS."""
        return ALGORITHM_KEY_TYPES[self.algorithm] != "oct"

    @functools.cached_property
    def codec(self) -> jwt.PyJWT:
        """The PyJWT instance that signs and verifies with this key."""
        return pyjwt_for(self.algorithm, self.verifying_key)


@dataclass(frozen=True)
class KeySet:
    """The keys that sign and verify access tokens; the first one signs."""

    keys: tuple[SigningKey, ...]

    @property
    def signer(self) -> SigningKey:
        """The key that signs new tokens."""
        return self.keys[0]

    @property
    def uses_kid(self) -> bool:
        """True when tokens name their key in a ``kid`` header."""
        return self.signer.kid is not None

    def find(self, kid: str) -> SigningKey | None:
        """Return the entry with this ``kid``, or None.

        The ``kid`` is compared with the configured ones and used for nothing
        else, so a path or URL in it cannot reach a file or the network.
        """
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """Return the JWK Set (RFC 7517 section 5) of the asymmetric keys.

        HMAC secrets are never included.
        """
        algorithms = get_default_algorithms()
        keys: list[dict[str, Any]] = []
        for key in self.keys:
            if not key.is_asymmetric:
                continue

            jwk: dict[str, Any] = algorithms[key.algorithm].to_jwk(
                key.verifying_key, as_dict=True
            )
            # RFC 7517 section 4.3: "use" and "key_ops" should not appear together.
            jwk.pop("key_ops", None)
            jwk.update(kid=key.kid, alg=key.algorithm, use="sig")
            keys.append(jwk)

        return {"keys": keys}


def single_secret_key_set(secret_key: bytes, algorithm: str) -> KeySet:
    """Return the key set of ``REFRESH_SECRET_KEY`` alone: one HMAC key, no kid."""
    return KeySet((SigningKey(None, algorithm, secret_key, secret_key),))


def load_key_set(value: object) -> KeySet:
    """Parse and check the value of ``REFRESH_SIGNING_KEYS``.

    :raises ConfigError: the value is not a non-empty list of entries, an entry is
        invalid, or two entries share a ``kid``. The message names the entry.
    """
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ConfigError(
            f"{SETTING} must be a list of mappings with kid, algorithm and key or"
            f" key_file, newest first; got {type(value).__name__}."
        )
    if not value:
        raise ConfigError(f"{SETTING} must list at least one key.")

    keys: list[SigningKey] = []
    for index, entry in enumerate(value):
        key = _load_entry(index, entry)
        if any(existing.kid == key.kid for existing in keys):
            raise ConfigError(
                f"{SETTING}[{index}]: kid {key.kid!r} is already used by another"
                " key. Give every key its own kid."
            )
        keys.append(key)

    if keys[0].signing_key is None:
        raise ConfigError(
            f"{SETTING}[0] (kid {keys[0].kid!r}): the first key signs new tokens, so"
            " it needs a private key, not a public one."
        )

    return KeySet(tuple(keys))


def _load_entry(index: int, entry: object) -> SigningKey:
    where = f"{SETTING}[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(entry).__name__}.")

    unknown = sorted(set(entry) - _ENTRY_FIELDS)
    if unknown:
        raise ConfigError(
            f"{where} has unknown fields {unknown}; allowed are kid, algorithm, key"
            " and key_file."
        )

    kid = entry.get("kid")
    if (
        not isinstance(kid, str)
        or not 0 < len(kid) <= MAX_KID_LENGTH
        or not kid.isprintable()
        or not kid.isascii()
    ):
        raise ConfigError(
            f"{where} needs a kid: a string of 1 to {MAX_KID_LENGTH} printable ASCII"
            f" characters, got {kid!r}."
        )
    where = f"{where} (kid {kid!r})"

    algorithm = entry.get("algorithm")
    if algorithm not in ALGORITHM_KEY_TYPES:
        allowed = ", ".join(ALGORITHM_KEY_TYPES)
        raise ConfigError(
            f"{where}: algorithm must be one of {allowed}, got {algorithm!r}."
        )
    assert isinstance(algorithm, str)

    material = _key_material(where, entry)
    if ALGORITHM_KEY_TYPES[algorithm] == "oct":
        secret = _hmac_secret(where, algorithm, material)
        return SigningKey(kid, algorithm, secret, secret)

    private_key, public_key = _asymmetric_key(where, algorithm, material)
    return SigningKey(kid, algorithm, private_key, public_key)


def _key_material(where: str, entry: Mapping[str, Any]) -> bytes:
    if ("key" in entry) == ("key_file" in entry):
        raise ConfigError(f"{where}: set exactly one of key and key_file.")

    if "key_file" in entry:
        path = entry["key_file"]
        if not isinstance(path, str | os.PathLike):
            raise ConfigError(f"{where}: key_file must be a path, got {path!r}.")
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise ConfigError(
                f"{where}: cannot read key_file {str(path)!r}: {error.strerror}."
            ) from None

    key = entry["key"]
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes):
        return key

    raise ConfigError(f"{where}: key must be a str or bytes, got {type(key).__name__}.")


def _hmac_secret(where: str, algorithm: str, secret: bytes) -> bytes:
    if is_encoded_key(secret):
        raise ConfigError(
            f"{where}: the {algorithm} secret is an encoded public or private key."
            " An HMAC secret must be random bytes; give RSA, EC and Ed25519 keys"
            " their own entry with their own algorithm."
        )
    minimum = HMAC_KEY_BYTES[algorithm]
    if len(secret) < minimum:
        raise ConfigError(
            f"{where}: the secret is {len(secret)} bytes long, but {algorithm} needs"
            f" at least {minimum} random bytes (RFC 7518 section 3.2)."
        )

    return secret


def is_encoded_key(secret: bytes) -> bool:
    """Return whether an HMAC secret is a public or private key or a certificate.

    Such a secret is often public, so tokens signed with it could be forged, and
    PyJWT refuses most of these forms when it signs, which would fail every
    login. Recognised are PEM (also after a UTF-8 byte order mark), OpenSSH, a
    JWK, a JWK Set or a list of JWKs, and DER, also in base64, base64url or hex,
    as a key store or an environment variable may hold it.

    NOTE: DER forms are recognised only with the cryptography package, which
    every asymmetric key of the key set needs too.
    """
    if _refused_by_pyjwt(secret) or _is_key_encoding(secret):
        return True

    return any(_is_key_encoding(decoded) for decoded in _text_decodings(secret))


def _refused_by_pyjwt(secret: bytes) -> bool:
    # PyJWT checks every HMAC key when it signs or verifies (PyJWT 2.15 refuses
    # PEM, OpenSSH, DER and JWK forms). A secret it refuses would pass start-up
    # and then fail every login with a 500.
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except InvalidKeyError:
        return True
    return False


def _is_key_encoding(data: bytes) -> bool:
    # DER is binary: its last byte may be 0x09-0x0d or 0x20, which strip() would
    # remove, so the untouched bytes are tried first.
    if _is_der_key(data):
        return True

    stripped = data.strip()
    if stripped.startswith(_UTF8_BOM):
        stripped = stripped[len(_UTF8_BOM) :].strip()

    if stripped.startswith(_KEY_ENCODING_PREFIXES) or is_pem_format(stripped):
        return True
    if stripped.startswith((b"{", b"[")):
        return _is_jwk_json(stripped)

    return _is_der_key(stripped)


def _is_jwk_json(data: bytes) -> bool:
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return False

    # A JWK, a JWK Set ({"keys": [...]}) or a list of JWKs: any object with a
    # "kty" member is a key.
    pending = [parsed]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if "kty" in value:
                return True
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)

    return False


def _text_decodings(secret: bytes) -> list[bytes]:
    """Return what ``secret`` decodes to as hex, base64 and base64url.

    White space is removed first, because a PEM body without its armour is
    base64 split into lines. Each decoding that fails is left out.
    """
    compact = b"".join(secret.removeprefix(_UTF8_BOM).split())
    decoded: list[bytes] = []
    # UnicodeDecodeError and binascii.Error are both ValueErrors.
    with contextlib.suppress(ValueError):
        decoded.append(bytes.fromhex(compact.decode("ascii")))

    padded = compact + b"=" * (-len(compact) % 4)
    for alternative_characters in (None, b"-_"):
        with contextlib.suppress(ValueError):
            decoded.append(
                base64.b64decode(padded, altchars=alternative_characters, validate=True)
            )

    return decoded


def _is_der_key(data: bytes) -> bool:
    try:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        # Parsing DER needs cryptography, as the NOTE of is_encoded_key says.
        return False

    loaders = (
        serialization.load_der_public_key,
        _load_der_private_key,
        x509.load_der_x509_certificate,
    )
    for load in loaders:
        try:
            load(data)
        except UnsupportedAlgorithm:
            # The structure is a key, of a type that cryptography cannot use.
            return True
        except (ValueError, TypeError):
            continue
        return True
    return False


def _load_der_private_key(data: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_private_key(data, password=None)


def _asymmetric_key(where: str, algorithm: str, pem: bytes) -> tuple[Any, Any]:
    """Load a PEM key and check that it fits ``algorithm``.

    Return the private key (None when only the public key was given) and the
    public key.
    """
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise ConfigError(
            f"{where}: {algorithm} needs the cryptography package. Install"
            " flask-refresh[crypto]."
        ) from None

    private_key: Any = None
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
        public_key: Any = private_key.public_key()
    except (ValueError, TypeError):
        try:
            public_key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{where}: the key is not a PEM private or public key. Encrypted"
                " private keys are not supported."
            ) from None

    _check_key_type(where, algorithm, public_key)
    return private_key, public_key


def _check_key_type(where: str, algorithm: str, public_key: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    key_type = ALGORITHM_KEY_TYPES[algorithm]
    if key_type == "RSA":
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ConfigError(f"{where}: {algorithm} needs an RSA key.")
        if public_key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{where}: the RSA key has {public_key.key_size} bits; {algorithm}"
                f" needs at least {MIN_RSA_BITS} (RFC 7518 section 3.3)."
            )
    elif key_type == "EC":
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise ConfigError(f"{where}: ES256 needs an EC key on the P-256 curve.")
    elif not isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise ConfigError(f"{where}: EdDSA needs an Ed25519 or Ed448 key.")
