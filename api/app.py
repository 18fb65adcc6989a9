"""The FastAPI application: its state (built once per process), routers and error handlers."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from api import errors
from api.deps import get_caller
from api.metrics import metrics_registry
from api.routes import batches, jobs, meta, reports, uploads
from shared.catalogue import ModelStore
from shared.config import Settings, get_settings
from shared.queue import make_dispatcher
from shared.storage import make_storage
from shared.tenants import SubmissionLimiter


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
        app.include_router(
            router, dependencies=[Depends(get_caller)], responses=errors.ERROR_RESPONSES
        )
    # The report, its previews and review decisions also open with a report link's token.
    app.include_router(reports.router, responses=errors.ERROR_RESPONSES)
    app.include_router(meta.router)

    errors.install(app)
    return app
