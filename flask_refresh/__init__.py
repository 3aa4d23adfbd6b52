"""flask-refresh: JWT access tokens and rotating refresh tokens for Flask."""

from __future__ import annotations

from . import signals
from .decorators import get_claims, jwt_required, verify_jwt_in_request
from .errors import (
    AuthError,
    BearerError,
    InsufficientScope,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    MalformedAuthorization,
    MissingToken,
    TemporarilyUnavailable,
    UnsupportedGrantType,
)
from .extension import RefreshAuth, State, get_state
from .settings import ConfigError, Settings
from .store import RevokeReason
from .types import UTCDateTime

__all__ = [
    "AuthError",
    "BearerError",
    "ConfigError",
    "InsufficientScope",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidToken",
    "MalformedAuthorization",
    "MissingToken",
    "RefreshAuth",
    "RevokeReason",
    "Settings",
    "State",
    "TemporarilyUnavailable",
    "UTCDateTime",
    "UnsupportedGrantType",
    "get_claims",
    "get_state",
    "jwt_required",
    "signals",
    "verify_jwt_in_request",
]
