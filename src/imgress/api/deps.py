"""Shared HTTP plumbing: the service accessor, auth, error responses, request ids."""

from __future__ import annotations

import secrets
import time
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgress import metrics
from imgress.errors import ImgressError, RateLimited, Unauthorized
from imgress.keys import KeyRing
from imgress.ratelimit import RateLimiter
from imgress.service import ImageService

log = structlog.get_logger("imgress.http")


def service(request: Request) -> ImageService:
    return request.app.state.service


def require_owner(request: Request) -> str:
    """Bearer API key → owner; a 401 with the standard error shape otherwise."""
    ring: KeyRing = request.app.state.keys
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    owner = ring.owner(token.strip() if scheme.lower() == "bearer" else None)
    if owner is None:
        raise Unauthorized(
            "a valid API key is required: Authorization: Bearer <key>",
            code="missing_api_key" if not header else "invalid_api_key",
        )
    limiter: RateLimiter = request.app.state.rate_limiter
    try:
        limiter.check(owner, "api")
    except RateLimited:
        metrics.RATE_LIMITED.labels("api").inc()
        raise
    return owner


def error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImgressError)
    async def _imgress(_: Request, exc: ImgressError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if "retry_after" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after"])
        if exc.status == 413:
            # Refused before the body was read: the connection cannot be reused.
            headers["Connection"] = "close"
        return error_response(exc.status, exc.to_dict(), headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        return error_response(400, {"code": "invalid_request",
                                    "message": "the request is not valid",
                                    "problems": problems})

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, {"code": code, "message": str(exc.detail)},
                              getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=type(exc).__name__)
        return error_response(500, {"code": "internal_error",
                                    "message": "the server failed; the error was logged"})


class RequestContext:
    """Pure ASGI middleware (streaming-safe): a request id bound to every log line,
    one access log line per request, and request metrics by route template."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() \
            else "req_" + secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The route template (/v1/images/{image_id}), never the raw path or query:
            # a bounded label, and no ids or tokens in the log.
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            metrics.REQUESTS.labels(scope["method"], template, f"{status // 100}xx").inc()
            log.info("request", method=scope["method"], route=template, status=status,
                     ms=round((time.perf_counter() - started) * 1000, 1))
