"""The HTTP API: the FastAPI app over one open index, its error mapping and its routers (search/http/routes/, one per area).

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
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

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
from search.core.delivery import deliverer_for
from search.http.follow import follow_jobs
from search.http.job_paths import NotUnderRoots, OutsideRoots
from search.http.jobs import JobManager, QueueFull, ReindexScheduler
from search.http.limits import BodySizeLimit
from search.http.models import ErrorResponse, error_responses
from search.http.routes import alerts, classify, evaluate, files, jobs, search, server, teach
from search.http.routes.server import VERSION, WEB_DIR
from search.http.uploads import UploadTooLong
from search.sound_index import SoundIndex

STATUS_OF: list[tuple[type[SoundsiftError], int]] = [
    (IndexMissing, 404),
    (IndexLocked, 409),
    (ModelMismatch, 409),
    (ModelNotFound, 503),
    (IndexCorrupt, 503),
    (BadInput, 422),
    (OutsideRoots, 403),
    (NotUnderRoots, 404),
    (QueueFull, 429),
    (UploadTooLong, 413),
]
VALIDATION_SHOWN = 3  # problems named in a 422's one-line detail (all are in its `errors`)


# -- the app ---------------------------------------------------------------------------------
def create_app(
    settings: Settings,
    *,
    sound_index: SoundIndex | None = None,
    url: str | None = None,
    reindex_every_s: float | None = None,
    reindex_paths: list[str] | None = None,
    follow_paths: list[str] | None = None,
) -> FastAPI:
    """The HTTP API over the index at ``settings.index``, opened in ``lifespan`` unless ``sound_index`` is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sx = sound_index
        if sx is None:
            sx = await run_in_threadpool(
                lambda: SoundIndex.open(settings.index, settings=settings, create=True, role="serve", url=url)
            )
        app.state.sound_index = sx
        app.state.jobs = JobManager(sx, max_queued=settings.max_queued_jobs)
        app.state.scheduler = (
            ReindexScheduler(app.state.jobs, reindex_every_s, reindex_paths) if reindex_every_s else None
        )
        app.state.upload_dir = Path(tempfile.mkdtemp(prefix="soundsift-uploads-"))
        app.state.deliverer = deliverer_for(sx, base_url=url).start()  # the outbox, beside the jobs
        app.state.follow = follow_jobs(app.state.jobs, follow_paths, settings) if follow_paths is not None else None
        try:
            yield
        finally:
            if app.state.follow:
                app.state.follow.close()
            app.state.deliverer.stop(wait_s=settings.delivery_timeout_s)
            if app.state.scheduler:
                app.state.scheduler.close()
            app.state.jobs.close()
            sx.close()
            shutil.rmtree(app.state.upload_dir, ignore_errors=True)

    app = FastAPI(
        title="soundsift",
        version=VERSION,
        lifespan=lifespan,
        docs_url=None,
        openapi_url=None,
        description="Find sounds in audio archives by describing them in words (CLAP, FAISS, DuckDB).",
    )
    app.state.settings = settings
    app.state.allow_roots = [*settings.allow_roots, *(reindex_paths or [])]
    app.openapi = lambda: truthful_openapi(app)  # type: ignore[method-assign]  # FastAPI's documented override
    app.add_middleware(
        BodySizeLimit, upload_paths={"/classify-file"}, max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024)
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept"],
        )

    @app.exception_handler(SoundsiftError)
    async def _domain_error(request: Request, exc: SoundsiftError) -> JSONResponse:
        status = next((code for cls, code in STATUS_OF if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_error_body(exc.errors()), status_code=422)

    @app.exception_handler(DecodeError)
    async def _decode_error(request: Request, exc: DecodeError) -> JSONResponse:
        return JSONResponse({"detail": f"cannot decode the audio: {exc}"}, status_code=422)

    @app.exception_handler(duckdb.Error)
    async def _filter_error(request: Request, exc: duckdb.Error) -> JSONResponse:
        # Filters reach SQL as parameters; what DuckDB refuses there (a glob, a value) is the client's input.
        if isinstance(exc, (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.OutOfRangeException)):
            return JSONResponse({"detail": f"cannot apply the filters: {str(exc).splitlines()[0]}"}, status_code=422)
        raise exc

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Allow: every method of the path, not just those of the first route matched
            headers["Allow"] = allowed_methods(app, request.scope) or headers.get("Allow", "")
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    for area in (server, search, classify, files, jobs, evaluate, alerts, teach):
        app.include_router(area.router)
    # Swagger UI's assets come from the swagger-ui-bundle package, served here: nothing loads from a CDN.
    import swagger_ui_bundle

    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


# -- the error model and a schema that says what the server does --------------------------------
def validation_error_body(problems) -> dict:
    """A 422 body in the one error model: a one-line ``detail`` and every problem under ``errors``."""
    errors = [
        {
            "loc": [p for p in e.get("loc", ()) if isinstance(p, (str, int))],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in problems
    ]
    lines = [
        f"{'.'.join(str(p) for p in e['loc'][1:] or e['loc']) or 'request'}: {e['msg']}"
        for e in errors[:VALIDATION_SHOWN]
    ]
    more = f" (and {len(errors) - VALIDATION_SHOWN} more)" if len(errors) > VALIDATION_SHOWN else ""
    return {"detail": "; ".join(lines) + more or "the request is not valid", "errors": errors}


def truthful_openapi(app: FastAPI) -> dict:
    """FastAPI's document, made true for this server: API-key security only when a key is set, and every
    error status an operation can answer documented with the one error body (ErrorResponse)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    keyed = bool(app.state.settings.api_key)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    if not keyed:
        components.pop("securitySchemes", None)
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            codes = {422} if (op.get("parameters") or op.get("requestBody")) else set()
            if op.get("requestBody"):
                codes |= {400, 413}
            if "security" in op:
                if keyed:
                    codes.add(401)
                else:
                    del op["security"]
            codes |= {int(c) for c in responses if c.isdigit() and int(c) >= 400}
            for code, entry in error_responses(*sorted(codes)).items():
                description = responses.get(str(code), {}).get("description") or entry["description"]
                responses[str(code)] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
                }
    _form_fields_without_null(doc)
    sx = getattr(app.state, "sound_index", None)
    if sx is not None:
        _policy_enums(doc, sx.plugins.policies)
    app.openapi_schema = doc
    return doc


def _form_fields_without_null(doc: dict) -> None:
    """A form field is text or absent, never JSON null: an optional field of a multipart body is its type alone
    (leaving it out is how a client says "none"), so no client is told to send the text "null" for a number.

    A field declared as JSON text (``contentMediaType: application/json`` with a ``contentSchema``) is described
    as the part it is: its content's schema, with the part's encoding ``application/json``."""
    schemas = doc.get("components", {}).get("schemas", {})
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            content = op.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
            body = schemas.get(content.get("schema", {}).get("$ref", "").rpartition("/")[2], {})
            for name, field in body.get("properties", {}).items():
                branches = field.get("anyOf", [])
                kept = [b for b in branches if b.get("type") != "null"]
                if len(kept) == 1 and len(branches) == 2:
                    del field["anyOf"]
                    field.update(kept[0])
                    if field.get("default", 0) is None:
                        del field["default"]
                if field.get("contentMediaType") == "application/json" and "contentSchema" in field:
                    part = {k: field[k] for k in ("title", "description") if k in field}
                    part.update(field["contentSchema"])
                    field.clear()
                    field.update(part)
                    content.setdefault("encoding", {})[name] = {"contentType": "application/json"}


def _policy_enums(node, policies: dict, upload: bool = False) -> None:
    """Name the registered scoring policies wherever a `policy` string is accepted (an upload: those needing no index)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "policy" and isinstance(value, dict) and value.get("type") == "string":
                value["enum"] = sorted(n for n, p in policies.items() if not (upload and p.needs_archive_stats))
            elif key == "parameters" and isinstance(value, list):
                for param in value:
                    if param.get("name") == "policy" and param.get("schema", {}).get("type") == "string":
                        param["schema"]["enum"] = sorted(policies)
            else:
                _policy_enums(value, policies, upload or key.startswith("Body_classify_upload"))
    elif isinstance(node, list):
        for item in node:
            _policy_enums(item, policies, upload)


def allowed_methods(app: FastAPI, scope) -> str:
    """The methods some route serves at the request's path (a path may have one route per method).

    A path spelled out (``/jobs/index``) wins over a pattern it also fits (``/jobs/{job_id}``), as it does in routing."""
    from starlette.routing import Match

    found: list[tuple[bool, set[str]]] = []  # (the route's path has no parameters, its methods)

    def walk(routes) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)  # an included router (FastAPI wraps them)
            if inner is not None:
                walk(inner.routes)
            elif getattr(route, "methods", None) and hasattr(route, "matches"):
                match, _ = route.matches({**scope, "method": "GET"})
                if match != Match.NONE:
                    found.append(("{" not in getattr(route, "path", "{"), set(route.methods)))

    walk(app.router.routes)
    exact = [m for static, m in found if static]
    return ", ".join(sorted(set().union(*(exact or [m for _, m in found]))))
