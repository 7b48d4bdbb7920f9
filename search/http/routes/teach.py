"""Teach routes: examples (marked windows), probes (list, train as a job, export/import, remove), search by a clip."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from indexer.errors import BadInput
from search.core.results import SearchResponse
from search.http.jobs import JobInfo
from search.http.models import MAX_K, MAX_QUERIES, PROBE_NAME, Target, error_responses
from search.http.routes.deps import Guarded, IndexDep, JobsDep, run_heavy
from search.http.uploads import saved_upload

router = APIRouter()


class ExamplesRequest(BaseModel):
    """Windows to mark as examples of a class (or counter-examples with ``negative``), or to unmark."""

    model_config = ConfigDict(strict=True)
    cls: str = Field(..., alias="class", min_length=1, max_length=100, pattern=r"^[^,:]+$")
    targets: list[Target] = Field(..., min_length=1, max_length=1000, description="window ids or {path, start}")
    negative: bool = False
    source: str = Field("api", max_length=100)


class TrainRequest(BaseModel):
    """What `soundsift train` takes."""

    model_config = ConfigDict(strict=True)
    classes: list[Annotated[str, Field(min_length=1, max_length=100)]] | str = Field(
        ..., description="the classes to tell apart, e.g. ['bearing_fault', 'normal'] or 'bearing_fault, normal'"
    )
    background: int | None = Field(None, ge=0, le=100_000, description="random unlabelled windows as 'other'")
    c: float = Field(1.0, gt=0, le=1e6, description="inverse regularisation strength")
    seed: int = Field(0, ge=0, le=2**31)


def _teach(sx):
    from indexer.teach_store import TeachStore

    return TeachStore(sx.store)


def _windows(sx, targets: list) -> list:
    from search.core.like import resolve_windows

    teach = _teach(sx)
    found = []
    for t in targets:
        found += resolve_windows(teach, t if isinstance(t, int) else t.model_dump())
    return found


@router.get("/examples", dependencies=Guarded, tags=["teach"])
def list_examples(
    request: Request, sx: IndexDep, cls: Annotated[str | None, Query(alias="class", max_length=100)] = None
) -> dict:
    """Every example (of one class) with its current window; stale ones (their file changed or is gone) say so."""
    from search.core.probes import example_document

    if len(request.query_params.getlist("class")) > 1:
        raise BadInput("give `class` once")

    return {"examples": [example_document(e) for e in _teach(sx).examples(cls)], "classes": _teach(sx).classes()}


@router.post("/examples", dependencies=Guarded, tags=["teach"], responses=error_responses(422))
def add_examples(body: ExamplesRequest, sx: IndexDep) -> dict:
    """Mark windows as examples of a class (the first creates it); every target resolves before anything is written."""
    from search.core.probes import check_class_name

    cls = check_class_name(body.cls)
    windows = _windows(sx, body.targets)
    added = _teach(sx).add_examples(cls, windows, not body.negative, body.source)
    return {"class": cls, "added": added, "positive": not body.negative, "window_ids": [w.window_id for w in windows]}


@router.post("/examples/remove", dependencies=Guarded, tags=["teach"])
def remove_examples(body: ExamplesRequest, sx: IndexDep) -> dict:
    """Unmark the targets' windows in a class ('*': in every class)."""
    windows = _windows(sx, body.targets)
    return {"class": body.cls, "removed": _teach(sx).remove_examples(None if body.cls == "*" else body.cls, windows)}


@router.get("/probes", dependencies=Guarded, tags=["teach"])
def list_probes(sx: IndexDep) -> dict:
    """Every probe: classes, version, model, cross-validated figures, whether its examples changed since."""
    from search.core.probes import probe_summary

    teach = _teach(sx)
    return {"probes": [probe_summary(sx.store, teach.probe(n)) for n in teach.probe_names()]}  # type: ignore[arg-type]


def _probe(sx, name: str):
    record = _teach(sx).probe(name) if len(name) <= 64 else None
    if record is None:
        raise HTTPException(404, f"no probe named {name!r}")
    return record


@router.get("/probes/{name}", dependencies=Guarded, tags=["teach"], responses=error_responses(404))
def get_probe(name: str, sx: IndexDep) -> dict:
    """One probe's summary."""
    from search.core.probes import probe_summary

    return probe_summary(sx.store, _probe(sx, name))


@router.delete("/probes/{name}", dependencies=Guarded, tags=["teach"], responses=error_responses(404))
def remove_probe(name: str, sx: IndexDep) -> dict:
    """Remove a probe."""
    _probe(sx, name)
    _teach(sx).remove_probe(name)
    return {"removed": name}


@router.post(
    "/probes/{name}/train",
    response_model=JobInfo,
    status_code=202,
    dependencies=Guarded,
    tags=["teach"],
    responses=error_responses(429),
)
def train_probe(name: str, body: TrainRequest, jobs: JobsDep, sx: IndexDep) -> JobInfo:
    """Queue training probe ``name`` (a job: follow it on GET /jobs/{id}; its `train.result` is the probe)."""
    from search.core.probes import check_name, parse_classes

    check_name(name)
    classes = parse_classes(body.classes)  # a malformed class list is refused now, not in the job
    return jobs.submit_train(
        {"probe": name, "classes": classes, "background": body.background, "c": body.c, "seed": body.seed}
    )


@router.get("/probes/{name}/export", dependencies=Guarded, tags=["teach"], responses=error_responses(404))
def export_probe(name: str, sx: IndexDep) -> dict[str, Any]:
    """The probe file `soundsift probes export` writes (import it into an index built with the same model)."""
    from search.core.probes import export_probe as export

    _probe(sx, name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.json"
        export(sx.store, name, path)
        return json.loads(path.read_text())


@router.post("/probes", dependencies=Guarded, tags=["teach"], responses=error_responses(409))
def import_probe(
    doc: dict[str, Any], sx: IndexDep, name: Annotated[str | None, Query(max_length=64, pattern=PROBE_NAME)] = None
) -> dict:
    """Store a probe file; one trained with another model is refused, naming both."""
    from search.core.probes import import_probe as load
    from search.core.probes import probe_summary

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.json"
        path.write_text(json.dumps(doc))
        return probe_summary(sx.store, load(sx.store, path, name))


@router.post("/search/like-file", response_model=SearchResponse, dependencies=Guarded, tags=["search"])
async def search_like_file(
    request: Request,
    sx: IndexDep,
    file: Annotated[UploadFile, File(description="a clip: the windows most like it")],
    k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
    queries: Annotated[
        str | None, Form(max_length=20_000, description="texts to mix in, as a JSON list of strings")
    ] = None,
) -> SearchResponse:
    """Search by an uploaded clip, embedded as the index embeds audio; the upload is deleted when the request ends."""
    from search.core.like import LikeQuery, embed_clip

    texts: list[str] = []
    if queries:
        try:
            texts = json.loads(queries)
        except json.JSONDecodeError:
            raise BadInput("`queries` is a JSON list of strings") from None
        if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise BadInput("`queries` is a JSON list of strings")
        if len(texts) > MAX_QUERIES:
            raise BadInput(f"at most {MAX_QUERIES} queries")
    async with saved_upload(file, request.app.state.upload_dir) as saved:
        vector = await run_heavy(request, embed_clip, saved, sx.encoder.full(), sx.settings, sx.plugins)
    return await run_in_threadpool(sx.search, texts, k=k, like=LikeQuery(like_vectors=[vector]))
