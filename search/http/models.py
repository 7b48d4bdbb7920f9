"""Request and response models of the HTTP API, with the limits a client must stay within (422 beyond them)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from search.core.label_set import NAME_PATTERN as LABEL_SET_NAME
from search.core.options import DEFAULT_POLICY, TEMPLATE_PATTERN
from search.core.prompts import MAX_QUERY_CHARS
from search.filters import Filters

MAX_QUERIES = 32
MAX_LABELS = 64
MAX_K = 1000
MAX_PAGE = 10_000
MAX_TOP = 1_000_000
MAX_JOB_PATHS = 100
MAX_MARGIN_S = 30.0
MAX_TAG_FILTER = 300
PROBE_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"
_TAG_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

# A text with something in it: blank queries and labels are refused by the schema itself.
# (Spelled out rather than \s: JSON Schema, Python and pydantic's Rust regex disagree on what \s matches.)
NOT_BLANK = r"[^\x00-\x20\x7f-\xa0,\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_SOMETHING = re.compile(NOT_BLANK)


def _not_blank(what: str):
    def check(text: str) -> str:
        if not _SOMETHING.search(text):
            raise ValueError(what)
        return text

    return AfterValidator(check)


# The pattern is in the schema; the check is ours, so the answer keeps its plain message.
QueryText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_QUERY_CHARS, json_schema_extra={"pattern": NOT_BLANK}),
    _not_blank("empty query"),
]
# Request bodies are strict: `"k": "10"` or `"strict": 0` are refused (422), not coerced.
STRICT = ConfigDict(strict=True)


def _a_json_number(value):
    if isinstance(value, (str, bytes, bool)):
        raise ValueError("must be a number")
    return value


# An integer as JSON Schema has it: 90 and 90.0 are integers, "90" and true are not.
JsonInt = Annotated[int, Field(strict=False), BeforeValidator(_a_json_number)]


def _tag_names_in_schema(schema: dict) -> None:
    tags = schema.get("properties", {}).get("tags")
    if tags is not None:
        # A flat tag name, or MODEL:LABEL (the same rule as `_plain_tag_names`); for the list form see its validator.
        names = {
            "anyOf": [{"pattern": _TAG_NAME.pattern}, {"pattern": ":", "minLength": 3, "maxLength": MAX_TAG_FILTER}]
        }
        for branch in tags.get("anyOf", [tags]):
            if branch.get("type") == "object":
                branch["propertyNames"] = names
                branch["maxProperties"] = 16
            elif branch.get("type") == "array":  # MODEL:LABEL[op value] or NAME=VALUE, a name before the ':' or '='
                branch["items"] = {
                    "type": "string",
                    "maxLength": MAX_TAG_FILTER,
                    "pattern": r"^\s*[^\s:=][^:=]*(:[\s\S]*\S[\s\S]*|=[\s\S]*)$",
                }
                branch["maxItems"] = 16


class RequestFilters(Filters):
    """The same filters as the CLI and the Python API; tag names are plain identifiers."""

    model_config = ConfigDict(strict=True, json_schema_extra=_tag_names_in_schema)

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
        bad = [
            name for name in tags if not (_TAG_NAME.match(name) or (":" in name and 2 < len(name) <= MAX_TAG_FILTER))
        ]
        if bad:
            raise ValueError(
                f"tag names are letters, digits, '_', '.', '-' (1-64 characters), or MODEL:LABEL, not {bad[0]!r}"
            )
        return tags


def _check_template(value: str | None) -> str | None:
    from indexer.errors import BadInput
    from search.core.options import check_prompt_template

    if value is None:
        return value
    try:
        return check_prompt_template(value)
    except BadInput as exc:
        raise ValueError(str(exc).removeprefix("prompt_template ")) from None


class WindowTarget(BaseModel):
    """A window named by its file (as indexed) and a time in it; without ``start``, the file's windows' mean."""

    model_config = STRICT
    path: str = Field(..., min_length=1, max_length=4096)
    start: float | None = Field(None, ge=0, le=1e7, description="seconds: the window holding this time")


class LikeWeights(BaseModel):
    """Rocchio's weights: the text, the `like` examples' mean, the `unlike` examples' mean."""

    model_config = ConfigDict(strict=True)
    text: float = Field(1.0, ge=-100, le=100)
    like: float = Field(1.0, ge=-100, le=100)
    unlike: float = Field(0.5, ge=-100, le=100)


# Window ids as JSON's safe integers: a client's doubles carry them exactly (ids count up from 0).
Target = Annotated[int, Field(ge=0, le=2**53 - 1, strict=False), BeforeValidator(_a_json_number)] | WindowTarget


NOTHING_TO_SEARCH = "give at least 1 query (or `like` targets, a `probe` 'PROBE:CLASS', or filters.said: what is said)"


class SearchRequest(BaseModel):
    model_config = STRICT
    like: list[Target] = Field(
        default_factory=list, max_length=MAX_QUERIES, description="more like these: window ids or {path, start}"
    )
    unlike: list[Target] = Field(default_factory=list, max_length=MAX_QUERIES, description="less like these")
    include_self: bool = Field(False, description="keep the `like` targets' own windows among the hits")
    like_weights: LikeWeights | None = None
    probe: str | None = Field(
        None,
        max_length=200,
        json_schema_extra={"pattern": r"^[A-Za-z0-9_.\-]{1,64}:.+$"},
        description="rank windows by a probe's probability of a class: 'PROBE:CLASS'",
    )
    filters: RequestFilters | None = None
    queries: list[QueryText] = Field(
        default_factory=list,
        max_length=MAX_QUERIES,
        description="descriptions, e.g. ['glass breaking', '轴承异响'] (may be empty with `like`, `probe` or "
        "filters.said: then ranked by the examples, the probe or what is said)",
    )
    k: JsonInt = Field(10, ge=1, le=MAX_K, description="hits per query")
    strict: bool = Field(False, description="fail when part of a query has no English translation")
    prompt_template: str | None = Field(
        None,
        max_length=500,
        json_schema_extra={"pattern": TEMPLATE_PATTERN},
        description="replaces the configured prompt template, e.g. 'the sound of {}'",
    )
    localize: bool = Field(False, description="add to each hit where inside its window the sound is (`localized`)")
    fuse: Literal["rrf"] | None = Field(
        None, description="with filters.said: fuse the sound and the said rankings (reciprocal rank fusion)"
    )

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value):
        return _check_template(value)

    @field_validator("queries")
    @classmethod
    def _some_query(cls, queries, info):
        # `like`, `probe` and `filters` come first in the model, so they are validated (and seen here) before
        # `queries`: an empty list is refused as the field's own error, beside any other field's.
        filters = info.data.get("filters")
        said = filters is not None and bool(filters.said)
        if not queries and not info.data.get("like") and not info.data.get("probe") and not said:
            raise ValueError(NOTHING_TO_SEARCH)
        return queries

    @model_validator(mode="after")
    def _something_to_search(self):
        said = self.filters is not None and bool(self.filters.said)
        if not (self.queries or self.like or self.probe or said):  # `queries` left out altogether
            raise ValueError(NOTHING_TO_SEARCH)
        if self.probe is not None and (self.queries or self.like or self.unlike):
            raise ValueError("`probe` ranks by the probe alone: give it without queries, like or unlike")
        return self

    def like_query(self):
        """The search-by-example part of the request (None without like/unlike targets)."""
        if not (self.like or self.unlike):
            return None
        from search.core.like import LikeQuery
        from search.core.like import LikeWeights as Weights

        w = self.like_weights or LikeWeights()

        def spec(t):
            return t if isinstance(t, int) else t.model_dump()

        return LikeQuery(
            like=[spec(t) for t in self.like],
            unlike=[spec(t) for t in self.unlike],
            include_self=self.include_self,
            weights=Weights(w.text, w.like, w.unlike),
        )


class ClassifyRequest(BaseModel):
    # exactly one of labels, label_set and probe says what scores (the schema says so too: oneOf)
    model_config = ConfigDict(
        strict=True,
        json_schema_extra={"oneOf": [{"required": ["labels"]}, {"required": ["label_set"]}, {"required": ["probe"]}]},
    )
    labels: (
        Annotated[list[QueryText], Field(min_length=1)]
        | Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS * 4, json_schema_extra={"pattern": NOT_BLANK})]
        | None
    ) = Field(None, description="a list of labels, or one comma-separated string (required unless `label_set`)")
    label_set: str | None = Field(
        None,
        max_length=100,
        json_schema_extra={"pattern": LABEL_SET_NAME},
        description="the name of a label set stored in the index (`soundsift label-set add`, `eval --save-label-set`):"
        " its labels, texts, template, policy, options and thresholds; `policy`, `policy_options` and "
        "`prompt_template` given here win over the set's",
    )
    label_names: list[QueryText] | None = Field(
        None,
        max_length=MAX_LABELS,
        description="names for the rows' labels, one per label text (a label set's classes)",
    )
    probe: str | None = Field(
        None,
        max_length=64,
        json_schema_extra={"pattern": PROBE_NAME},
        description="score with a probe trained in the index (`soundsift train`, POST /probes/{name}/train) "
        "instead of labels",
    )
    policy: str = Field(DEFAULT_POLICY, max_length=100, description="scoring policy (see GET /stats: policies)")
    by: Literal["window", "file"] = "window"
    threshold: float | None = Field(None, ge=-1e6, le=1e6, description="keep rows whose label scores at least this")
    # Bounds before the validator, on the integer itself: elsewhere they leave raw "ge"/"le" in the JSON schema.
    top: Annotated[int, Field(ge=1, le=MAX_TOP, strict=False), BeforeValidator(_a_json_number)] | None = Field(
        None, description="keep the N best rows, best first"
    )
    filters: RequestFilters | None = None
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the previous page")
    limit: JsonInt = Field(1000, ge=1, le=MAX_PAGE, description="rows per page (ignored when streaming ndjson)")
    strict: bool = False
    policy_options: dict[str, Any] | None = Field(
        None,
        description='the policy\'s options, e.g. {"min_margin": 0.2} or '
        '{"thresholds": {"dog": 0.3}} (see `soundsift plugins`)',
    )
    prompt_template: str | None = Field(
        None,
        max_length=500,
        json_schema_extra={"pattern": TEMPLATE_PATTERN},
        description="replaces the configured prompt template, e.g. 'the sound of {}'",
    )

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value):
        return _check_template(value)

    @field_validator("label_set")
    @classmethod
    def _label_set_name(cls, value):
        if value is not None and not re.fullmatch(LABEL_SET_NAME, value):
            raise ValueError("a label set name is letters, digits, _ . - (up to 100)")
        return value

    @model_validator(mode="after")
    def _labels_or_set(self):
        if self.probe is not None:
            if not re.fullmatch(PROBE_NAME, self.probe):
                raise ValueError("a probe name is letters, digits, _ . - (up to 64)")
            if self.labels is not None or self.label_set is not None:
                raise ValueError("give `probe` alone: it scores with its own classes, not `labels` or `label_set`")
            return self
        if (self.labels is None) == (self.label_set is None):
            raise ValueError("give `labels` or `label_set` (the name of a label set stored in the index), not both")
        if self.label_names is not None and self.label_set is not None:
            raise ValueError("`label_names` goes with `labels`, not with `label_set`")
        return self

    @field_validator("labels")
    @classmethod
    def _label_count(cls, labels):
        if labels is None:
            return labels
        count = len(labels) if isinstance(labels, list) else labels.count(",") + 1
        if count > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        if isinstance(labels, list) and not labels:
            raise ValueError("give at least one label")
        if isinstance(labels, str) and not _SOMETHING.search(labels):
            raise ValueError("empty label list")
        return labels


class JobRequest(BaseModel):
    model_config = STRICT
    paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        ..., min_length=1, max_length=MAX_JOB_PATHS, description="files or directories on the server to (re)index"
    )
    retry_failed: bool = Field(False, description="decode files that failed before again")


class TranscribeJobRequest(BaseModel):
    model_config = STRICT
    model: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        json_schema_extra={"pattern": r"^[^\x00]+$"},  # no NUL, as for tag jobs
        description="speech-recognition checkpoint: Hugging Face id, directory on the server, alias=id, "
        "or a plugin's transcriber name",
    )
    language: str | None = Field(
        None,
        max_length=32,
        json_schema_extra={"pattern": r"^[^\x00]*$"},
        description="the language spoken, e.g. zh (Whisper is asked for it)",
    )
    retranscribe: bool = Field(
        False, description="drop the model's stored transcripts and transcribe every window again"
    )

    @field_validator("model", "language")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("a model name or language cannot contain NUL")
        return value


class TagJobRequest(BaseModel):
    model_config = STRICT
    model: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        # No NUL: no path or model id holds one; the pattern says so in the schema, the check keeps the plain message.
        json_schema_extra={"pattern": r"^[^\x00]+$"},
        description="audio-classification checkpoint: Hugging Face id, directory on the server, or alias=id",
    )
    top_k: Annotated[int, Field(ge=0, le=100_000, strict=False), BeforeValidator(_a_json_number)] | None = Field(
        None, description="labels kept per window (default 5; 0 = every label)"
    )
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="default: the model's own"
    )
    retag: bool = Field(False, description="the model's labels or settings changed: drop its stored tags and tag again")

    @field_validator("model")
    @classmethod
    def _no_nul(cls, model: str) -> str:
        if "\x00" in model:
            raise ValueError("a model name cannot contain NUL")
        return model


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
        default_factory=dict,
        description="classifier tags by model alias: [{label, score}, ...] best first (soundsift tag)",
    )
    score: float | None = Field(None, description="cosine with `query`, or the best label's score with `labels`")
    scores: dict[str, float] | None = None
    label: str | None = None


class TranscriptWord(BaseModel):
    text: str
    start: float = Field(description="seconds from the start of the file")
    end: float


class TranscriptSegment(BaseModel):
    """What one speech model heard in one window: its text, its own start and end, and its words' times."""

    window_id: int
    start: float = Field(description="the segment's start (its first word; the window's start without word times)")
    end: float
    text: str
    model: str = Field(description="the speech model's alias")
    language: str | None = None
    words: list[TranscriptWord] = Field(default_factory=list)


class FileDetail(FileInfo):
    windows: list[WindowInfo] = Field(default_factory=list)
    query_texts: list[str] | None = Field(None, description="the English texts embedded for `query`")
    transcript: list[TranscriptSegment] = Field(
        default_factory=list, description="what is said, segment by segment in time order (`soundsift transcribe`)"
    )


class ErrorItem(BaseModel):
    """One thing wrong with a request (the fields FastAPI's validation reports)."""

    loc: list[str | int] = Field(default_factory=list, description="where: e.g. ['body', 'k']")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error answer: one line saying what went wrong and what to do; a 422 from validation also lists each problem."""

    detail: str
    errors: list[ErrorItem] | None = Field(None, description="with 422: each invalid field")


ERROR_TEXT = {
    400: "the body cannot be parsed (not JSON, not UTF-8, not a form)",
    401: "missing or wrong API key (only when the server has one)",
    403: "a path outside the roots this server may index",
    404: "no such item",
    409: "the index is owned by another process or was built with another model",
    413: "the request body, or the uploaded audio, is over the server's limits",
    422: "the request is not valid (the fields, a label set, a filter, or audio that cannot be decoded)",
    429: "too many jobs are waiting",
    503: "the model or the index cannot be used right now",
}


def error_responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` entries for ``codes``, all with the ErrorResponse body."""
    return {code: {"model": ErrorResponse, "description": ERROR_TEXT[code]} for code in codes}
