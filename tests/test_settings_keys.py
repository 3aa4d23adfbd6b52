"""Start-up checks of REFRESH_SIGNING_KEYS and the cookie, header and claim keys."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import RSAAlgorithm
from signing_keys import (
    ASYMMETRIC_ALGORITHMS,
    key_entry,
    private_key,
    private_pem,
    public_der,
    public_pem,
)

from flask_refresh.settings import ConfigError, load_settings

SECRET = "s" * 32


def settings_with_keys(keys: Any, **config: Any) -> Any:
    return load_settings(
        {"REFRESH_SECRET_KEY": SECRET, "REFRESH_SIGNING_KEYS": keys, **config}
    )


def test_secret_key_alone_has_no_kid() -> None:
    settings = load_settings({"REFRESH_SECRET_KEY": SECRET})

    (key,) = settings.signing_keys.keys
    assert key.kid is None
    assert key.algorithm == "HS256"
    assert key.signing_key == SECRET.encode()


def test_first_key_signs() -> None:
    settings = settings_with_keys(
        [key_entry("new", "ES256"), key_entry("old", "RS256")]
    )

    assert settings.signing_keys.signer.kid == "new"
    assert [key.kid for key in settings.signing_keys.keys] == ["new", "old"]


@pytest.mark.parametrize("algorithm", [*ASYMMETRIC_ALGORITHMS, "HS256", "HS512"])
def test_each_algorithm_accepted(algorithm: str) -> None:
    settings = settings_with_keys([key_entry("k1", algorithm)])

    assert settings.signing_keys.signer.algorithm == algorithm


def test_algorithm_with_key_set_rejected() -> None:
    with pytest.raises(ConfigError, match="REFRESH_ALGORITHM applies only"):
        settings_with_keys([key_entry("k1", "ES256")], REFRESH_ALGORITHM="HS256")


@pytest.mark.parametrize(
    "value", ["k1", {"kid": "k1"}, [], 5, [["k1", "HS256", SECRET]]]
)
def test_key_set_of_wrong_shape_rejected(value: Any) -> None:
    with pytest.raises(ConfigError, match="REFRESH_SIGNING_KEYS"):
        settings_with_keys(value)


@pytest.mark.parametrize("algorithm", ["none", "None", "RS512", "ES384", "hs256", ""])
def test_algorithm_outside_allowed_set_rejected(algorithm: str) -> None:
    entry = {**key_entry("k1", "HS256"), "algorithm": algorithm}

    with pytest.raises(ConfigError, match=r"REFRESH_SIGNING_KEYS\[0\].*algorithm"):
        settings_with_keys([entry])


@pytest.mark.parametrize("kid", [None, "", 7, "a" * 129, "line\nbreak", "clé"])
def test_invalid_kid_rejected(kid: Any) -> None:
    entry = {**key_entry("k1", "HS256"), "kid": kid}

    with pytest.raises(ConfigError, match=r"REFRESH_SIGNING_KEYS\[0\] needs a kid"):
        settings_with_keys([entry])


def test_duplicate_kid_rejected() -> None:
    keys = [key_entry("same", "HS256"), key_entry("same", "ES256")]

    with pytest.raises(ConfigError, match=r"\[1\]: kid 'same' is already used"):
        settings_with_keys(keys)


def test_unknown_entry_field_rejected() -> None:
    entry = {**key_entry("k1", "HS256"), "use": "sig"}

    with pytest.raises(ConfigError, match=r"unknown fields \['use'\]"):
        settings_with_keys([entry])


def test_key_and_key_file_together_rejected(tmp_path: Path) -> None:
    entry = {**key_entry("k1", "HS256"), "key_file": str(tmp_path / "key")}

    with pytest.raises(ConfigError, match="exactly one of key and key_file"):
        settings_with_keys([entry])


def test_key_file_read(tmp_path: Path) -> None:
    path = tmp_path / "es256.pem"
    path.write_text(private_pem(private_key("ES256")))

    settings = settings_with_keys(
        [{"kid": "k1", "algorithm": "ES256", "key_file": str(path)}]
    )

    expected = private_key("ES256").public_key().public_numbers()
    assert settings.signing_keys.signer.verifying_key.public_numbers() == expected


def test_unreadable_key_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"

    with pytest.raises(ConfigError) as error:
        settings_with_keys([{"kid": "k1", "algorithm": "ES256", "key_file": missing}])

    assert f"cannot read key_file {str(missing)!r}" in str(error.value)
    assert "kid 'k1'" in str(error.value)


@pytest.mark.parametrize(("algorithm", "minimum"), [("HS256", 32), ("HS512", 64)])
def test_short_hmac_key_rejected(algorithm: str, minimum: int) -> None:
    entry = {"kid": "k1", "algorithm": algorithm, "key": "k" * (minimum - 1)}

    with pytest.raises(ConfigError, match=f"needs at least {minimum} random bytes"):
        settings_with_keys([entry])


def test_short_rsa_key_rejected() -> None:
    # A weak key on purpose: start-up must reject it.
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    entry = {"kid": "k1", "algorithm": "RS256", "key": private_pem(short)}

    with pytest.raises(ConfigError, match="1024 bits; RS256 needs at least 2048"):
        settings_with_keys([entry])


@pytest.mark.parametrize(
    ("algorithm", "other"),
    [
        ("RS256", "ES256"),
        ("PS256", "EdDSA"),
        ("ES256", "RS256"),
        ("EdDSA", "ES256"),
    ],
)
def test_key_of_other_family_rejected(algorithm: str, other: str) -> None:
    entry = {"kid": "k1", "algorithm": algorithm, "key": key_entry("x", other)["key"]}

    with pytest.raises(ConfigError, match=rf"kid 'k1'\): {algorithm} needs"):
        settings_with_keys([entry])


def test_es256_needs_p256_curve() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    entry = {"kid": "k1", "algorithm": "ES256", "key": private_pem(p384)}

    with pytest.raises(ConfigError, match="P-256"):
        settings_with_keys([entry])


def rsa_public_key_encodings() -> dict[str, bytes]:
    """The RSA key in every encoding that a key file or a secret store may hold."""
    key = private_key("RS256")
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    ssh = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    der = public_der(key)
    pem_body = b"".join(public_pem(key).splitlines()[1:-1])
    ec_private_der = private_key("ES256").private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ed25519_der = public_der(private_key("EdDSA"))
    return {
        "pem": public_pem(key),
        "pem with leading space": b"  " + public_pem(key),
        "pem with utf-8 bom": b"\xef\xbb\xbf" + public_pem(key),
        "der": der,
        "base64 der": base64.b64encode(der),
        "base64url der": base64.urlsafe_b64encode(der).rstrip(b"="),
        "pem body without armour": pem_body,
        "hex der": der.hex().encode(),
        "upper-case hex der": der.hex().upper().encode(),
        "base64 pem": base64.b64encode(public_pem(key)),
        "base64 ec private der": base64.b64encode(ec_private_der),
        "hex ed25519 der": ed25519_der.hex().encode(),
        "jwk": json.dumps(jwk).encode(),
        "jwk set": json.dumps({"keys": [jwk]}).encode(),
        "jwk list": json.dumps([jwk]).encode(),
        "openssh": ssh,
        "private pem": private_pem(key).encode(),
    }


@pytest.mark.parametrize("encoding", list(rsa_public_key_encodings()))
@pytest.mark.parametrize("algorithm", ["HS256", "HS512"])
def test_asymmetric_key_as_hmac_secret_rejected(encoding: str, algorithm: str) -> None:
    secret = rsa_public_key_encodings()[encoding]
    entry = {"kid": "k1", "algorithm": algorithm, "key": secret}

    with pytest.raises(ConfigError) as error:
        settings_with_keys([entry])

    assert "REFRESH_SIGNING_KEYS[0] (kid 'k1')" in str(error.value)
    assert "is an encoded public or private key" in str(error.value)


@pytest.mark.parametrize("encoding", list(rsa_public_key_encodings()))
@pytest.mark.parametrize("signing_keys", [None, "set"], ids=["alone", "with-key-set"])
def test_asymmetric_key_as_secret_key_rejected(
    encoding: str, signing_keys: str | None
) -> None:
    """REFRESH_SECRET_KEY also derives refresh tokens, so it is checked either way."""
    secret = rsa_public_key_encodings()[encoding]
    config: dict[str, Any] = {"REFRESH_SECRET_KEY": secret}
    if signing_keys:
        config["REFRESH_SIGNING_KEYS"] = [key_entry("k1", "ES256")]

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert str(error.value).startswith("REFRESH_SECRET_KEY is an encoded public")


@pytest.mark.parametrize(
    "secret",
    [
        secrets.token_urlsafe(48),
        secrets.token_hex(32),
        base64.b64encode(secrets.token_bytes(48)).decode(),
        secrets.token_bytes(64),
        SECRET * 2,
        "correct horse battery staple and more words",
    ],
    ids=["urlsafe", "hex", "base64", "bytes", "letters", "passphrase"],
)
def test_random_secret_accepted(secret: str | bytes) -> None:
    settings = load_settings({"REFRESH_SECRET_KEY": secret})
    entry_settings = settings_with_keys(
        [{"kid": "k1", "algorithm": "HS256", "key": secret}]
    )

    assert settings.signing_keys.signer.kid is None
    assert entry_settings.signing_keys.signer.kid == "k1"


def test_public_key_cannot_sign() -> None:
    public = {
        "kid": "k1",
        "algorithm": "ES256",
        "key": public_pem(private_key("ES256")),
    }

    with pytest.raises(ConfigError, match=r"\[0\].*needs a private key"):
        settings_with_keys([public])


def test_public_key_may_verify() -> None:
    public = {
        "kid": "old",
        "algorithm": "ES256",
        "key": public_pem(private_key("ES256")),
    }

    settings = settings_with_keys([key_entry("new", "EdDSA"), public])

    old = settings.signing_keys.find("old")
    assert old is not None
    assert old.signing_key is None


def test_encrypted_private_key_rejected() -> None:
    encrypted = private_key("ES256").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"password"),
    )
    entry = {"kid": "k1", "algorithm": "ES256", "key": encrypted}

    with pytest.raises(ConfigError, match="Encrypted private keys are not supported"):
        settings_with_keys([entry])


def test_public_jwks_lists_only_asymmetric_keys() -> None:
    settings = settings_with_keys(
        [
            key_entry("hmac", "HS256"),
            key_entry("ec", "ES256"),
            key_entry("rsa", "RS256"),
        ]
    )

    jwks = settings.signing_keys.public_jwks()

    assert [key["kid"] for key in jwks["keys"]] == ["ec", "rsa"]
    for key in jwks["keys"]:
        assert key["use"] == "sig"
        assert "key_ops" not in key
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)
    secret = base64.urlsafe_b64encode(key_entry("hmac", "HS256")["key"].encode())
    assert secret.rstrip(b"=").decode() not in json.dumps(jwks)


# ---------------------------------------------------------------------------
# Claims, header, token locations and cookies
# ---------------------------------------------------------------------------


def test_audience_list_kept_in_order() -> None:
    settings = load_settings(
        {"REFRESH_SECRET_KEY": SECRET, "REFRESH_AUDIENCE": ["api", "billing"]}
    )

    assert settings.audience == ("api", "billing")


@pytest.mark.parametrize("value", [[], ["api", ""], ["api", 5], 5, ""])
def test_invalid_audience_rejected(value: Any) -> None:
    with pytest.raises(ConfigError, match="REFRESH_AUDIENCE"):
        load_settings({"REFRESH_SECRET_KEY": SECRET, "REFRESH_AUDIENCE": value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REFRESH_HEADER_NAME", ""),
        ("REFRESH_HEADER_NAME", "X Token"),
        ("REFRESH_HEADER_TYPE", "Bearer token"),
        ("REFRESH_HEADER_TYPE", None),
        ("REFRESH_ACCESS_TOKEN_LOCATION", "json"),
        ("REFRESH_ACCESS_TOKEN_LOCATION", []),
        ("REFRESH_ACCESS_TOKEN_LOCATION", ["headers", "headers"]),
        ("REFRESH_ACCESS_TOKEN_LOCATION", "body"),
        ("REFRESH_REFRESH_TOKEN_LOCATION", "query_string"),
        ("REFRESH_REFRESH_TOKEN_LOCATION", "headers"),
        ("REFRESH_COOKIE_SAMESITE", "sometimes"),
        ("REFRESH_COOKIE_SECURE", "yes"),
        ("REFRESH_ACCESS_COOKIE_NAME", "a;b"),
        ("REFRESH_ACCESS_COOKIE_PATH", "api"),
        ("REFRESH_CSRF_HEADER_NAME", "X-CSRF Token"),
        ("REFRESH_JWKS_MAX_AGE", -1),
    ],
)
def test_invalid_transport_value_names_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings({"REFRESH_SECRET_KEY": SECRET, key: value})


def test_samesite_none_needs_secure() -> None:
    config = {
        "REFRESH_SECRET_KEY": SECRET,
        "REFRESH_COOKIE_SAMESITE": "None",
        "REFRESH_COOKIE_SECURE": False,
    }

    with pytest.raises(ConfigError, match="Set REFRESH_COOKIE_SECURE to True"):
        load_settings(config)


def test_samesite_is_case_insensitive() -> None:
    settings = load_settings(
        {"REFRESH_SECRET_KEY": SECRET, "REFRESH_COOKIE_SAMESITE": "lax"}
    )

    assert settings.cookie_samesite == "Lax"


def test_cookie_names_must_differ() -> None:
    config = {"REFRESH_SECRET_KEY": SECRET, "REFRESH_CSRF_COOKIE_NAME": "access_token"}

    with pytest.raises(ConfigError, match="both 'access_token'"):
        load_settings(config)


def test_location_order_kept() -> None:
    settings = load_settings(
        {
            "REFRESH_SECRET_KEY": SECRET,
            "REFRESH_ACCESS_TOKEN_LOCATION": ["cookies", "headers"],
            "REFRESH_REFRESH_TOKEN_LOCATION": "cookies",
        }
    )

    assert settings.access_token_location == ("cookies", "headers")
    assert settings.refresh_token_location == ("cookies",)


def test_empty_header_type_allowed() -> None:
    settings = load_settings({"REFRESH_SECRET_KEY": SECRET, "REFRESH_HEADER_TYPE": ""})

    assert settings.header_type == ""


# ---------------------------------------------------------------------------
# Cookie settings checked together
# ---------------------------------------------------------------------------

COOKIES = {
    "REFRESH_ACCESS_TOKEN_LOCATION": "cookies",
    "REFRESH_REFRESH_TOKEN_LOCATION": "cookies",
}


@pytest.mark.parametrize(
    "refresh_location", ["cookies", ["body", "cookies"]], ids=["cookies", "mixed"]
)
def test_root_prefix_rejected_with_refresh_cookie(refresh_location: Any) -> None:
    config = {
        "REFRESH_SECRET_KEY": SECRET,
        "REFRESH_URL_PREFIX": "/",
        "REFRESH_REFRESH_TOKEN_LOCATION": refresh_location,
    }

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert str(error.value).startswith('REFRESH_URL_PREFIX is "/"')
    assert "every route" in str(error.value)


@pytest.mark.parametrize(
    "locations",
    [{}, {"REFRESH_ACCESS_TOKEN_LOCATION": "cookies"}],
    ids=["headers-and-body", "access-cookie"],
)
def test_root_prefix_allowed_without_refresh_cookie(locations: dict[str, str]) -> None:
    settings = load_settings(
        {"REFRESH_SECRET_KEY": SECRET, "REFRESH_URL_PREFIX": "/", **locations}
    )

    assert settings.url_prefix == "/"


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (
            {"REFRESH_REFRESH_COOKIE_NAME": "__Host-rt"},
            "REFRESH_REFRESH_COOKIE_NAME",
            "only with the Path \"/\", but this cookie's Path is '/auth'",
        ),
        (
            {
                "REFRESH_ACCESS_COOKIE_NAME": "__Host-at",
                "REFRESH_ACCESS_COOKIE_PATH": "/api",
            },
            "REFRESH_ACCESS_COOKIE_NAME",
            "this cookie's Path is '/api'",
        ),
        (
            {
                "REFRESH_CSRF_COOKIE_NAME": "__Host-csrf",
                "REFRESH_COOKIE_DOMAIN": "example.test",
            },
            "REFRESH_CSRF_COOKIE_NAME",
            "only without a Domain",
        ),
        (
            {"REFRESH_CSRF_COOKIE_NAME": "__host-csrf", "REFRESH_COOKIE_SECURE": False},
            "REFRESH_CSRF_COOKIE_NAME",
            "only when it is Secure",
        ),
        (
            {
                "REFRESH_REFRESH_COOKIE_NAME": "__Secure-rt",
                "REFRESH_COOKIE_SECURE": False,
            },
            "REFRESH_REFRESH_COOKIE_NAME",
            "only when it is Secure",
        ),
    ],
    ids=["host-refresh", "host-access-path", "host-domain", "host-insecure", "secure"],
)
def test_cookie_name_prefix_rules_enforced(
    overrides: dict[str, Any], key: str, message: str
) -> None:
    config = {"REFRESH_SECRET_KEY": SECRET, **COOKIES, **overrides}

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert str(error.value).startswith(f"{key} is ")
    assert message in str(error.value)


def test_recommended_cookie_names_accepted() -> None:
    settings = load_settings(
        {
            "REFRESH_SECRET_KEY": SECRET,
            **COOKIES,
            "REFRESH_ACCESS_COOKIE_NAME": "__Host-access_token",
            "REFRESH_REFRESH_COOKIE_NAME": "__Secure-refresh_token",
            "REFRESH_CSRF_COOKIE_NAME": "__Host-csrf_token",
        }
    )

    assert settings.refresh_cookie_name == "__Secure-refresh_token"


def test_unused_cookie_name_not_checked() -> None:
    """Without cookies, the cookie names are never sent, so nothing is checked."""
    settings = load_settings(
        {"REFRESH_SECRET_KEY": SECRET, "REFRESH_REFRESH_COOKIE_NAME": "__Host-rt"}
    )

    assert settings.refresh_cookie_name == "__Host-rt"


def der_ending_in_whitespace() -> bytes:
    """Return an Ed25519 public key in DER whose last byte is ASCII white space.

    About one random key in 43 ends this way, so 2000 tries all but never fail.
    """
    for _ in range(2000):
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        der = key.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        if der[-1:].isspace():
            return der
    raise AssertionError("no key in 2000 ended in a white space byte")


@pytest.mark.parametrize(
    "encode", [bytes.hex, base64.b64encode, bytes], ids=["hex", "base64", "raw"]
)
def test_der_ending_in_whitespace_rejected(encode: Any) -> None:
    der = der_ending_in_whitespace()
    secret = encode(der)
    if isinstance(secret, str):
        secret = secret.encode()

    with pytest.raises(ConfigError) as error:
        load_settings({"REFRESH_SECRET_KEY": secret})

    assert str(error.value).startswith("REFRESH_SECRET_KEY is an encoded public")
