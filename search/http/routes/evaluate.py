"""Evaluation routes: a labelled sample on the server measured against a label set (the page's Evaluate tab), the
report's renderer, and the label sets stored in the index."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from indexer.errors import BadInput
from search.core.evaluate import EvalReport
from search.core.label_set import NAME_PATTERN, stored_label_set
from search.core.options import TEMPLATE_PATTERN
from search.core.samples import SkippedRow
from search.http.job_paths import allowed_roots, resolve_job_path
from search.http.models import MAX_LABELS, STRICT, error_responses
from search.http.routes.deps import Guarded, IndexDep, run_heavy

router = APIRouter()
MAX_VARIANTS = 32  # templates x phrasings x policies in one request

Template = Annotated[str, Field(min_length=2, max_length=500, json_schema_extra={"pattern": TEMPLATE_PATTERN})]
Phrasing = Annotated[str, Field(min_length=1, max_length=4000)]


class EvalRequest(BaseModel):
    model_config = STRICT
    sample: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        description="a labelled sample on the server, under the allowed roots: class folders, ESC-50, "
        "UrbanSound8K or a manifest .csv/.jsonl (path, label, optional start/end)",
    )
    labels: str | None = Field(
        None,
        max_length=20_000,
        description='labels for the classes: "dog, cat" or dog="dog barking", bearing=轴承异响 (default: the class names)',
    )
    label_set: str | None = Field(
        None, max_length=100, json_schema_extra={"pattern": NAME_PATTERN}, description="a label set stored in the index"
    )
    policies: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, max_length=8, description="scoring policies to compare (default softmax)"
    )
    policy_options: dict[str, Any] | None = None
    prompt_templates: list[Template] | None = Field(None, max_length=8, description="prompt templates to compare")
    variants: list[Phrasing] | None = Field(
        None, max_length=16, description='alternative phrasings to compare, e.g. bearing="bearing squeal"'
    )
    target_precision: float | None = Field(None, gt=0.0, le=1.0)
    save_as: str | None = Field(
        None,
        max_length=100,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="store the best variant with its thresholds as a label set of this name",
    )


class LabelSetList(BaseModel):
    label_sets: list[str]


@router.post(
    "/eval",
    response_model=EvalReport,
    dependencies=Guarded,
    tags=["evaluate"],
    responses=error_responses(403, 404),
)
async def evaluate_sample(body: EvalRequest, request: Request, sx: IndexDep) -> EvalReport:
    """Measure a label set on a labelled sample on the server: the report `soundsift eval --json` prints.

    Clips are embedded once and cached in the index (a second evaluation embeds nothing). Only audio under the
    allowed roots is read: the sample's other rows are listed in `skipped`.
    """
    roots = allowed_roots(sx.store, getattr(request.app.state, "allow_roots", []))
    sample_path = resolve_job_path(body.sample, roots)
    return await run_heavy(request, _evaluate, body, sample_path, roots, sx)


def _evaluate(body: EvalRequest, sample_path: str, roots: list[str], sx) -> EvalReport:
    import os

    from search.core.eval_setup import parse_label_map, plan_variants, run_evaluation
    from search.core.label_set import save_label_set_in_index
    from search.core.samples import read_sample

    sample = read_sample(sample_path)
    kept = []
    for clip in sample.clips:
        real = os.path.realpath(clip.path)
        if any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            kept.append(clip)
        else:
            sample.skipped.append(SkippedRow(str(clip.path), "not under a root this server may index"))
    sample.clips = kept
    templates: list[str] | None
    policies: list[str] | None
    if body.label_set is not None:
        stored = stored_label_set(sx.store, body.label_set)
        label_map = {name: stored.text_of(name) for name in stored.labels}
        templates = body.prompt_templates or [stored.template]
        policies = body.policies or [stored.policy]
        options = {**stored.options, **(body.policy_options or {})}
    else:
        label_map = parse_label_map(body.labels) if body.labels else {c: c for c in sample.classes}
        templates, policies, options = body.prompt_templates, body.policies, body.policy_options or {}
    if not label_map:
        raise BadInput("no labels: give labels, a label set, or a sample with classes")
    if len(label_map) > MAX_LABELS:
        raise BadInput(f"{len(label_map)} labels: at most {MAX_LABELS} in one evaluation")
    plan = plan_variants(label_map, templates, body.variants, policies, options, sx.settings.prompt_template)
    report, best = run_evaluation(
        sample,
        plan,
        sx.encoder,
        sx.settings,
        sx.plugins,
        store=sx.store,
        target_precision=body.target_precision,
        max_variants=MAX_VARIANTS,
    )
    if body.save_as is not None:
        save_label_set_in_index(sx.store, body.save_as, best)
    return report


@router.get("/eval/report.js", tags=["evaluate"], response_class=Response)
def report_script() -> Response:
    """The report's renderer (``SoundsiftEvalReport.render(container, report)``), for the page's Evaluate tab."""
    from search.core.eval_report import script

    return Response(script(), media_type="text/javascript; charset=utf-8")


@router.get("/eval/report.css", tags=["evaluate"], response_class=Response)
def report_style() -> Response:
    """The report's style sheet."""
    from search.core.eval_report import style

    return Response(style(), media_type="text/css; charset=utf-8")


@router.get("/label-sets", response_model=LabelSetList, dependencies=Guarded, tags=["evaluate"])
def list_label_sets(sx: IndexDep) -> LabelSetList:
    """Names of the label sets stored in the index (for `POST /classify` with `label_set`)."""
    from indexer.label_set_store import LabelSetStore

    return LabelSetList(label_sets=LabelSetStore(sx.store).names())


@router.get("/label-sets/{name}", dependencies=Guarded, tags=["evaluate"], responses=error_responses(404))
def get_label_set(
    sx: IndexDep,
    name: Annotated[str, Path(max_length=100, pattern=NAME_PATTERN)],
) -> dict[str, Any]:
    """One stored label set: labels, texts, template, policy, options, thresholds."""
    from indexer.label_set_store import LabelSetStore

    if LabelSetStore(sx.store).get(name) is None:
        raise HTTPException(status_code=404, detail=f"no label set named {name!r} in the index")
    return stored_label_set(sx.store, name).to_dict()
