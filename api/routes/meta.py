"""Models, liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api.deps import DispatcherDep, ModelsDep, SessionDep, SettingsDep, StorageDep
from api.metrics import render
from api.schemas import ModelOut, Readiness

router = APIRouter(tags=["meta"])
models_router = APIRouter(tags=["meta"])


@models_router.get("/v1/models", response_model=list[ModelOut])
def list_models(settings: SettingsDep, models: ModelsDep) -> list[ModelOut]:
    """Every model Darkroom knows, whether its weights are installed (``ready``) and whether
    jobs may name it under its licence here (``allowed``)."""
    return [
        ModelOut.from_entry(
            entry,
            settings.queue_for(entry.family),
            ready=models.ready(entry),
            allowed=models.allowed(entry),
        )
        for entry in models.entries()
    ]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up; says nothing about its dependencies (see /readyz)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness)
def readyz(
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
) -> Readiness:
    checks: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # report, don't raise: readiness is a report
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        storage.check()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"error: {exc}"
    if settings.execution == "celery":
        try:
            dispatcher.check()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(ready=ready, checks=checks)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: jobs per status, queue depth per model family, webhook states."""
    return Response(render(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
