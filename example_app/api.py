"""The example API: who am I, and change my password."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from flask_refresh import InvalidRequest, RevokeReason, get_claims, jwt_required

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
    so that a stolen refresh token cannot be turned into a new password.
    """
    body: Any = request.get_json(silent=True)
    new_password = body.get("new_password") if isinstance(body, dict) else None
    if not isinstance(new_password, str) or len(new_password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"Send a JSON object with new_password, at least {MIN_PASSWORD_LENGTH}"
            " characters long."
        )

    current_user.set_password(new_password)
    revoked = auth.revoke_user_sessions(
        current_user.id,
        reason=RevokeReason.PASSWORD_CHANGED,
        keep_session_id=get_claims()["sid"],
        commit=False,
    )
    db.session.commit()
    return jsonify(revoked_sessions=revoked)
