"""Result models shared by the Python API, the CLI's --json output and the HTTP API (the output contract)."""
from __future__ import annotations

from pydantic import BaseModel, Field


class SearchHit(BaseModel):
    path: str
    start: float
    end: float
    score: float
    window_id: int
    file_id: int


class QueryResult(BaseModel):
    query: str
    texts: list[str] = Field(description="the exact strings embedded for this query")
    negatives: list[str] = Field(default_factory=list)
    untranslated: list[str] = Field(default_factory=list)
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    results: list[QueryResult]


class ClassifyRow(BaseModel):
    path: str
    start: float
    end: float
    scores: dict[str, float]
    label: str | None
    window_id: int | None = None
    file_id: int | None = None
    extras: dict[str, float] = Field(default_factory=dict)
    fired: list[str] = Field(default_factory=list, description="every label the policy fired for this row (multilabel, archive)")


class ClassifyResponse(BaseModel):
    labels: list[str]
    texts: list[list[str]]
    policy: str
    by: str = "window"
    rows: list[ClassifyRow]
    untranslated: list[str] = Field(default_factory=list)
    next_cursor: str | None = None


class FileClassification(BaseModel):
    """One file (or array) classified alone: per-window rows and the file-level result."""

    path: str | None
    labels: list[str]
    texts: list[list[str]]
    policy: str
    windows: list[ClassifyRow]
    file: ClassifyRow
