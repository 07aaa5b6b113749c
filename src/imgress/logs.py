"""structlog set-up: JSON lines (or console), request ids from contextvars, and a
last-line-of-defence redactor so no secret reaches a log line, whoever logged it."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
# Keys whose values are secrets wherever they appear in an event (nested too).
_SECRET_KEY = re.compile(r"token|key|authorization|secret|password|passwd|signature|"
                         r"credential|cookie", re.IGNORECASE)
# Keys that merely contain those words but hold no secret.
_HARMLESS_KEYS = frozenset({"storage_key", "key_count", "sha256"})
# In any string: secret query parameters, user-info in URLs, bearer tokens, API keys.
_QUERY = re.compile(
    r"(?i)([?&;](?:token|x-amz-signature|x-amz-credential|x-amz-security-token|signature|"
    r"sig|access_token|api_key|apikey|key|password)=)[^&#\s\"']*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"']+@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
_API_KEY = re.compile(r"\bigk_[A-Za-z0-9_-]+")


def redact_text(text: str) -> str:
    text = _QUERY.sub(rf"\1{REDACTED}", text)
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _API_KEY.sub(REDACTED, text)


def _redact(value: Any, key: str = "") -> Any:
    if key and key.lower() not in _HARMLESS_KEYS and _SECRET_KEY.search(key) \
            and value not in (None, "", 0):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


def redact_secrets(_: object, __: str, event: MutableMapping[str, Any]
                   ) -> MutableMapping[str, Any]:
    """structlog processor: secrets by key name, and secrets inside any string."""
    for key in list(event):
        event[key] = _redact(event[key], key)
    return event


def configure(level: str = "info", fmt: str = "json") -> None:
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,  # after the traceback is text: exception messages carry URLs
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
