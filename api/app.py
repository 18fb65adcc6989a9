"""The FastAPI application and the one place errors become HTTP responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.routes import batches, jobs, meta, uploads
from shared.errors import DarkroomError
from shared.model_store import ModelStore
from shared.service import make_dispatcher
from shared.settings import Settings, get_settings
from shared.storage import make_storage

log = logging.getLogger(__name__)


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
    for router in (jobs.router, batches.router, uploads.router, meta.router):
        app.include_router(router)

    @app.exception_handler(DarkroomError)
    async def _darkroom_error(_: Request, exc: DarkroomError) -> JSONResponse:
        if exc.http_status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return JSONResponse(
            status_code=exc.http_status, content={"code": exc.code, "message": exc.message}
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
