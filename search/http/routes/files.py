"""File routes: the files in the index, one file with its windows (and their scores), a window's audio."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from indexer.decode import DecodeLimits
from indexer.errors import BadInput
from search.core.audio_cut import NotServable, cut_clip, window_location
from search.core.envelope import MAX_MEL_WIDTH, MAX_POINTS, file_envelope
from search.core.localize import DEFAULT_HOP_S, DEFAULT_SUB_S, localize_window
from search.core.options import DEFAULT_POLICY
from search.core.results import Envelope, Localization
from search.http.catalog import (
    check_labels,
    file_detail,
    list_files,
)
from search.http.models import MAX_LABELS, MAX_MARGIN_S, TEMPLATE_PATTERN, FileDetail, FilesPage, error_responses
from search.http.routes.deps import Guarded, IndexDep, parse_id, run_heavy

router = APIRouter()
ENVELOPE_CACHE = 32  # envelopes kept per server (a few hundred kB each)


@router.get("/files", response_model=FilesPage, dependencies=Guarded, tags=["files"])
def files(
    sx: IndexDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    path_glob: Annotated[str | None, Query(max_length=1000)] = None,
    status: Literal["indexed", "failed"] | None = None,
) -> FilesPage:
    """Files in the index, by path, with their window counts."""
    return list_files(sx, limit, offset, path_glob, status)


@router.get(
    "/files/{file_id}", response_model=FileDetail, dependencies=Guarded, tags=["files"], responses=error_responses(404)
)
def file(
    file_id: str,
    sx: IndexDep,
    query: Annotated[str | None, Query(max_length=1000)] = None,
    labels: Annotated[str | None, Query(max_length=4000)] = None,
    policy: Annotated[str, Query(max_length=100)] = DEFAULT_POLICY,
) -> FileDetail:
    """A file with its windows and their acoustic stats; with `query` or `labels`, each window's score."""
    if labels:
        check_labels(labels, MAX_LABELS)
    detail = file_detail(sx, parse_id(file_id, "file"), query=query, labels=labels, policy=policy)
    if detail is None:
        raise HTTPException(404, f"no file {file_id} in the index")
    return detail


@router.get(
    "/windows/{window_id}/audio",
    dependencies=Guarded,
    tags=["files"],
    responses={
        200: {"content": {"audio/wav": {}, "audio/ogg": {}}, "description": "the window's audio"},
        404: {"description": "no such window, or its file is not servable"},
    },
)
async def window_audio(
    window_id: str,
    sx: IndexDep,
    request: Request,
    format: Literal["wav", "ogg"] = "wav",
    margin: Annotated[float, Query(ge=0, le=MAX_MARGIN_S, description="seconds added each side")] = 0.0,
) -> Response:
    """The window's audio cut from its archive file (mono), for playback."""
    return await run_heavy(request, _window_audio, window_id, sx, format, margin)


def _window_audio(window_id: str, sx, format: str, margin: float) -> Response:
    try:
        where = window_location(sx, parse_id(window_id, "window"))
    except NotServable as exc:
        raise HTTPException(404, str(exc)) from None
    start = max(0.0, where.start - margin)
    end = where.end + margin if where.duration is None else min(where.duration, where.end + margin)
    s = sx.settings
    clip = cut_clip(
        Path(where.path),
        start,
        end,
        format,
        sx.plugins.decoders,
        s.plugin_view(),
        DecodeLimits.of(s),
    )
    return Response(
        clip.data,
        media_type=clip.media_type,
        headers={
            "Content-Disposition": f'inline; filename="window-{window_id}.{format}"',
            "X-Clip-Start": f"{clip.start_s:.3f}",
            "X-Clip-End": f"{clip.end_s:.3f}",
        },
    )


@router.get(
    "/windows/{window_id}/localize",
    response_model=Localization,
    dependencies=Guarded,
    tags=["files"],
    responses={404: {"description": "no such window, or its file is not servable"}},
)
def window_localize(
    window_id: str,
    sx: IndexDep,
    query: Annotated[str, Query(min_length=1, max_length=1000)],
    sub_s: Annotated[float, Query(ge=0.1, le=10.0, description="sub-window length, seconds")] = DEFAULT_SUB_S,
    hop_s: Annotated[float, Query(ge=0.05, le=10.0, description="step between sub-windows, seconds")] = DEFAULT_HOP_S,
    prompt_template: Annotated[
        str | None, Query(max_length=500, json_schema_extra={"pattern": TEMPLATE_PATTERN})
    ] = None,
) -> Localization:
    """Where inside the window the sound `query` describes is: `start`/`end`/`score` in seconds of the file, and
    every sub-window's score (`steps`), each sub-window prepared as CLAP prepares a short clip."""
    try:
        return localize_window(
            sx, parse_id(window_id, "window"), query, sub_s=sub_s, hop_s=hop_s, prompt_template=prompt_template
        )
    except NotServable as exc:
        raise HTTPException(404, str(exc)) from None


@router.get(
    "/files/{file_id}/envelope",
    response_model=Envelope,
    dependencies=Guarded,
    tags=["files"],
    responses={404: {"description": "no such file, or it is not servable"}},
)
def file_envelope_route(
    file_id: str,
    request: Request,
    sx: IndexDep,
    points: Annotated[int, Query(ge=1, le=MAX_POINTS, description="min/max pairs across the span")] = 1000,
    mel_width: Annotated[int, Query(ge=0, le=MAX_MEL_WIDTH, description="log-mel image width (0: none)")] = 600,
    start: Annotated[float, Query(ge=0, le=1e7, description="from here, seconds")] = 0.0,
    end: Annotated[float | None, Query(gt=0, le=1e7, description="to here, seconds (default: the end)")] = None,
) -> Envelope:
    """The file's (or a span's) waveform envelope (min/max/RMS per point) and a log-mel image as base64 PNG;
    read block by block at the file's own rate, kept in a small cache per file version."""
    fid = parse_id(file_id, "file")
    first = sx.store.first_window_of(fid)
    try:
        if first is None:
            raise NotServable(f"no file {file_id} with windows in the index")
        where = window_location(sx, first)  # the same servability checks as a window's audio
    except NotServable as exc:
        raise HTTPException(
            404, str(exc).replace(f"window {first if first is not None else ''}", f"file {file_id}")
        ) from None
    if end is not None and end <= start:
        raise BadInput(f"end ({end}) must be after start ({start})")
    stat = Path(where.path).stat()
    key = (where.path, stat.st_size, stat.st_mtime, points, mel_width, start, end)
    cache = request.app.state.__dict__.setdefault("envelopes", OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    s = sx.settings
    envelope, _ = file_envelope(
        Path(where.path),
        sx.plugins.decoders,
        s.plugin_view(),
        DecodeLimits.of(s),
        points=points,
        mel_width=mel_width,
        start_s=start,
        end_s=end,
    )
    cache[key] = envelope
    while len(cache) > ENVELOPE_CACHE:
        cache.popitem(last=False)
    return envelope
