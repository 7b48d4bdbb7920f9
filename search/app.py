"""The FastAPI app: search, classification, uploads, files and windows, window audio, re-index jobs, the web page."""
from __future__ import annotations

import base64
import binascii
import itertools
import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, Security, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from indexer.decode import DecodeLimits
from indexer.errors import (BadInput, DecodeError, IndexCorrupt, IndexLocked, IndexMissing, ModelMismatch, ModelNotFound,
                            SoundsiftError)
from indexer.settings import Settings
from search.api import SoundIndex, classify_file
from search.audio_cut import cut_clip
from search.catalog import NotServable, check_labels, file_detail, list_files, window_location
from search.classify import policy_named
from search.http_models import (MAX_LABELS, MAX_MARGIN_S, ClassifyRequest, FileDetail, FilesPage, HealthResponse,
                                JobRequest, SearchRequest)
from search.jobs import JobInfo, JobManager, ReindexScheduler
from search.request_limits import BodySizeLimit
from search.results import ClassifyResponse, FileClassification, SearchResponse

WEB_DIR = Path(__file__).resolve().parent / "web"
NDJSON = "application/x-ndjson"
UPLOAD_CHUNK = 1 << 20
STATUS_OF: list[tuple[type[SoundsiftError], int]] = [
    (IndexMissing, 404), (IndexLocked, 409), (ModelMismatch, 409), (ModelNotFound, 503), (IndexCorrupt, 503),
    (BadInput, 422),
]

try:
    VERSION = version("soundsift")
except PackageNotFoundError:  # running from a checkout that was never installed
    VERSION = "0"


# -- dependencies ----------------------------------------------------------------------------
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's API key, when it has one")
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>, when the server has one")


def require_api_key(request: Request, key: Annotated[str | None, Security(_api_key_header)],
                    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> None:
    """When an API key is configured, every data route needs it (compared in constant time)."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    given = key if key is not None else (bearer.credentials if bearer else None)
    if given is None or not secrets.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8")):
        raise HTTPException(401, "missing or wrong API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                            headers={"WWW-Authenticate": "Bearer"})


def get_index(request: Request) -> SoundIndex:
    return request.app.state.sound_index


def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


IndexDep = Annotated[SoundIndex, Depends(get_index)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
Guarded = [Depends(require_api_key)]


# -- cursors: opaque to clients, a position in a stable order to us ---------------------------
def encode_cursor(position: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict:
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(position, dict) and all(isinstance(position.get(k, 0), int) for k in ("after", "offset")):
            return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise BadInput("cursor is not one this server handed out: pass next_cursor from the previous page unchanged")


def _parse_id(raw: str, what: str) -> int:
    """Ids in paths are plain integers; anything else (traversal attempts included) names nothing: 404."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise HTTPException(404, f"no {what} {raw!r}")
    return int(raw)


# -- the app ---------------------------------------------------------------------------------
def create_app(settings: Settings, *, sound_index: SoundIndex | None = None, url: str | None = None,
               reindex_every_s: float | None = None, reindex_paths: list[str] | None = None) -> FastAPI:
    """The HTTP API over the index at ``settings.index``, opened in ``lifespan`` unless ``sound_index`` is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sx = sound_index or await run_in_threadpool(
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

    add_routes(app)
    # Swagger UI's assets come from the swagger-ui-bundle package, served here: nothing loads from a CDN.
    import swagger_ui_bundle

    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def add_routes(app: FastAPI) -> None:

    @app.get("/health", response_model=HealthResponse, tags=["server"])
    def health() -> HealthResponse:
        """Liveness; the one route that never needs the API key."""
        return HealthResponse(version=VERSION)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        # The page shell holds no data; its scripts send the API key with every request.
        return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/openapi.json", include_in_schema=False, dependencies=Guarded)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=Guarded)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="soundsift API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @app.get("/stats", dependencies=Guarded, tags=["server"])
    def stats(sx: IndexDep, jobs: JobsDep) -> dict[str, Any]:
        """Files, windows, hours of audio, model; the scoring policies and the job queue."""
        doc = sx.stats()
        doc["policies"] = sorted(sx.plugins.policies)
        doc["jobs"] = {"busy": jobs.busy()}
        return doc

    @app.post("/search", response_model=SearchResponse, dependencies=Guarded, tags=["search"])
    def search(body: SearchRequest, sx: IndexDep) -> SearchResponse:
        """Top-k windows per query: the same document as `soundsift search --json`."""
        return sx.search(body.queries, k=body.k, filters=body.filters, strict=body.strict or None)

    @app.post("/classify", response_model=ClassifyResponse, dependencies=Guarded, tags=["classify"],
              responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}},
                               "description": f"a page of rows; with `Accept: {NDJSON}`, a header line then every row"}})
    def classify(body: ClassifyRequest, request: Request, sx: IndexDep):
        """Every window (or file) scored against a label set, a page at a time or streamed as ndjson."""
        check_labels(body.labels, MAX_LABELS)
        position = decode_cursor(body.cursor) if body.cursor else {}
        after = position.get("after") if body.top is None else None
        header, rows = sx.iter_classify(body.labels, policy=body.policy, by=body.by, top=body.top, threshold=body.threshold,
                                        filters=body.filters, strict=body.strict or None, after=after)
        if body.top is not None and position.get("offset"):
            rows = itertools.islice(rows, position["offset"], None)
        if NDJSON in request.headers.get("accept", ""):
            return StreamingResponse(_ndjson(header, rows), media_type=NDJSON)
        try:
            page = list(itertools.islice(rows, body.limit + 1))
        finally:
            getattr(rows, "close", lambda: None)()
        header.rows = page[: body.limit]
        if len(page) > body.limit:
            last = header.rows[-1]
            header.next_cursor = encode_cursor(
                {"offset": position.get("offset", 0) + body.limit} if body.top is not None
                else {"after": last.window_id if body.by == "window" else last.file_id})
        return header

    @app.post("/classify-file", response_model=FileClassification, dependencies=Guarded, tags=["classify"])
    async def classify_upload(request: Request, sx: IndexDep, file: Annotated[UploadFile, File(description="an audio file")],
                              labels: Annotated[str, Form(min_length=1, max_length=4000, description="comma-separated labels")],
                              policy: Annotated[str, Form(max_length=100)] = "softmax") -> FileClassification:
        """One uploaded file classified per window and as a whole; the upload is deleted when the request ends."""
        check_labels(labels, MAX_LABELS)
        policy_named(sx.plugins.policies, policy)
        suffix = Path(file.filename or "").suffix.lower()
        suffix = suffix if suffix[1:].isalnum() and suffix.isascii() and len(suffix) <= 9 else ""
        with tempfile.NamedTemporaryFile(dir=request.app.state.upload_dir, suffix=suffix, delete=False) as fh:
            saved = Path(fh.name)
        try:
            with open(saved, "wb") as out:
                while chunk := await file.read(UPLOAD_CHUNK):
                    out.write(chunk)
            if saved.stat().st_size == 0:
                raise BadInput("the upload is empty")
            result = await run_in_threadpool(classify_file, saved, labels, sx.encoder, sx.settings, sx.plugins, policy,
                                             sx.settings.decode_timeout_s)
            result.path = file.filename
            for row in [*result.windows, result.file]:
                row.path = file.filename or "upload"
            return result
        except DecodeError as exc:
            raise DecodeError(str(exc).replace(str(saved), file.filename or "upload")) from None
        finally:
            saved.unlink(missing_ok=True)
            await file.close()

    @app.get("/files", response_model=FilesPage, dependencies=Guarded, tags=["files"])
    def files(sx: IndexDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
              path_glob: Annotated[str | None, Query(max_length=1000)] = None,
              status: Literal["indexed", "failed"] | None = None) -> FilesPage:
        """Files in the index, by path, with their window counts."""
        return list_files(sx, limit, offset, path_glob, status)

    @app.get("/files/{file_id}", response_model=FileDetail, dependencies=Guarded, tags=["files"])
    def file(file_id: str, sx: IndexDep, query: Annotated[str | None, Query(max_length=1000)] = None,
             labels: Annotated[str | None, Query(max_length=4000)] = None,
             policy: Annotated[str, Query(max_length=100)] = "softmax") -> FileDetail:
        """A file with its windows and their acoustic stats; with `query` or `labels`, each window's score."""
        if labels:
            check_labels(labels, MAX_LABELS)
        detail = file_detail(sx, _parse_id(file_id, "file"), query=query, labels=labels, policy=policy)
        if detail is None:
            raise HTTPException(404, f"no file {file_id} in the index")
        return detail

    @app.get("/windows/{window_id}/audio", dependencies=Guarded, tags=["files"],
             responses={200: {"content": {"audio/wav": {}, "audio/ogg": {}}, "description": "the window's audio"},
                        404: {"description": "no such window, or its file is not servable"}})
    def window_audio(window_id: str, sx: IndexDep, format: Literal["wav", "ogg"] = "wav",
                     margin: Annotated[float, Query(ge=0, le=MAX_MARGIN_S, description="seconds added each side")] = 0.0) -> Response:
        """The window's audio cut from its archive file (mono), for playback."""
        try:
            where = window_location(sx, _parse_id(window_id, "window"))
        except NotServable as exc:
            raise HTTPException(404, str(exc)) from None
        start = max(0.0, where.start - margin)
        end = where.end + margin if where.duration is None else min(where.duration, where.end + margin)
        s = sx.settings
        clip = cut_clip(Path(where.path), start, end, format, sx.plugins.decoders, s.plugin_view(),
                        DecodeLimits(s.min_sample_rate, s.max_sample_rate, s.max_channels, s.max_duration_s))
        return Response(clip.data, media_type=clip.media_type,
                        headers={"Content-Disposition": f'inline; filename="window-{window_id}.{format}"',
                                 "X-Clip-Start": f"{clip.start_s:.3f}", "X-Clip-End": f"{clip.end_s:.3f}"})

    @app.post("/jobs/index", response_model=JobInfo, status_code=202, dependencies=Guarded, tags=["jobs"])
    def submit_index_job(body: JobRequest, jobs: JobsDep) -> JobInfo:
        """Queue a re-index of server-side paths (new, changed and failed-before files); runs one at a time."""
        paths = []
        for raw in body.paths:
            if "\x00" in raw:
                raise BadInput("a path cannot contain NUL")
            path = Path(raw).expanduser().absolute()
            if not path.exists():
                raise BadInput(f"no such file or directory on the server: {raw}")
            paths.append(str(path))
        return jobs.submit(paths, trigger="api", retry_failed=body.retry_failed)

    @app.get("/jobs", response_model=list[JobInfo], dependencies=Guarded, tags=["jobs"])
    def list_jobs(jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[JobInfo]:
        """This server's recent jobs, newest first, then earlier runs recorded in the index."""
        return jobs.list(limit)

    @app.get("/jobs/{job_id}", response_model=JobInfo, dependencies=Guarded, tags=["jobs"])
    def job(job_id: str, jobs: JobsDep) -> JobInfo:
        """A job with its progress: files done/total, windows/s, ETA; its report once done."""
        info = jobs.get(job_id) if len(job_id) <= 64 else None
        if info is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return info


def _ndjson(header: ClassifyResponse, rows: Iterator) -> Iterator[bytes]:
    """A header line (labels, texts, policy) and one line per row; the rows are read chunk by chunk."""
    try:
        yield (json.dumps({"header": header.model_dump(mode="json", exclude={"rows", "next_cursor"})}, ensure_ascii=False) + "\n").encode()
        for row in rows:
            yield (json.dumps(row.model_dump(mode="json"), ensure_ascii=False) + "\n").encode()
    finally:
        getattr(rows, "close", lambda: None)()
