"""Start-up checks that span several cookie settings.

Each setting is parsed on its own in :mod:`flask_refresh.settings`. These checks
need several of them together: the refresh cookie's Path comes from
``REFRESH_URL_PREFIX``, and the ``__Secure-`` and ``__Host-`` cookie name
prefixes of the RFC 6265bis draft constrain the Secure, Domain and Path
attributes that the other settings give.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config_values import ConfigError

if TYPE_CHECKING:
    from .settings import Settings

#: Browsers store a cookie whose name starts with this only when it is Secure.
SECURE_PREFIX = "__secure-"
#: Browsers store a cookie whose name starts with this only when it is Secure,
#: has no Domain and has the Path "/", so that no other host can set it.
HOST_PREFIX = "__host-"


def check_cookie_settings(settings: Settings) -> None:
    """Check the cookie settings together, for the cookies the settings use.

    :raises ConfigError: the refresh cookie would be sent to every route, or a
        cookie name has a prefix whose rules its attributes break, so that
        browsers would drop the cookie. The message names the key.
    """
    uses_access_cookie = "cookies" in settings.access_token_location
    uses_refresh_cookie = "cookies" in settings.refresh_token_location
    if uses_refresh_cookie and settings.url_prefix == "/":
        raise ConfigError(
            'REFRESH_URL_PREFIX is "/", which would be the Path of the refresh'
            " cookie, so browsers would send the refresh token to every route of"
            ' the app. Mount the token routes under a prefix such as "/auth", or'
            ' remove "cookies" from REFRESH_REFRESH_TOKEN_LOCATION.'
        )

    cookies: list[tuple[str, str, str]] = []
    if uses_access_cookie:
        cookies.append(
            (
                "REFRESH_ACCESS_COOKIE_NAME",
                settings.access_cookie_name,
                settings.access_cookie_path,
            )
        )
    if uses_refresh_cookie:
        cookies.append(
            (
                "REFRESH_REFRESH_COOKIE_NAME",
                settings.refresh_cookie_name,
                settings.url_prefix,
            )
        )
    if uses_access_cookie or uses_refresh_cookie:
        cookies.append(("REFRESH_CSRF_COOKIE_NAME", settings.csrf_cookie_name, "/"))

    for key, name, path in cookies:
        _check_name_prefix(settings, key, name, path)


def _check_name_prefix(settings: Settings, key: str, name: str, path: str) -> None:
    # Compared without regard to case, which is at least as strict as any
    # browser's own check.
    lowered = name.lower()
    if not lowered.startswith((SECURE_PREFIX, HOST_PREFIX)):
        return

    if not settings.cookie_secure:
        raise ConfigError(
            f"{key} is {name!r}, and browsers keep a cookie with that prefix only"
            " when it is Secure. Set REFRESH_COOKIE_SECURE to True, or rename it."
        )
    if not lowered.startswith(HOST_PREFIX):
        return

    if settings.cookie_domain is not None:
        raise ConfigError(
            f"{key} is {name!r}, and browsers keep a __Host- cookie only without a"
            " Domain. Unset REFRESH_COOKIE_DOMAIN, or use the __Secure- prefix."
        )
    if path != "/":
        raise ConfigError(
            f"{key} is {name!r}, and browsers keep a __Host- cookie only with the"
            f' Path "/", but this cookie\'s Path is {path!r}. Use the __Secure-'
            " prefix for it."
        )
