"""The FastAPI application and the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from api.deps import get_caller
from api.metrics import metrics_registry
from api.routes import batches, jobs, meta, uploads
from api.schemas import ErrorBody
from shared.errors import DarkroomError, RateLimited, Unauthenticated
from shared.model_store import ModelStore
from shared.quotas import SubmissionLimiter
from shared.service import make_dispatcher
from shared.settings import Settings, get_settings
from shared.storage import make_storage

log = logging.getLogger(__name__)

# What any /v1 operation may answer besides success, all with the same {code, message} body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": description}
    for code, description in {
        400: "Invalid request (a rule the schema cannot express, a malformed body)",
        401: "Missing, unknown or revoked API key",
        403: "Input outside the allowed buckets or the tenant's prefix",
        404: "No such job or batch for this tenant",
        409: "Conflict with the job's state",
        413: "Upload too large",
        422: "Invalid fields, unknown model or options",
        429: "Over the tenant's rate or quota; see Retry-After",
        503: "A dependency is down, or the model's weights are not installed",
    }.items()
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Darkroom",
        version="0.1.0",
        description="Restore dark, noisy, shaken photos at scale.",
    )
    app.state.settings = settings
    app.state.storage = make_storage(settings)
    app.state.models = ModelStore(settings, app.state.storage)
    app.state.dispatcher = make_dispatcher(settings)
    app.state.limiter = SubmissionLimiter(settings)
    app.state.metrics = metrics_registry(settings)
    # Everything under /v1 acts for a tenant; /healthz and /readyz stay open for probes.
    for router in (jobs.router, batches.router, uploads.router, meta.models_router):
        app.include_router(router, dependencies=[Depends(get_caller)], responses=ERROR_RESPONSES)
    app.include_router(meta.router)

    @app.exception_handler(DarkroomError)
    async def _darkroom_error(_: Request, exc: DarkroomError) -> JSONResponse:
        if exc.http_status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        elif isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            status_code=exc.http_status,
            content={"code": exc.code, "message": exc.message},
            headers=headers,
        )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own errors (unparseable body, unknown path, wrong method) in the same
        shape as ours; a 405 lists every method the path has, not just one route's."""
        headers = dict(exc.headers or {})
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            headers["Allow"] = ", ".join(sorted(_methods_for(app, request)))
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            status_code=exc.status_code,
            content={"code": code, "message": str(exc.detail)},
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={"code": "invalid_request", "message": summary, "details": details},
        )

    return app


def _methods_for(app: FastAPI, request: Request) -> set[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods
