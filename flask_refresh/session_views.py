"""Self-service routes for the signed-in user's sessions (token families)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, jsonify

from .decorators import get_claims, jwt_required
from .errors import InvalidToken, SessionNotFound
from .extension import State, get_state
from .login_bridge import load_token_user
from .store import (
    RevokeReason,
    list_sessions,
    revoke_family,
    revoke_user_families,
    session_owner,
)
from .views import blueprint, empty_response


def _current_owner(state: State) -> tuple[str, Any]:
    """Return the current session id and its user id.

    These routes read the session row anyway, so they refuse a revoked session's
    access token whether or not ``REFRESH_CHECK_REVOKED`` is on. They also
    reject the token of a deleted or inactive user, as ``current_user`` does.
    """
    session_id = get_claims()["sid"]
    user_id = session_owner(state, session_id)
    if user_id is None:
        raise InvalidToken("The session of this access token was revoked.")

    load_token_user()

    return session_id, user_id


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


@blueprint.get("/sessions")
@jwt_required()
def sessions() -> Response:
    """List the user's live sessions and mark the current one."""
    state = get_state()
    current_id, user_id = _current_owner(state)
    listed = list_sessions(state, user_id, now=state.clock())

    response = jsonify(
        sessions=[
            {
                "id": info.id,
                "created_at": _iso(info.created_at),
                "last_used_at": _iso(info.last_used_at),
                "expires_at": _iso(info.expires_at),
                "user_agent": info.user_agent,
                "ip_address": info.ip_address,
                "current": info.id == current_id,
            }
            for info in listed
        ]
    )
    # The list names IP addresses and devices: keep it out of shared caches.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.delete("/sessions/<session_id>")
@jwt_required()
def delete_session(session_id: str) -> Response:
    """Revoke one of the user's sessions; another user's session is a 404."""
    state = get_state()
    _, user_id = _current_owner(state)
    if "\x00" in session_id:
        # No session id has one, and PostgreSQL rejects NUL in text.
        raise SessionNotFound()

    revoked = revoke_family(
        state,
        session_id,
        reason=RevokeReason.LOGOUT,
        now=state.clock(),
        user_id=user_id,
    )
    if not revoked:
        raise SessionNotFound()

    return empty_response(204)


@blueprint.post("/logout-all")
@jwt_required()
def logout_all() -> Response:
    """Revoke every session of the user, the current one included."""
    state = get_state()
    _, user_id = _current_owner(state)

    count = revoke_user_families(
        state, user_id, reason=RevokeReason.LOGOUT_ALL, now=state.clock()
    )
    return jsonify(revoked_sessions=count)


@blueprint.post("/logout-others")
@jwt_required()
def logout_others() -> Response:
    """Revoke every session of the user except the current one."""
    state = get_state()
    current_id, user_id = _current_owner(state)

    count = revoke_user_families(
        state,
        user_id,
        reason=RevokeReason.LOGOUT_OTHERS,
        now=state.clock(),
        keep_family_id=current_id,
    )
    return jsonify(revoked_sessions=count)
