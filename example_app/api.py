"""The example API: who am I, and change my password."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from flask_refresh import (
    InvalidRequest,
    InvalidToken,
    RevokeReason,
    TokenRequest,
    get_claims,
    get_state,
    jwt_required,
)

from . import auth, db

api = Blueprint("api", __name__, url_prefix="/api")

MIN_PASSWORD_LENGTH = 8


@api.get("/me")
@jwt_required()
def me() -> ResponseReturnValue:
    """Return the signed-in user."""
    return jsonify(id=current_user.id, username=current_user.username)


@api.post("/password")
@jwt_required(fresh=True)
def change_password() -> ResponseReturnValue:
    """Change the password and sign out every other session.

    Needs a fresh access token, one that came from a login rather than a refresh,
    so that a stolen refresh token cannot be turned into a new password. The
    token's session must also be live: after "log out everywhere" a stolen access
    token must not outlive it here, even with ``REFRESH_CHECK_REVOKED`` off.
    """
    session_id = get_claims()["sid"]
    if not auth.is_session_live(session_id):
        raise InvalidToken("The session of this access token was revoked.")

    # Login rejects passwords over REFRESH_MAX_PASSWORD_LENGTH, so a longer one
    # would lock the account.
    new_password = TokenRequest.from_request(request).string(
        "new_password", max_length=get_state().settings.max_password_length
    )
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"The new_password parameter must be at least {MIN_PASSWORD_LENGTH}"
            " characters long."
        )

    current_user.set_password(new_password)
    revoked = auth.revoke_user_sessions(
        current_user.id,
        reason=RevokeReason.PASSWORD_CHANGED,
        keep_session_id=session_id,
        commit=False,
    )
    db.session.commit()
    return jsonify(revoked_sessions=revoked)
