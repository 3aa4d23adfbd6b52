"""Blinker signals for audit hooks and metrics.

Each signal is sent with the Flask app as sender. Receivers get ids, never a token or
a password::

    from flask_refresh import signals

    @signals.token_reuse_detected.connect_via(app)
    def alert(app, user_id, family_id, **extra):
        ...
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A login succeeded and a new family started. Keywords: ``user_id``, ``family_id``.
login_succeeded = _signals.signal("login-succeeded")

#: A login failed. Keyword: ``username`` (as submitted, possibly not a real account).
login_failed = _signals.signal("login-failed")

#: A refresh token was rotated. Keywords: ``user_id``, ``family_id``, ``retry``
#: (True when a retry within the grace interval got the same successor again).
token_rotated = _signals.signal("token-rotated")

#: A spent refresh token was presented after the grace interval. Keywords:
#: ``user_id``, ``family_id``, ``token_id``, ``revoked`` (False in report-only mode).
token_reuse_detected = _signals.signal("token-reuse-detected")

#: A family was revoked. Keywords: ``user_id``, ``family_id``, ``reason``.
session_revoked = _signals.signal("session-revoked")
