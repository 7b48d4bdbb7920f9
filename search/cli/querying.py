"""Query commands: search (text, examples, a probe, what is said) and classify (a label set or a probe)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from indexer.errors import BadInput
from search.cli.app import (
    ApiKeyOpt,
    DeviceOpt,
    IndexOpt,
    JsonOpt,
    LabelSetOpt,
    ModelOpt,
    RayOpt,
    SaidOpt,
    ServerOpt,
    TagOpt,
    _emit_json,
    _filters,
    _fmt_time,
    _policy_option_errors,
    _policy_options,
    _progress_rows,
    _reader,
    _settings,
    _show_progress,
    app,
    out,
)
from search.cli.client import RemoteIndex
from search.cli.teach_options import (
    ClassifyProbeOpt,
    IncludeSelfOpt,
    LikeFileOpt,
    LikeOpt,
    LikeWeightOpt,
    SearchProbeOpt,
    TextWeightOpt,
    UnlikeOpt,
    UnlikeWeightOpt,
    embed_like_files,
    like_query,
    remote_like,
)
from search.core.options import DEFAULT_POLICY
from search.core.requests import ClassifyArchiveOptions, SearchOptions


@app.command()
def search(
    queries: Annotated[
        Optional[list[str]],
        typer.Argument(help="one or more descriptions, e.g. 'glass breaking' 轴承异响 (none with --said)"),
    ] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    k: Annotated[int, typer.Option("-k", "--k", help="hits per query")] = 10,
    path_glob: Annotated[Optional[str], typer.Option("--path-glob", help="only files whose path matches")] = None,
    tag: TagOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="fail when part of a query has no English translation")
    ] = False,
    localize: Annotated[
        bool, typer.Option("--localize", help="find where inside each hit's window the sound is (sub-windows)")
    ] = False,
    prompt_template: Annotated[Optional[str], typer.Option("--prompt-template", help="e.g. 'the sound of {}'")] = None,
    like: LikeOpt = None,
    unlike: UnlikeOpt = None,
    like_file: LikeFileOpt = None,
    include_self: IncludeSelfOpt = False,
    text_weight: TextWeightOpt = 1.0,
    like_weight: LikeWeightOpt = 1.0,
    unlike_weight: UnlikeWeightOpt = 0.5,
    probe: SearchProbeOpt = None,
    said: SaidOpt = None,
    fuse: Annotated[
        Optional[str], typer.Option("--fuse", help="rrf: rank by sound and by what is said, fused (with --said)")
    ] = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
):
    """Top-k windows for each query, by example (--like), by a probe's class or by what is said (--said) (through
    the owning server, when one does)."""
    if k < 1:
        raise BadInput("k must be at least 1")
    queries = list(queries or [])
    by_said_alone = bool(said) and not (queries or like or unlike or like_file or probe)
    example = (
        None
        if by_said_alone
        else like_query(like, unlike, like_file, include_self, text_weight, like_weight, unlike_weight, probe, queries)
    )
    settings = _settings(index, model, device)
    filters = _filters(path_glob, tag, said)
    options = SearchOptions(k, filters, strict or None, prompt_template, localize, probe=probe, fuse=fuse)
    with _reader(settings, server, api_key) as reader:
        if isinstance(reader, RemoteIndex):
            response = reader.search(queries, options=options, extra=remote_like(example, probe, like_file))
        else:
            like = embed_like_files(reader, example, like_file)
            response = reader.search(queries, options=dataclasses.replace(options, like=like))
    for result in response.results:  # on stderr, so --json output stays clean
        if result.untranslated:
            searched = "" if result.texts else "; not searched"
            sys.stderr.write(
                f"warning: no English found for: {', '.join(result.untranslated)} (in {result.query!r}){searched}\n"
            )
    if json_out:
        _emit_json(response)
        return
    for result in response.results:
        searched = f"embedded: {' | '.join(result.texts)}" if result.texts else f"said: {said}"
        out.print(f"[bold]{result.query}[/bold]  [dim]{searched}[/dim]", markup=True)
        if result.negatives:
            out.print(f"  [dim]negatives: {' | '.join(result.negatives)}[/dim]")
        if result.untranslated:
            out.print(f"  [yellow]no English found for: {', '.join(result.untranslated)}[/yellow]")
        table = Table(show_edge=False, pad_edge=False)
        for col in ("#", "score", "start", "end", *(("where",) if localize else ()), "path"):
            table.add_column(col, justify="right" if col != "path" else "left")
        for rank, hit in enumerate(result.hits, 1):
            where = (
                ()
                if not localize
                else (f"{_fmt_time(hit.localized.start)}-{_fmt_time(hit.localized.end)}" if hit.localized else "-",)
            )
            table.add_row(str(rank), f"{hit.score:.4f}", _fmt_time(hit.start), _fmt_time(hit.end), *where, hit.path)
            if hit.said is not None:
                table.add_row(
                    "",
                    "",
                    _fmt_time(hit.said.start),
                    _fmt_time(hit.said.end),
                    *[""] * len(where),
                    f"said: {hit.said.text}",
                )
        out.print(table)


def _labels_or_set(labels, label_set, policy, policy_options, prompt_template):
    """--labels, or --label-set FILE applied (the options given on the command line win over the set's)."""
    from search.core.label_set import LabelSetCall, apply_label_set, load_label_set

    if (labels is None) == (label_set is None):
        raise BadInput('give --labels "a, b" or --label-set FILE (one of them)')
    if label_set is not None:
        return apply_label_set(load_label_set(label_set), policy, policy_options, prompt_template)
    return LabelSetCall(labels, None, policy or DEFAULT_POLICY, policy_options, prompt_template)


@app.command()
def classify(
    labels: Annotated[
        Optional[str], typer.Option("--labels", help="comma-separated labels, e.g. 'glass breaking, dog barking'")
    ] = None,
    label_set: LabelSetOpt = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    by: Annotated[str, typer.Option("--by", help="window or file")] = "window",
    policy: Annotated[
        Optional[str], typer.Option("--policy", help="scoring policy (see `soundsift plugins`; default softmax)")
    ] = None,
    top: Annotated[Optional[int], typer.Option("--top", help="keep the N best rows")] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", help="keep rows whose label scores at least this")
    ] = None,
    policy_option: Annotated[
        Optional[list[str]],
        typer.Option(
            "--policy-option", help="policy option key=value (JSON value), repeatable, e.g. 'thresholds={\"dog\": 0.3}'"
        ),
    ] = None,
    path_glob: Annotated[Optional[str], typer.Option("--path-glob")] = None,
    tag: TagOpt = None,
    said: SaidOpt = None,
    prompt_template: Annotated[Optional[str], typer.Option("--prompt-template", help="e.g. 'the sound of {}'")] = None,
    out_path: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="write rows to results.csv|.parquet|.jsonl (with --ray: a directory of Parquet parts)"
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict")] = False,
    ray: RayOpt = None,
    shards: Annotated[
        Optional[Path],
        typer.Option(
            "--shards", help="with --ray: the windows `soundsift export` wrote (default: export --index first)"
        ),
    ] = None,
    probe: ClassifyProbeOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
):
    """Zero-shot classification of every window (or file) in the index against a label set or a trained --probe."""
    if by not in ("window", "file"):
        raise BadInput(f"--by must be window or file, not {by!r}")
    if probe is not None and (labels is not None or label_set is not None):
        raise BadInput("--probe scores with the probe's own classes: give it without --labels or --label-set")
    settings = _settings(index, model, device)
    if probe is None:
        call = _labels_or_set(labels, label_set, policy, _policy_options(policy_option), prompt_template)
        labels, policy, policy_options = call.labels, call.policy, call.policy_options
        prompt_template, label_names = call.prompt_template, call.label_names
        if (ray is not None or shards is not None) and label_names is not None:
            raise BadInput("--label-set is not supported with --ray yet: give the labels with --labels")
    else:
        policy, policy_options, label_names = policy or DEFAULT_POLICY, _policy_options(policy_option), None
    options = ClassifyArchiveOptions(
        policy,
        by,
        top,
        threshold,
        _filters(path_glob, tag, said),
        policy_options,
        strict or None,
        prompt_template,
        probe=probe,
        label_names=label_names,
    )
    if ray is not None or shards is not None:
        _classify_on_cluster(settings, labels, options, ray, shards, out_path, json_out)
        return
    with _reader(settings, server, api_key) as reader, _policy_option_errors():
        header, rows = reader.iter_classify(labels or [], options=options)
        rows = _progress_rows(rows, _show_progress(json_out))
        if out_path is not None:
            _write_classified(out_path, header, rows, getattr(reader, "store", None), by, policy, json_out)
            return
        header.rows = list(rows)
    if json_out:
        _emit_json(header)
        return
    _print_rows(header.labels, header.texts, header.rows, policy)


def _write_classified(out_path, header, rows, store, by, policy, json_out) -> None:
    """`classify --out`: the rows written to a file, with each tagging model's best label and score and the
    transcript per row."""
    from search.core.transcript_column import export_columns
    from search.core.writers import write_rows

    # each tagging model's best label and score, and what is said, per row (read from the index, not a server)
    rows, extra = export_columns(store, rows, by)
    count = write_rows(out_path, header, rows, extra)
    if json_out:
        _emit_json(
            {
                "labels": header.labels,
                "texts": header.texts,
                "policy": policy,
                "rows_written": count,
                "out": str(out_path),
            }
        )
    else:
        out.print(f"wrote {count} rows to {out_path}")


def _classify_on_cluster(settings, labels, options: ClassifyArchiveOptions, ray, shards, out_path, json_out) -> None:
    """`classify --ray`: score exported Parquet parts on the cluster, results as Parquet parts in --out DIR."""
    from search.cluster.classify import classify_on_cluster

    if out_path is None:
        raise BadInput("classify --ray writes Parquet parts: give --out DIR")
    if options.filters is not None and not options.filters.is_empty():
        raise BadInput("--path-glob, --tag and --said are not available with --ray; filter the Parquet results instead")
    if options.prompt_template is not None:
        raise BadInput("--prompt-template is not supported with --ray yet: give the prompts themselves with --labels")
    with _policy_option_errors():
        doc = classify_on_cluster(
            ray or settings.ray,
            settings,
            labels,
            out_dir=out_path,
            shards=shards,
            index_dir=None if shards else settings.index,
            policy=options.policy,
            by=options.by,
            top=options.top,
            threshold=options.threshold,
            policy_options=options.policy_options,
            strict=options.strict,
            probe=options.probe,
        )
    if json_out:
        _emit_json(doc)
    else:
        out.print(
            f"wrote {doc['rows_written']} rows to {doc['parts']} Parquet parts in {out_path} "
            f"(scored on {', '.join(doc['scored_on']) or 'no node'})",
            markup=False,
            highlight=False,
        )


def _print_rows(labels, texts, rows, policy) -> None:
    out.print(f"[dim]policy {policy}; embedded: {' | '.join(t for group in texts for t in group)}[/dim]")
    table = Table(show_edge=False, pad_edge=False)
    for col in ("path", "start", "end", "label", *labels):
        table.add_column(col, justify="left" if col in ("path", "label") else "right")
    for row in rows:
        table.add_row(
            row.path,
            _fmt_time(row.start),
            _fmt_time(row.end),
            row.label or "-",
            *(f"{row.scores[n]:.4f}" for n in labels),
        )
    out.print(table)
