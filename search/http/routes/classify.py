"""Classification routes: the index against a label set (paged or streamed), and one uploaded file."""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse

from indexer.errors import BadInput, DecodeError
from search.core.classify import policy_named
from search.core.label_set import apply_label_set, stored_label_set
from search.core.options import DEFAULT_POLICY, check_prompt_template, parse_policy_options
from search.core.requests import ClassifyFileOptions
from search.core.results import ClassifyResponse, FileClassification
from search.http.catalog import check_labels
from search.http.models import MAX_LABELS, NOT_BLANK, TEMPLATE_PATTERN, ClassifyRequest, error_responses
from search.http.routes.deps import Guarded, IndexDep, decode_cursor, encode_cursor, run_heavy
from search.http.uploads import classify_upload as classify_upload_file
from search.http.uploads import saved_upload

NDJSON = "application/x-ndjson"

router = APIRouter()

# A threshold part: one number, {label: number} or one number per label (JSON text in the form).
THRESHOLD_SCHEMA = {
    "anyOf": [
        {"type": "number"},
        {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "maxProperties": MAX_LABELS,
            "propertyNames": {"maxLength": 1000},
        },
        {"type": "array", "items": {"type": "number"}, "maxItems": MAX_LABELS},
    ]
}


def json_part(schema: dict) -> dict:
    """A form field holding JSON text of ``schema`` (the OpenAPI document shows it as an application/json part)."""
    return {"contentMediaType": "application/json", "contentSchema": schema}


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    dependencies=Guarded,
    tags=["classify"],
    responses={
        200: {
            "content": {NDJSON: {"schema": {"type": "string"}}},
            "description": f"a page of rows; with `Accept: {NDJSON}`, a header line then every row",
        }
    },
)
async def classify(body: ClassifyRequest, request: Request, sx: IndexDep):
    """Every window (or file) scored against a label set, a page at a time or streamed as ndjson."""
    return await run_heavy(request, _classify, body, request, sx)


def _classify(body: ClassifyRequest, request: Request, sx):
    labels, names, policy, options, template = (
        body.labels,
        body.label_names,
        body.policy,
        body.policy_options,
        body.prompt_template,
    )
    if body.label_set is not None:
        call = apply_label_set(
            stored_label_set(sx.store, body.label_set),
            body.policy if "policy" in body.model_fields_set else None,
            body.policy_options,
            body.prompt_template,
        )
        labels, names, policy, options, template = (
            call.labels,
            call.label_names,
            call.policy,
            call.policy_options,
            call.prompt_template,
        )
    if body.probe is None:
        check_labels(labels, MAX_LABELS)
    position = decode_cursor(body.cursor) if body.cursor else {}
    after = position.get("after") if body.top is None else None
    header, rows = sx.iter_classify(
        labels or [],
        policy=policy,
        by=body.by,
        top=body.top,
        threshold=body.threshold,
        filters=body.filters,
        strict=body.strict or None,
        after=after,
        policy_options=options,
        prompt_template=template,
        label_names=list(names) if names is not None else None,
        probe=body.probe,
    )
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
            {"offset": position.get("offset", 0) + body.limit}
            if body.top is not None
            else {"after": last.window_id if body.by == "window" else last.file_id}
        )
    return header


@router.post(
    "/classify-file",
    response_model=FileClassification,
    dependencies=Guarded,
    tags=["classify"],
    responses=error_responses(413),
)
async def classify_upload(
    request: Request,
    sx: IndexDep,
    # An empty upload is no audio: the schema asks for at least one byte, like the check below.
    file: Annotated[UploadFile, File(description="an audio file (not empty)", json_schema_extra={"minLength": 1})],
    labels: Annotated[
        str,
        Form(
            min_length=1,
            max_length=4000,
            json_schema_extra={"pattern": NOT_BLANK},
            description="comma-separated labels; a repeated `labels` field adds its labels",
        ),
    ],
    policy: Annotated[str, Form(max_length=100)] = DEFAULT_POLICY,
    policy_options: Annotated[
        str | None,
        Form(
            max_length=20_000,
            json_schema_extra=json_part({"type": "object"}),
            description='the policy\'s options as a JSON object, e.g. {"min_margin": 0.2}',
        ),
    ] = None,
    threshold: Annotated[
        str | None,
        Form(
            max_length=100_000,  # room for MAX_LABELS labels of 1000 characters with their numbers
            json_schema_extra=json_part(THRESHOLD_SCHEMA),
            description='a number, or per label as JSON: {"dog": 0.3} or [0.3, 0.5]',
        ),
    ] = None,
    prompt_template: Annotated[
        str | None,
        Form(max_length=500, json_schema_extra={"pattern": TEMPLATE_PATTERN}, description="e.g. 'the sound of {}'"),
    ] = None,
    start: Annotated[float | None, Form(ge=0, le=1e7, description="classify from here, seconds")] = None,
    duration: Annotated[float | None, Form(gt=0, le=1e7, description="classify this long, seconds")] = None,
    pcm_sample_rate: Annotated[int | None, Form(ge=1, le=10_000_000, description="raw PCM: sample rate")] = None,
    pcm_channels: Annotated[int | None, Form(ge=1, le=1024, description="raw PCM: channels")] = None,
    pcm_format: Annotated[
        str | None, Form(max_length=16, description="raw PCM: s16le, s24le, s32le, f32le, u8")
    ] = None,
    envelope_points: Annotated[int, Form(ge=0, le=20_000, description="waveform points to return (0: none)")] = 0,
    mel_width: Annotated[int, Form(ge=0, le=4000, description="log-mel image width, pixels")] = 600,
) -> FileClassification:
    """One uploaded file classified per window and as a whole; the upload is deleted when the request ends.

    Every option of one request: policy and `policy_options`, `threshold`, `prompt_template`, a segment
    (`start`, `duration`), the layout of raw PCM, and the envelope (waveform + log-mel image) to draw.

    The upload may hold at most `max_upload_duration_s` of audio to decode (checked from its header, then
    while it decodes) and take at most `upload_time_budget_s` to classify: 413 beyond either.
    """
    form = await request.form()
    labels = form_labels(form.getlist("labels")) or labels
    # An option given twice is ambiguous; fields this route does not read are ignored, as the schema allows them.
    repeated = [name for name in form.keys() if name in UPLOAD_OPTIONS and len(form.getlist(name)) > 1]
    if repeated:
        raise BadInput(f"give `{repeated[0]}` once")
    check_labels(labels, MAX_LABELS)
    policy_named(sx.plugins.policies, policy)
    options = parse_policy_options(policy_options)
    limit = _threshold(threshold)
    if prompt_template is not None:
        check_prompt_template(prompt_template)
    settings = sx.settings
    pcm = {
        k: v
        for k, v in (("sample_rate", pcm_sample_rate), ("channels", pcm_channels), ("sample_format", pcm_format))
        if v is not None
    }
    if pcm:
        settings = settings.model_copy(
            update={"plugin": {**settings.plugin, "pcm": {**settings.plugin.get("pcm", {}), **pcm}}}
        )
    async with saved_upload(file, request.app.state.upload_dir) as saved:
        try:
            result = await run_heavy(
                request,
                classify_upload_file,
                saved,
                labels,
                sx.encoder.full(),
                settings,
                sx.plugins,
                ClassifyFileOptions(
                    policy, options, limit, prompt_template, start, duration, envelope_points, mel_width
                ),
            )
        except DecodeError as exc:
            raise DecodeError(str(exc).replace(str(saved), file.filename or "upload")) from None
    result.path = file.filename
    for row in [*result.windows, result.file]:
        row.path = file.filename or "upload"
    return result


# The form fields of /classify-file read once (`labels` may repeat; `file` is the upload): its form parameters.
UPLOAD_OPTIONS = frozenset(inspect.signature(classify_upload).parameters) - {"request", "sx", "file", "labels"}


def form_labels(values: list) -> str:
    """Repeated `labels` form fields joined into one comma-separated label set (``-F labels=a -F labels=b`` is ``a, b``)."""
    texts = [v for v in values if isinstance(v, str)]
    return ", ".join(t for t in texts if t.strip())


def _threshold(raw: str | None) -> float | dict | list | None:
    """The form's threshold: one number, or a JSON object / list of numbers per label."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, (int, float, dict, list)):
        raise BadInput(f"threshold must be a number or a JSON object of numbers per label, not {raw[:80]!r}")
    return value


def _ndjson(header: ClassifyResponse, rows: Iterator) -> Iterator[bytes]:
    """A header line (labels, texts, policy) and one line per row; the rows are read chunk by chunk."""
    try:
        yield (
            json.dumps({"header": header.model_dump(mode="json", exclude={"rows", "next_cursor"})}, ensure_ascii=False)
            + "\n"
        ).encode()
        for row in rows:
            yield (json.dumps(row.model_dump(mode="json"), ensure_ascii=False) + "\n").encode()
    finally:
        getattr(rows, "close", lambda: None)()
