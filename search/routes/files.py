"""File routes: the files in the index, one file with its windows (and their scores), a window's audio."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from indexer.decode import DecodeLimits
from search.audio_cut import cut_clip
from search.catalog import (
    NotServable,
    check_labels,
    file_detail,
    list_files,
    window_location,
)
from search.http_models import MAX_LABELS, MAX_MARGIN_S, FileDetail, FilesPage, error_responses
from search.routes.deps import Guarded, IndexDep, parse_id, run_heavy

router = APIRouter()


@router.get("/files", response_model=FilesPage, dependencies=Guarded, tags=["files"])
def files(sx: IndexDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
          path_glob: Annotated[str | None, Query(max_length=1000)] = None,
          status: Literal["indexed", "failed"] | None = None) -> FilesPage:
    """Files in the index, by path, with their window counts."""
    return list_files(sx, limit, offset, path_glob, status)

@router.get("/files/{file_id}", response_model=FileDetail, dependencies=Guarded, tags=["files"], responses=error_responses(404))
def file(file_id: str, sx: IndexDep, query: Annotated[str | None, Query(max_length=1000)] = None,
         labels: Annotated[str | None, Query(max_length=4000)] = None,
         policy: Annotated[str, Query(max_length=100)] = "softmax") -> FileDetail:
    """A file with its windows and their acoustic stats; with `query` or `labels`, each window's score."""
    if labels:
        check_labels(labels, MAX_LABELS)
    detail = file_detail(sx, parse_id(file_id, "file"), query=query, labels=labels, policy=policy)
    if detail is None:
        raise HTTPException(404, f"no file {file_id} in the index")
    return detail

@router.get("/windows/{window_id}/audio", dependencies=Guarded, tags=["files"],
         responses={200: {"content": {"audio/wav": {}, "audio/ogg": {}}, "description": "the window's audio"},
                    404: {"description": "no such window, or its file is not servable"}})
async def window_audio(window_id: str, sx: IndexDep, request: Request, format: Literal["wav", "ogg"] = "wav",
                       margin: Annotated[float, Query(ge=0, le=MAX_MARGIN_S, description="seconds added each side")] = 0.0) -> Response:
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
    clip = cut_clip(Path(where.path), start, end, format, sx.plugins.decoders, s.plugin_view(),
                    DecodeLimits(s.min_sample_rate, s.max_sample_rate, s.max_channels, s.max_duration_s))
    return Response(clip.data, media_type=clip.media_type,
                    headers={"Content-Disposition": f'inline; filename="window-{window_id}.{format}"',
                             "X-Clip-Start": f"{clip.start_s:.3f}", "X-Clip-End": f"{clip.end_s:.3f}"})
