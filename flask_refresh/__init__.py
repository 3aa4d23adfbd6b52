"""flask-refresh: JWT access tokens and rotating refresh tokens for Flask."""

from __future__ import annotations

from . import signals
from .config_values import ConfigError
from .decorators import get_claims, jwt_required, verify_jwt_in_request
from .errors import (
    AuthError,
    BearerError,
    CSRFError,
    InsufficientScope,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    LoginThrottled,
    MalformedAuthorization,
    MethodNotAllowed,
    MissingToken,
    RequestTooLarge,
    SessionNotFound,
    TemporarilyUnavailable,
    UnsupportedGrantType,
)
from .extension import RefreshAuth, State, get_state
from .openapi import openapi_spec
from .settings import Settings
from .store import RevokeReason
from .token_request import TokenRequest
from .types import UTCDateTime

__all__ = [
    "AuthError",
    "BearerError",
    "CSRFError",
    "ConfigError",
    "InsufficientScope",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidToken",
    "LoginThrottled",
    "MalformedAuthorization",
    "MethodNotAllowed",
    "MissingToken",
    "RefreshAuth",
    "RequestTooLarge",
    "RevokeReason",
    "SessionNotFound",
    "Settings",
    "State",
    "TemporarilyUnavailable",
    "TokenRequest",
    "UTCDateTime",
    "UnsupportedGrantType",
    "get_claims",
    "get_state",
    "jwt_required",
    "openapi_spec",
    "signals",
    "verify_jwt_in_request",
]
