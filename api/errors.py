"""The one place an error becomes an HTTP response: Darkroom's typed errors by their own
status and code, Starlette's and pydantic's in the same ``{code, message}`` shape and with the
status of the same code (one status per code: the README's table), and anything else as
``internal_error`` (logged with the request id, which the answer carries too)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from api.schemas import ErrorBody
from shared.errors import (
    DarkroomError,
    ErrorCode,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    StorageError,
    Unauthenticated,
)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"

# What any /v1 operation may answer besides success, all with the same {code, message} body.
_DESCRIPTIONS = {
    401: "Missing, unknown or revoked API key",
    403: "Input outside the allowed buckets or the tenant's prefix",
    404: "No such job or batch for this tenant",
    409: "Conflict with the job's state",
    413: "Upload too large",
    422: "Invalid request (fields, options, a rule the schema cannot express, a malformed "
    "body), unknown model",
    429: "Over the tenant's rate or quota; see Retry-After",
    500: "A fault of Darkroom's own (internal_error), logged with the request id",
    503: "A dependency is down, or the model's weights are not installed",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": description}
    for code, description in _DESCRIPTIONS.items()
}

JSON_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for code, description in _DESCRIPTIONS.items()
}
"""The same, for routes whose own answer is not JSON (a page, an image): their errors are."""

_STARLETTE_ERRORS: dict[int, type[DarkroomError]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
}
"""Starlette's errors that are one of ours: answered with our class's code *and* status, so
a code never comes with two statuses (Starlette's 400 for a body it cannot parse is our 422
``invalid_request``, like every other invalid request)."""


def install(app: FastAPI) -> None:
    """Register the handlers and the request-id middleware on ``app``."""
    app.middleware("http")(_request_id)
    app.add_exception_handler(DarkroomError, _darkroom_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _request_id(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Every request gets an id (the caller's ``X-Request-ID``, else a fresh one), echoed in the
    answer so a client can quote it and an operator can find the log line."""
    request.state.request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    response = await call_next(request)
    response.headers[REQUEST_ID_HEADER] = request.state.request_id
    return response


def _body(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


async def _darkroom_error(request: Request, exc: DarkroomError) -> JSONResponse:
    # The object store's failures are the API's 503: the request may succeed when it is back.
    code = ErrorCode.storage_unavailable if isinstance(exc, StorageError) else exc.code
    if exc.http_status >= 500:
        log.warning("%s: %s (request %s)", code, exc.message, _id(request))
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        status_code=exc.http_status,
        content=_body(code, exc.message),
        headers=headers,
    )


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (unparseable body, unknown path, wrong method) in the same shape
    as ours; a 405 lists every method the path has, not just one route's."""
    headers = dict(exc.headers or {})
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers["Allow"] = ", ".join(sorted(_methods_for(request)))
    ours = _STARLETTE_ERRORS.get(exc.status_code)
    code = ours.code if ours else ErrorCode.http_error
    status_code = ours.http_status if ours else exc.status_code
    return JSONResponse(
        status_code=status_code, content=_body(code, str(exc.detail)), headers=headers
    )


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
        for err in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
    return JSONResponse(
        status_code=InvalidRequest.http_status,
        content=_body(InvalidRequest.code, summary, details=details),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug or an untranslated library error: the client gets JSON it can parse and a request
    id to quote, never a stack trace; the log gets the stack trace."""
    request_id = _id(request)
    log.error(
        "unexpected error in %s %s (request %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content=_body(
            ErrorCode.internal_error,
            f"an unexpected error occurred; quote request id {request_id} when reporting it",
        ),
        headers={REQUEST_ID_HEADER: request_id},
    )


def _id(request: Request) -> str:
    return str(getattr(request.state, "request_id", None) or "-")


def _methods_for(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods
