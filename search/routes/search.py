"""Search route: top-k windows per query."""
from __future__ import annotations

from fastapi import APIRouter

from search.http_models import SearchRequest
from search.results import SearchResponse
from search.routes.deps import Guarded, IndexDep

router = APIRouter()


@router.post("/search", response_model=SearchResponse, dependencies=Guarded, tags=["search"])
def search(body: SearchRequest, sx: IndexDep) -> SearchResponse:
    """Top-k windows per query: the same document as `soundsift search --json`."""
    return sx.search(body.queries, k=body.k, filters=body.filters, strict=body.strict or None,
                     prompt_template=body.prompt_template, localize=body.localize)
