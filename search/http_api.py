"""The HTTP API: the FastAPI app over one open index, its error mapping and its routers (search/routes/, one per area).

``search.app`` is this module's older name, kept as an alias.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

import duckdb
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from indexer.errors import (
    BadInput,
    DecodeError,
    IndexCorrupt,
    IndexLocked,
    IndexMissing,
    ModelMismatch,
    ModelNotFound,
    SoundsiftError,
)
from indexer.settings import Settings
from search.jobs import JobManager, ReindexScheduler
from search.request_limits import BodySizeLimit
from search.routes import classify, files, jobs, search, server
from search.routes.server import VERSION, WEB_DIR
from search.sound_index import SoundIndex

STATUS_OF: list[tuple[type[SoundsiftError], int]] = [
    (IndexMissing, 404), (IndexLocked, 409), (ModelMismatch, 409), (ModelNotFound, 503), (IndexCorrupt, 503),
    (BadInput, 422),
]


# -- the app ---------------------------------------------------------------------------------
def create_app(settings: Settings, *, sound_index: SoundIndex | None = None, url: str | None = None,
               reindex_every_s: float | None = None, reindex_paths: list[str] | None = None) -> FastAPI:
    """The HTTP API over the index at ``settings.index``, opened in ``lifespan`` unless ``sound_index`` is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sx = sound_index
        if sx is None:
            sx = await run_in_threadpool(
                lambda: SoundIndex.open(settings.index, settings=settings, create=True, role="serve", url=url))
        app.state.sound_index = sx
        app.state.jobs = JobManager(sx)
        app.state.scheduler = ReindexScheduler(app.state.jobs, reindex_every_s, reindex_paths) if reindex_every_s else None
        app.state.upload_dir = Path(tempfile.mkdtemp(prefix="soundsift-uploads-"))
        try:
            yield
        finally:
            if app.state.scheduler:
                app.state.scheduler.close()
            app.state.jobs.close()
            sx.close()
            shutil.rmtree(app.state.upload_dir, ignore_errors=True)

    app = FastAPI(title="soundsift", version=VERSION, lifespan=lifespan, docs_url=None, openapi_url=None,
                  description="Find sounds in audio archives by describing them in words (CLAP, FAISS, DuckDB).")
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, upload_paths={"/classify-file"}, max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept"])

    @app.exception_handler(SoundsiftError)
    async def _domain_error(request: Request, exc: SoundsiftError) -> JSONResponse:
        status = next((code for cls, code in STATUS_OF if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(DecodeError)
    async def _decode_error(request: Request, exc: DecodeError) -> JSONResponse:
        return JSONResponse({"detail": f"cannot decode the audio: {exc}"}, status_code=422)

    @app.exception_handler(duckdb.Error)
    async def _filter_error(request: Request, exc: duckdb.Error) -> JSONResponse:
        # Filters reach SQL as parameters; what DuckDB refuses there (a glob, a value) is the client's input.
        if isinstance(exc, (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.OutOfRangeException)):
            return JSONResponse({"detail": f"cannot apply the filters: {str(exc).splitlines()[0]}"}, status_code=422)
        raise exc

    for area in (server, search, classify, files, jobs):
        app.include_router(area.router)
    # Swagger UI's assets come from the swagger-ui-bundle package, served here: nothing loads from a CDN.
    import swagger_ui_bundle

    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app
