"""Health, readiness and metrics."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from imgress import metrics
from imgress.api.deps import service

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Database, storage and queue reachable (503 otherwise)")
async def readyz(request: Request) -> JSONResponse:
    checks = await to_thread.run_sync(service(request).readiness)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus text format", response_class=Response)
async def prometheus(request: Request) -> Response:
    metrics.QUEUE_DEPTH.set(request.app.state.dispatcher.pending())
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
