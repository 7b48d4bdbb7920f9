"""Request and response models of the HTTP API, with the limits a client must stay within (422 beyond them)."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from search.filters import Filters
from search.queries import MAX_QUERY_CHARS

MAX_QUERIES = 32
MAX_LABELS = 64
MAX_K = 1000
MAX_PAGE = 10_000
MAX_TOP = 1_000_000
MAX_JOB_PATHS = 100
MAX_MARGIN_S = 30.0
MAX_TAG_FILTER = 300
_TAG_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

QueryText = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]


class RequestFilters(Filters):
    """The same filters as the CLI and the Python API; tag names are plain identifiers."""

    @field_validator("tags")
    @classmethod
    def _plain_tag_names(cls, tags: dict | list) -> dict | list:
        from indexer.errors import BadInput
        from search.filters import parse_tag_filter

        if len(tags) > 16:
            raise ValueError("at most 16 tag filters")
        if isinstance(tags, list):
            for text in tags:
                if len(text) > MAX_TAG_FILTER:
                    raise ValueError(f"a tag filter is at most {MAX_TAG_FILTER} characters")
                try:
                    parse_tag_filter(text)
                except BadInput as exc:
                    raise ValueError(str(exc)) from None
            return tags
        # 'MODEL:LABEL' keys name a model's label (labels may hold spaces and commas); plain keys are flat tag names.
        bad = [name for name in tags if not (_TAG_NAME.match(name) or (":" in name and 2 < len(name) <= MAX_TAG_FILTER))]
        if bad:
            raise ValueError(f"tag names are letters, digits, '_', '.', '-' (1-64 characters), or MODEL:LABEL, not {bad[0]!r}")
        return tags


def _check_template(value: str | None) -> str | None:
    from indexer.errors import BadInput
    from search.request_options import check_prompt_template

    if value is None:
        return value
    try:
        return check_prompt_template(value)
    except BadInput as exc:
        raise ValueError(str(exc).removeprefix("prompt_template ")) from None


class SearchRequest(BaseModel):
    queries: list[QueryText] = Field(..., min_length=1, max_length=MAX_QUERIES,
                                     description="descriptions, e.g. ['glass breaking', '轴承异响']")
    k: int = Field(10, ge=1, le=MAX_K, description="hits per query")
    filters: RequestFilters | None = None
    strict: bool = Field(False, description="fail when part of a query has no English translation")
    prompt_template: str | None = Field(None, max_length=500, description="replaces the configured prompt template, e.g. 'the sound of {}'")
    localize: bool = Field(False, description="add to each hit where inside its window the sound is (`localized`)")

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value):
        return _check_template(value)


class ClassifyRequest(BaseModel):
    labels: list[QueryText] | Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS * 4)] = Field(
        ..., description="a list of labels, or one comma-separated string")
    policy: str = Field("softmax", max_length=100, description="scoring policy (see GET /stats: policies)")
    by: Literal["window", "file"] = "window"
    threshold: float | None = Field(None, ge=-1e6, le=1e6, description="keep rows whose label scores at least this")
    top: int | None = Field(None, ge=1, le=MAX_TOP, description="keep the N best rows, best first")
    filters: RequestFilters | None = None
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the previous page")
    limit: int = Field(1000, ge=1, le=MAX_PAGE, description="rows per page (ignored when streaming ndjson)")
    strict: bool = False
    policy_options: dict[str, Any] | None = Field(None, description="the policy's options, e.g. {\"min_margin\": 0.2} or "
                                                  "{\"thresholds\": {\"dog\": 0.3}} (see `soundsift plugins`)")
    prompt_template: str | None = Field(None, max_length=500, description="replaces the configured prompt template, e.g. 'the sound of {}'")

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value):
        return _check_template(value)

    @field_validator("labels")
    @classmethod
    def _label_count(cls, labels):
        count = len(labels) if isinstance(labels, list) else labels.count(",") + 1
        if count > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        if isinstance(labels, list) and not labels:
            raise ValueError("give at least one label")
        return labels


class JobRequest(BaseModel):
    paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        ..., min_length=1, max_length=MAX_JOB_PATHS, description="files or directories on the server to (re)index")
    retry_failed: bool = Field(False, description="decode files that failed before again")


class TagJobRequest(BaseModel):
    model: str = Field(..., min_length=1, max_length=4096,
                       description="audio-classification checkpoint: Hugging Face id, directory on the server, or alias=id")
    top_k: int | None = Field(None, ge=0, le=100_000, description="labels kept per window (default 5; 0 = every label)")
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(None, description="default: the model's own")
    retag: bool = Field(False, description="the model's labels or settings changed: drop its stored tags and tag again")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class FileInfo(BaseModel):
    id: int
    path: str
    status: str
    error: str | None = None
    size: int | None = None
    mtime: float | None = None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    codec: str | None = None
    window_count: int = 0


class FilesPage(BaseModel):
    total: int
    offset: int
    files: list[FileInfo]


class WindowInfo(BaseModel):
    id: int
    start: float
    end: float
    tags: dict[str, Any] = Field(default_factory=dict, description="acoustic stats and flags from the taggers")
    model_tags: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="classifier tags by model alias: [{label, score}, ...] best first (soundsift tag)")
    score: float | None = Field(None, description="cosine with `query`, or the best label's score with `labels`")
    scores: dict[str, float] | None = None
    label: str | None = None


class FileDetail(FileInfo):
    windows: list[WindowInfo] = Field(default_factory=list)
    query_texts: list[str] | None = Field(None, description="the English texts embedded for `query`")
