"""One-time upload tokens: HMAC-signed claims (id, size, type, sha256, expiry).

Stateless to verify; single use is enforced by the upload's state in the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from imgress.errors import TokenRejected


@dataclass(frozen=True, slots=True)
class Claims:
    upload_id: str
    size: int
    content_type: str
    sha256: str | None
    expires: int

    def message(self) -> bytes:
        return f"v1|{self.upload_id}|{self.size}|{self.content_type}|{self.sha256 or ''}|" \
               f"{self.expires}".encode()


class Signer:
    def __init__(self, secret: bytes):
        self._secret = secret

    def _mac(self, claims: Claims) -> str:
        digest = hmac.new(self._secret, claims.message(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, claims: Claims) -> str:
        return f"{claims.expires}.{self._mac(claims)}"

    def verify(self, token: str, claims_without_expiry: Claims, now: float | None = None
               ) -> None:
        """Raise TokenRejected unless `token` signs exactly these claims and is unexpired."""
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or not mac:
            raise TokenRejected("the upload token is malformed")
        claims = Claims(claims_without_expiry.upload_id, claims_without_expiry.size,
                        claims_without_expiry.content_type, claims_without_expiry.sha256,
                        int(expires_text))
        if not hmac.compare_digest(mac, self._mac(claims)):
            raise TokenRejected("the upload token is forged, altered or for another upload")
        if claims.expires < (now if now is not None else time.time()):
            raise TokenRejected("the upload token has expired", code="token_expired")


class LinkSigner:
    """Signed, expiring links (an archive URL a browser can follow without a header)."""

    def __init__(self, secret: bytes, purpose: str):
        self._secret, self._purpose = secret, purpose

    def _mac(self, subject: str, expires: int) -> str:
        message = f"link|{self._purpose}|{subject}|{expires}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, subject: str, expires: int) -> str:
        return f"{expires}.{self._mac(subject, expires)}"

    def verify(self, token: str, subject: str, now: float | None = None) -> None:
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or not mac:
            raise TokenRejected("the link token is malformed")
        if not hmac.compare_digest(mac, self._mac(subject, int(expires_text))):
            raise TokenRejected("the link token is forged or for something else")
        if int(expires_text) < (now if now is not None else time.time()):
            raise TokenRejected("the link has expired", code="token_expired")
