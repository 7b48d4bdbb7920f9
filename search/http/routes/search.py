"""Search route: top-k windows per query."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from search.core.results import SearchResponse
from search.http.models import SearchRequest
from search.http.routes.deps import Guarded, IndexDep, run_heavy

router = APIRouter()


@router.post("/search", response_model=SearchResponse, dependencies=Guarded, tags=["search"])
async def search(body: SearchRequest, sx: IndexDep, request: Request) -> SearchResponse:
    """Top-k windows per query: the same document as `soundsift search --json`."""
    # With `localize`, each hit's audio is decoded and embedded again: that is heavy work, run with the other heavy requests.
    run = (lambda fn, *a, **k: run_heavy(request, fn, *a, **k)) if body.localize else run_in_threadpool
    return await run(
        sx.search,
        body.queries,
        k=body.k,
        filters=body.filters,
        strict=body.strict or None,
        prompt_template=body.prompt_template,
        localize=body.localize,
        fuse=body.fuse,
        like=body.like_query(),
        probe=body.probe,
    )
