"""The error tree: each error carries its HTTP status, a stable code and a public message.

Backends raise these (or their own, translated at the edge); only the HTTP layer turns
them into responses, always with the shape {"error": {"code", "message", ...}}.
"""

from __future__ import annotations

from typing import Any


class ImgressError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class BadRequest(ImgressError):
    status, code = 400, "bad_request"


class Unauthorized(ImgressError):
    status, code = 401, "unauthorized"


class NotFound(ImgressError):
    status, code = 404, "not_found"


class Conflict(ImgressError):
    status, code = 409, "conflict"


class PayloadTooLarge(ImgressError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ImgressError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ImgressError):
    status, code = 422, "unprocessable"


class RejectedPart(ImgressError):
    """A single upload part refused; the request as a whole still succeeds."""

    status, code = 422, "rejected"


class ProcessingError(ImgressError):
    """An image that cannot be rendered; it ends `failed` with this code."""

    status, code = 422, "processing_failed"


class TokenRejected(ImgressError):
    """A forged, altered or expired upload token."""

    status, code = 403, "invalid_token"


class TokenUsed(ImgressError):
    status, code = 409, "token_used"


class RateLimited(ImgressError):
    status, code = 429, "rate_limited"
