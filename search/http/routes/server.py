"""Server routes: health, the web page shell, the OpenAPI document and Swagger UI, stats."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from search.http.models import HealthResponse
from search.http.routes.deps import Guarded, IndexDep, JobsDep

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

try:
    VERSION = version("soundsift")
except PackageNotFoundError:  # running from a checkout that was never installed
    VERSION = "0"

router = APIRouter()


@router.get("/health", response_model=HealthResponse, tags=["server"])
def health() -> HealthResponse:
    """Liveness; the one route that never needs the API key."""
    return HealthResponse(version=VERSION)


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    # The page shell holds no data; its scripts send the API key with every request.
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")


@router.get("/openapi.json", include_in_schema=False, dependencies=Guarded)
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False, dependencies=Guarded)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="soundsift API",
        swagger_js_url="/static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger/swagger-ui.css",
        swagger_favicon_url="/static/swagger/favicon-32x32.png",
    )


@router.get("/stats", dependencies=Guarded, tags=["server"])
def stats(sx: IndexDep, jobs: JobsDep) -> dict[str, Any]:
    """Files, windows, hours of audio, model; the scoring policies and the job queue."""
    doc = sx.stats()
    doc["policies"] = sorted(sx.plugins.policies)
    doc["jobs"] = {"busy": jobs.busy(), "queued": jobs.queued(), "max_queued": jobs.max_queued}
    return doc


@router.get("/check", dependencies=Guarded, tags=["server"])
def check(sx: IndexDep) -> dict[str, Any]:
    """Audit the index (FAISS ids vs window rows, non-finite vectors, files gone): `soundsift check --json`; nothing changes."""
    from indexer.audit import audit

    with sx.vectors.lock:  # not between a DuckDB commit and its FAISS update
        return audit(sx.store)
