"""Session liveness checks for ``REFRESH_CHECK_REVOKED``.

One primary key lookup per request tells whether an access token's session is live.
With ``REFRESH_REVOCATION_CACHE_TTL`` set, results are cached: "revoked" until the
session would have ended anyway, because revocation is final, and "live" for the
TTL. A revocation made through flask-refresh overwrites the cached result at once.
With ``REFRESH_REDIS_URL`` the cache is shared by every process and instance, so a
revocation anywhere takes effect everywhere immediately. The in-process cache of
another worker may still return "live" for up to the TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from .database import database_errors_as_unavailable

if TYPE_CHECKING:
    from .extension import State

logger = logging.getLogger("flask_refresh")

#: How long a "revoked" result is cached: longer than any access token lives.
REVOKED_TTL_SECONDS = 24 * 3600


class StatusCache(Protocol):
    """A store for cached session states."""

    def get(self, session_id: str) -> bool | None:
        """Return True (live), False (revoked) or None (not cached)."""

    def put(self, session_id: str, live: bool, ttl_seconds: float) -> None:
        """Cache a state for ``ttl_seconds``.

        "Live" never replaces a cached "revoked": a request that read the database
        just before a revocation must not undo it.
        """


class MemoryStatusCache:
    """A bounded, thread-safe cache in this process."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, session_id: str) -> bool | None:
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                return None
            live, expires = entry
            if expires <= time.monotonic():
                del self._entries[session_id]
                return None
            return live

    def put(self, session_id: str, live: bool, ttl_seconds: float) -> None:
        with self._lock:
            current = self._entries.get(session_id)
            if live and current is not None and current[0] is False:
                return
            self._entries[session_id] = (live, time.monotonic() + ttl_seconds)
            self._entries.move_to_end(session_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


class RedisStatusCache:
    """A cache in Redis, shared by every process and app instance.

    A Redis failure is logged and treated as a cache miss, so the database is asked
    and nothing fails open.
    """

    KEY_PREFIX = "flask-refresh:session:"

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError as error:
            raise RuntimeError(
                "REFRESH_REDIS_URL is set but the redis package is not installed."
                " Install flask-refresh[redis]."
            ) from error

        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._errors = (redis.RedisError,)
        self._last_error_logged = 0.0

    def get(self, session_id: str) -> bool | None:
        try:
            value = self._client.get(self.KEY_PREFIX + session_id)
        except self._errors as error:
            self._log_error(error)
            return None

        if value is None:
            return None
        return bool(value == b"1")

    def put(self, session_id: str, live: bool, ttl_seconds: float) -> None:
        try:
            self._client.set(
                self.KEY_PREFIX + session_id,
                b"1" if live else b"0",
                px=max(1, int(ttl_seconds * 1000)),
                nx=live,
            )
        except self._errors as error:
            self._log_error(error)

    def _log_error(self, error: Exception) -> None:
        # One line a minute at most: a Redis outage must not flood the log.
        now = time.monotonic()
        if now - self._last_error_logged >= 60:
            self._last_error_logged = now
            logger.warning(
                "Redis session cache failed (%s: %s); asking the database instead.",
                type(error).__name__,
                error,
            )


def build_cache(redis_url: str | None, ttl_seconds: float) -> StatusCache | None:
    """Return the cache the settings ask for, or None when caching is off."""
    if ttl_seconds <= 0:
        return None
    if redis_url is not None:
        return RedisStatusCache(redis_url)
    return MemoryStatusCache()


def is_session_live(state: State, session_id: str) -> bool:
    """Return whether the session exists and is not revoked."""
    cache = state.status_cache
    if cache is not None:
        cached = cache.get(session_id)
        if cached is not None:
            return cached

    family = state.models.family
    with database_errors_as_unavailable(state, "checking a session"):
        row = state.db.session.execute(
            sa.select(family.revoked_at).where(family.id == session_id)
        ).one_or_none()

    live = row is not None and row[0] is None
    if cache is not None:
        ttl = state.settings.revocation_cache_ttl.total_seconds()
        cache.put(session_id, live, ttl if live else REVOKED_TTL_SECONDS)

    return live


def mark_revoked(state: State, session_ids: list[str]) -> None:
    """Overwrite cached answers for sessions that were just revoked."""
    if state.status_cache is None:
        return

    for session_id in session_ids:
        state.status_cache.put(session_id, False, REVOKED_TTL_SECONDS)
