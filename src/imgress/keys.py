"""API keys: accepted keys are kept only as SHA-256 hashes; an owner is a key's hash prefix."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

KEY_FILE = "api_keys.sha256"
ANONYMOUS = "anonymous"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def owner_of(hashed: str) -> str:
    """Records are scoped to the key that made them; the owner never reveals the key."""
    return f"key_{hashed[:16]}"


class KeyRing:
    def __init__(self, hashes: set[str], enabled: bool = True):
        self._hashes = frozenset(hashes)
        self.enabled = enabled

    def owner(self, presented: str | None) -> str | None:
        """The owner for a presented key, or None when it is not accepted."""
        if not self.enabled:
            return ANONYMOUS
        if not presented:
            return None
        hashed = key_hash(presented)
        return owner_of(hashed) if hashed in self._hashes else None


def load_or_create(data_dir: Path, configured: tuple[str, ...], enabled: bool
                   ) -> tuple[KeyRing, str | None]:
    """Configured keys win; otherwise keys stored (hashed) in the data dir, created on the
    first start. Returns the ring and a newly created key to show once (or None)."""
    if not enabled:
        return KeyRing(set(), enabled=False), None
    if configured:
        return KeyRing({key_hash(k) for k in configured}), None
    path = data_dir / KEY_FILE
    if path.exists():
        hashes = {ln.strip() for ln in path.read_text().splitlines() if ln.strip()}
        if hashes:
            return KeyRing(hashes), None
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "igk_" + secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key_hash(key) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return KeyRing({key_hash(key)}), key


SECRET_FILE = "upload_secret"


def load_or_create_secret(data_dir: Path, configured: str) -> bytes:
    """The HMAC secret for upload tokens: configured (shared by all API servers) or kept
    in the data dir, created on first use."""
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # first writer wins when two processes start at once
        tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()
