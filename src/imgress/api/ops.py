"""Health, readiness and metrics."""

from __future__ import annotations

import time

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from imgress import metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Database, storage and queue reachable (503 otherwise)")
async def readyz(request: Request) -> JSONResponse:
    """Which dependency is down, in the body; about a second at worst, cached a second."""
    started = time.perf_counter()
    checks = await to_thread.run_sync(request.app.state.readiness)
    failing = sorted(name for name, verdict in checks.items() if verdict != "ok")
    return JSONResponse({"status": "unavailable" if failing else "ready", "checks": checks,
                         "failing": failing,
                         "ms": round((time.perf_counter() - started) * 1000, 1)},
                        status_code=503 if failing else 200)


@router.get("/metrics", summary="Prometheus text format", response_class=Response)
async def prometheus(request: Request) -> Response:
    body = await to_thread.run_sync(metrics.exposition, [request.app.state.backlog])
    return Response(body, media_type=CONTENT_TYPE_LATEST)
