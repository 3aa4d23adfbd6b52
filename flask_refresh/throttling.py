"""Throttling of failed logins with Flask-Limiter.

Two limits apply to ``POST <prefix>/login``, each in Flask-Limiter's rate limit
syntax and each counted over a moving window:

* per account (``REFRESH_LOGIN_LIMIT_PER_ACCOUNT``), keyed on the submitted
  username with case, accents and compatibility forms folded away (see
  :func:`normalize_account`), so that ``Alice``, ``ALICE``, ``Álice`` and
  ``alice`` in full-width letters share one budget;
* per client address (``REFRESH_LOGIN_LIMIT_PER_ADDRESS``), keyed on
  ``request.remote_addr``.

Only failed logins count: a request is counted when the login view reports bad
credentials through :data:`~flask_refresh.signals.login_failed`. Requests are
checked before the view runs, so a throttled request costs no password hash and
its response (429 ``too_many_requests`` with ``Retry-After``) reveals nothing
about the password. A successful login is refused only when its own account or its own
address ran out of failures.

The limiter is a Flask-Limiter :class:`~flask_limiter.Limiter` of its own, which
reads none of the app's ``RATELIMIT_*`` keys. A host that uses Flask-Limiter
keeps its limiter and its settings; both limiters then check the login route.

NOTE: Flask-Limiter tests a limit before the view and counts the failure after
it, so concurrent failures of one account can exceed its limit by up to the
number of requests in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import time
import unicodedata
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, Response, g, request
from flask_limiter import Limit, Limiter, RequestLimit
from limits.errors import ConfigurationError, StorageError
from werkzeug.exceptions import HTTPException

from . import signals
from .config_values import ConfigError
from .errors import AuthError, LoginThrottled, TemporarilyUnavailable
from .token_request import TokenRequest
from .views import blueprint

if TYPE_CHECKING:
    from .extension import State

logger = logging.getLogger("flask_refresh")

#: The endpoint that the limits apply to: the login view of the blueprint.
LOGIN_ENDPOINT = f"{blueprint.name}.login"
#: Prefix of every key the limiter stores, so that it never shares a key with a
#: limiter of the host in the same storage.
KEY_PREFIX = "flask-refresh"
#: The account key of a request whose username cannot be read. Such a request
#: is never counted, because the view rejects it before checking a password.
UNREADABLE_ACCOUNT = "-"

_FAILED_FLAG = "_flask_refresh_login_failed"
_ACCOUNT_KEY_LABEL = b"flask-refresh login throttle v1"


def normalize_account(username: str) -> str:
    """Return the form of ``username`` that its failures are counted under.

    Two names that the user lookup treats as one account must share a budget,
    or an attacker gets a new budget for each spelling. The database decides
    which names are equal: MariaDB's default utf8mb4 collations ignore case and
    accents, so ``démo``, ``dêmo`` and ``demó`` all find the user ``demo``. So
    the key folds away what these collations ignore:

    * NFKD splits accented letters into a base letter and combining marks, and
      folds compatibility characters (full-width letters, ligatures);
    * combining marks, format characters (zero-width space, soft hyphen),
      control characters and :data:`_COLLATION_IGNORED` are dropped;
    * ``casefold`` removes case, and a second NFKD pass decomposes its output;
    * the dotless i (U+0131) becomes ``i`` and a run of ``s`` becomes one
      ``s``, because ``utf8mb4_general_ci`` treats the dotless i as ``i`` and
      ``ß`` as ``s``, where case folding keeps the dotless i and gives ``ss``;
    * NFKC composes what is left, and surrounding white space is dropped
      because user loaders often strip it.

    A key coarser than the database only lets distinct accounts share a budget.

    NOTE: checked with WEIGHT_STRING against utf8mb4_general_ci, the default
    of MariaDB 10.11, for every character of the Basic Multilingual Plane.
    general_ci gives every character above U+FFFF one weight, so a name with an
    emoji has many spellings there. The UCA collations (utf8mb4_unicode_ci,
    utf8mb4_uca1400_ai_ci) are looser still: the characters they ignore are
    dropped here, but they also equate letters without a decomposition (``ð``
    and ``đ`` with ``d``, ``ø`` with ``o``) and the digits of every script, and
    such spellings keep budgets of their own.
    """
    text = _drop_ignored(unicodedata.normalize("NFKD", username))
    text = _drop_ignored(unicodedata.normalize("NFKD", text.casefold()))
    text = _RUN_OF_S.sub("s", text.replace("\u0131", "i"))
    return unicodedata.normalize("NFKC", text).strip()


#: General categories that account names lose: combining marks (Mn, Mc, Me),
#: format characters (Cf) and control characters (Cc).
_IGNORED_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Cf", "Cc"})

#: Letters and signs of other categories that MariaDB 10.11's UCA collations
#: (utf8mb4_unicode_ci, utf8mb4_unicode_520_ci, utf8mb4_uca1400_ai_ci) ignore,
#: as WEIGHT_STRING shows: the Arabic tatweel, tail fragment and start of rub
#: el hizb, the NKo lajanyalan, two Samaritan modifier letters, the Mongolian
#: nirugu and three Vedic signs.
_COLLATION_IGNORED = frozenset(
    "\u0640\ufe73\u06de\u07fa\u0824\u0828\u180a\u1cd3\u1cf2\u1cf3"
)

_RUN_OF_S = re.compile("s+")


def _drop_ignored(text: str) -> str:
    return "".join(
        char
        for char in text
        if char not in _COLLATION_IGNORED
        and unicodedata.category(char) not in _IGNORED_CATEGORIES
    )


def account_key(secret: bytes, username: str) -> str:
    """Return the storage key of an account: an HMAC of its normalised name.

    The username never reaches the storage or Flask-Limiter's log lines, and
    without the app's secret a key cannot be tested against guessed names.
    """
    normalized = normalize_account(username).encode("utf-8", "surrogatepass")
    digest = hmac.new(secret, normalized, hashlib.sha256).hexdigest()
    return f"account:{digest[:32]}"


def init_login_throttle(app: Flask, state: State) -> Limiter | None:
    """Create the login limiter of ``app``, or return None when both limits are off.

    :raises ConfigError: ``REFRESH_LOGIN_LIMIT_STORAGE_URI`` names no storage
        that Flask-Limiter supports, or its client library is not installed.
    """
    settings = state.settings
    secret = hmac.new(settings.secret_key, _ACCOUNT_KEY_LABEL, hashlib.sha256).digest()

    def account() -> str:
        return _account_of_request(state, secret)

    limits: list[Limit] = []
    if settings.login_limit_per_address is not None:
        limits.append(
            Limit(
                settings.login_limit_per_address,
                key_function=_client_address,
                scope="address",
                deduct_when=_login_failed,
            )
        )
    if settings.login_limit_per_account is not None:
        limits.append(
            Limit(
                settings.login_limit_per_account,
                key_function=account,
                scope="account",
                deduct_when=_login_failed,
            )
        )
    if not limits:
        return None

    limiter = Limiter(
        _client_address,
        default_limits=cast(list[Any], limits),
        # Every option is given here, because the limiter reads no app config
        # (see _OwnConfig below).
        strategy="moving-window",
        storage_uri=settings.login_limit_storage_uri,
        # Errors of the storage arrive as StorageError, which fails closed below.
        storage_options={"wrap_exceptions": True},
        key_prefix=KEY_PREFIX,
        headers_enabled=False,
        swallow_errors=False,
        fail_on_first_breach=True,
        in_memory_fallback_enabled=False,
        on_breach=_throttled_response,
        request_identifier=_endpoint,
    )
    limiter.request_filter(_not_login)

    try:
        limiter.init_app(cast(Flask, _OwnConfig(app)))
    except (ConfigurationError, ValueError) as error:
        # Only the scheme is shown: the URI and the error message that repeats
        # it may contain a password.
        scheme = settings.login_limit_storage_uri.partition(":")[0]
        raise ConfigError(
            f"REFRESH_LOGIN_LIMIT_STORAGE_URI names a {scheme!r} storage, which"
            f" Flask-Limiter does not support or cannot load"
            f" ({type(error).__name__}). Use memory:// or redis://..., with"
            " the redis package installed for the latter."
        ) from None

    signals.login_failed.connect(_mark_failed, sender=app, weak=False)
    return limiter


class _OwnConfig:
    """A view of the app for :meth:`Limiter.init_app`, with a config of its own.

    Limiter.init_app reads ``RATELIMIT_*`` keys from ``app.config`` and writes
    defaults into it. The host's keys (its default limits, ``RATELIMIT_ENABLED``,
    an in-memory fallback) must not change the login limits, and the login
    limits must not change the host's config, so the limiter gets an empty
    config. Everything else, such as request hooks and ``extensions``, is the
    real app's.
    """

    def __init__(self, app: Flask) -> None:
        self._app = app
        self.config: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


def _endpoint() -> str:
    return request.endpoint or ""


def _not_login() -> bool:
    # Request filters that return True exempt the request from this limiter.
    return request.endpoint != LOGIN_ENDPOINT


def _client_address() -> str:
    # Behind a proxy, remote_addr is the proxy unless the app applies
    # werkzeug.middleware.proxy_fix.ProxyFix.
    return request.remote_addr or "unknown"


def _account_of_request(state: State, secret: bytes) -> str:
    try:
        params = TokenRequest.from_request(request)
    except (AuthError, HTTPException):
        # The view rejects this body with its own error (400, or 413 for an
        # oversized one) before any password check, so it is never counted. A
        # key function that raised would make Flask-Limiter treat the error as
        # a storage failure.
        return UNREADABLE_ACCOUNT

    for name in (state.settings.login_field, "username"):
        value = params.params.get(name)
        if value is not None:
            if not isinstance(value, str):
                return UNREADABLE_ACCOUNT
            return account_key(secret, value)

    return UNREADABLE_ACCOUNT


def _mark_failed(sender: Flask, **extra: Any) -> None:
    setattr(g, _FAILED_FLAG, True)


def _login_failed(response: Response) -> bool:
    return bool(g.get(_FAILED_FLAG, False))


def _throttled_response(limit: RequestLimit) -> Response:
    retry_after = max(1, math.ceil(limit.window.reset_time - time.time()))
    # The last request argument is the scope, "<endpoint>:account" or
    # "<endpoint>:address"; the key itself is left out of the log.
    logger.info(
        "Login throttled: limit %s of %s exceeded; Retry-After %d s.",
        limit.limit,
        limit.request_args[-1],
        retry_after,
    )
    return LoginThrottled(retry_after).get_response()


@blueprint.errorhandler(StorageError)
def _storage_failed(error: StorageError) -> Response:
    # Without the counts the limits cannot be enforced, so logins fail closed.
    logger.error(
        "Login rate limit storage failed, responded 503: %s",
        type(error.storage_error).__name__,
    )
    return TemporarilyUnavailable().get_response()
