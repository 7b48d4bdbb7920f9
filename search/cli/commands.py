"""The core commands: index, check, search, classify, export, classify-file, stats, plugins, tag, doctor, serve, demo."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from indexer.errors import BadInput, IndexLocked, SoundsiftError
from search.cli.app import (
    ApiKeyOpt,
    DeviceOpt,
    IndexOpt,
    JsonOpt,
    ModelOpt,
    RayOpt,
    ServerOpt,
    TagOpt,
    _client,
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
    err,
    out,
)
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


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="files or directories to index (recursively)")],
    index: IndexOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    window: Annotated[Optional[float], typer.Option("--window", help="window length, seconds")] = None,
    hop: Annotated[Optional[float], typer.Option("--hop", help="hop between windows, seconds")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    workers: Annotated[
        Optional[int], typer.Option("--workers", help="decode worker processes (default: one per core)")
    ] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="decode files that failed before again")] = False,
    verify_content: Annotated[
        bool, typer.Option("--verify-content", help="hash every file, catching changes that kept size and mtime")
    ] = False,
    allow_empty_root: Annotated[
        bool, typer.Option("--allow-empty-root", help="an empty root really is empty: drop its files from the index")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="when a server owns the index: follow the job it runs until done")
    ] = False,
    ray: RayOpt = None,
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
):
    """Index audio files: decode, cut into windows, embed with CLAP, store in DuckDB + FAISS (only what changed)."""
    from search.sound_index import SoundIndex

    missing = [str(p) for p in paths if not p.exists()]
    if missing:  # before loading a model: a typo should cost no time
        raise BadInput(
            f"no such file or directory: {', '.join(missing)} (an archive root that is not mounted? "
            "the index was not touched)"
        )
    settings = _settings(
        index, model, device, window_s=window, hop_s=hop, batch_size=batch_size, decode_workers=workers, ray=ray
    )
    if settings.ray:
        from indexer.ray_pipeline import require_ray

        require_ray()  # before loading a model
    try:
        sx = SoundIndex.open(settings.index, settings=settings, create=True)
    except IndexLocked as locked:  # a running server owns it: the job goes to the server
        from search.cli.handoff import owner_url

        if api_key:
            os.environ["SOUNDSIFT_API_KEY"] = api_key  # read by the handoff's requests

        if (verify_content or allow_empty_root) and owner_url(settings.index):
            raise BadInput(
                "--verify-content and --allow-empty-root cannot be handed to the server that owns "
                f"{settings.index}; run them when it is stopped"
            ) from None
        _hand_off_index(settings.index, paths, locked, retry_failed, wait, json_out)
        return
    with sx:
        report = sx.index(
            [str(p) for p in paths],
            retry_failed=retry_failed,
            verify_content=verify_content,
            allow_empty_root=allow_empty_root,
            progress=_show_progress(json_out),
        )
    doc = report.document()
    if json_out:
        _emit_json(doc)
        return
    out.print(
        f"indexed {report.files_indexed} files ({report.windows} windows) in {report.timings['total_s']:.1f} s "
        f"[{report.windows_per_s:.2f} windows/s]; unchanged {report.files_unchanged}, failed {report.files_failed}, "
        f"skipped {report.files_skipped}"
    )
    out.print(
        f"added {report.files_added}, updated {report.files_updated}, removed {report.files_removed}, "
        f"renamed {report.files_renamed}, reused {report.files_reused} (copied, not embedded); "
        f"windows removed {report.windows_removed}"
    )
    for e in report.errors:
        out.print(f"  failed: {e.path}: {e.error}", markup=False, highlight=False)
    for w in report.warnings:
        out.print(f"  indexed with a note: {w.path}: {w.warning}", markup=False, highlight=False)


@app.command()
def check(
    index: IndexOpt = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="fix what can be fixed from DuckDB (FAISS, bad rows, vanished files)")
    ] = False,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
):
    """Audit an index: FAISS ids vs window rows, non-finite vectors, files gone from disk; exit 1 on a problem."""
    from indexer.store import DB_NAME

    settings = _settings(index)
    client = _client(settings.index, server, api_key)
    if client is not None:
        if repair:
            raise BadInput(
                f"the server at {client.url} owns the index: stop it to run `soundsift check --repair` "
                "(a check without --repair goes through it)"
            )
        doc = client.check()
    else:
        if not (settings.index / DB_NAME).exists():
            from indexer.errors import IndexMissing

            raise IndexMissing(f"no index at {settings.index}")
        doc = _check_locally(settings.index, repair)
    if json_out:
        _emit_json(doc)
    else:
        out.print(
            f"commit {doc['commit']}: {doc['windows']} windows, FAISS {doc['faiss_file']} with {doc['faiss_vectors']} vectors",
            markup=False,
            highlight=False,
        )
        for line in doc["problems"]:
            out.print(f"problem: {line}", markup=False, highlight=False)
        for line in doc["warnings"]:
            out.print(f"warning: {line}", markup=False, highlight=False)
        if repair:
            out.print(f"repaired: {json.dumps(doc['repaired'])}", markup=False, highlight=False)
        out.print("ok" if doc["ok"] else "NOT consistent: run `soundsift check --repair`")
    if not doc["ok"]:
        sys.exit(1)


def _check_locally(index_dir: Path, repair: bool) -> dict:
    from indexer.audit import audit
    from indexer.audit import repair as repair_index
    from indexer.ownership import IndexOwnership
    from indexer.store import IndexStore

    ownership = IndexOwnership(index_dir, role="check")
    try:
        store = IndexStore.open(index_dir, None, create=False)
        try:
            return repair_index(store) if repair else audit(store)
        finally:
            store.close()
    finally:
        ownership.release()


def _hand_off_index(index_dir: Path, paths: list[Path], locked, retry_failed: bool, wait: bool, json_out: bool) -> None:
    """Submit the job to the server owning the index (POST /jobs/index) and say how to follow it, or follow it."""
    from search.cli.handoff import follow, submit_to_owner

    url, job = submit_to_owner(index_dir, paths, locked, retry_failed)
    err.print(
        f"index {index_dir} is owned by the server at {url}; it runs the job: {job['id']}",
        markup=False,
        highlight=False,
    )
    if not wait:
        if json_out:
            _emit_json({"handed_off": True, "server": url, "job": job})
        else:
            out.print(
                f"job {job['id']} queued on {url}; follow it with `curl {url}/jobs/{job['id']}` "
                f"(or pass --wait to follow the job until it ends)",
                markup=False,
                highlight=False,
            )
        return
    job = follow(url, job["id"], show_progress=not json_out)
    if json_out:
        _emit_json({"handed_off": True, "server": url, "job": job})
    elif job.get("report"):
        r = job["report"]
        out.print(
            f"indexed {r['files_indexed']} files ({r['windows']} windows) on the server; unchanged {r['files_unchanged']}, "
            f"failed {r['files_failed']}, skipped {r['files_skipped']}",
            markup=False,
            highlight=False,
        )
    if job["status"] != "completed":
        raise SoundsiftError(
            f"job {job['id']} on {url} {job['status']}: {job.get('error') or 'see GET /jobs/' + job['id']}"
        )


@app.command()
def search(
    queries: Annotated[
        Optional[list[str]], typer.Argument(help="one or more descriptions, e.g. 'glass breaking' 轴承异响")
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
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
):
    """Top-k windows for each query, by example (--like) or by a probe's class (through the owning server, when one does)."""
    if k < 1:
        raise BadInput("k must be at least 1")
    queries = list(queries or [])
    example = like_query(like, unlike, like_file, include_self, text_weight, like_weight, unlike_weight, probe, queries)
    settings = _settings(index, model, device)
    filters = _filters(path_glob, tag)
    client, sx = _reader(settings, server, api_key)
    if client is not None:
        response = client.search(
            queries,
            k=k,
            filters=filters.model_dump(mode="json", exclude_defaults=True),
            strict=strict,
            prompt_template=prompt_template,
            localize=localize,
            extra=remote_like(example, probe, like_file),
        )
    else:
        with sx:
            response = sx.search(
                queries,
                k=k,
                filters=filters,
                strict=strict or None,
                prompt_template=prompt_template,
                localize=localize,
                like=embed_like_files(sx, example, like_file),
                probe=probe,
            )
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
        out.print(f"[bold]{result.query}[/bold]  [dim]embedded: {' | '.join(result.texts)}[/dim]")
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
        out.print(table)


LabelSetOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--label-set",
        help="a TOML label set (`soundsift eval --save-label-set`): its labels, texts, template, policy, options, "
        "thresholds",
    ),
]


def _labels_or_set(labels, label_set, policy, policy_options, prompt_template):
    """--labels, or --label-set FILE applied (the options given on the command line win over the set's)."""
    from search.core.label_set import LabelSetCall, apply_label_set, load_label_set

    if (labels is None) == (label_set is None):
        raise BadInput('give --labels "a, b" or --label-set FILE (one of them)')
    if label_set is not None:
        return apply_label_set(load_label_set(label_set), policy, policy_options, prompt_template)
    return LabelSetCall(labels, None, policy or "softmax", policy_options, prompt_template)


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
    settings = _settings(index, model, device)
    labels, policy, policy_options, prompt_template, label_names = _what_scores(
        labels, label_set, probe, policy, policy_option, prompt_template
    )
    if (ray is not None or shards is not None) and label_names is not None:
        raise BadInput("--label-set is not supported with --ray yet: give the labels with --labels")
    if ray is not None or shards is not None:
        _classify_on_cluster(
            settings,
            labels,
            ray,
            shards,
            out_path,
            policy,
            by,
            top,
            threshold,
            policy_options,
            path_glob or tag,
            strict,
            json_out,
            probe,
        )
        return
    filters = _filters(path_glob, tag)
    client, sx = _reader(settings, server, api_key)
    with contextlib.ExitStack() as stack, _policy_option_errors():
        if client is not None:
            header, rows = client.iter_classify(
                labels or "",
                policy=policy,
                by=by,
                top=top,
                threshold=threshold,
                filters=filters.model_dump(mode="json", exclude_defaults=True),
                strict=strict,
                policy_options=policy_options,
                prompt_template=prompt_template,
                extra={"probe": probe} if probe else None,
                label_names=label_names,
            )
        else:
            stack.enter_context(sx)
            header, rows = sx.iter_classify(
                labels or [],
                policy=policy,
                by=by,
                top=top,
                threshold=threshold,
                filters=filters,
                strict=strict or None,
                policy_options=policy_options,
                prompt_template=prompt_template,
                probe=probe,
                label_names=label_names,
            )
        rows = _progress_rows(rows, _show_progress(json_out))
        if out_path is not None:
            _write_classified(out_path, header, rows, sx, by, policy, json_out)
            return
        header.rows = list(rows)
    if json_out:
        _emit_json(header)
        return
    _print_rows(header.labels, header.texts, header.rows, policy)


def _what_scores(labels, label_set, probe, policy, policy_option, prompt_template):
    """(labels, policy, policy options, prompt template, label names) of `classify`: from --labels or
    --label-set, or for a --probe (its own classes; softmax unless --policy says otherwise)."""
    if probe is None:
        call = _labels_or_set(labels, label_set, policy, _policy_options(policy_option), prompt_template)
        return call.labels, call.policy, call.policy_options, call.prompt_template, call.label_names
    if labels is not None or label_set is not None:
        raise BadInput("--probe scores with the probe's own classes: give it without --labels or --label-set")
    return labels, policy or "softmax", _policy_options(policy_option), prompt_template, None


def _write_classified(out_path, header, rows, sx, by, policy, json_out) -> None:
    """`classify --out`: the rows written to a file, with each tagging model's best label and score per row."""
    from search.core.tag_columns import tag_column_names, with_tag_columns
    from search.core.writers import write_rows

    # each tagging model's best label and score per row (read from the index: not through a server)
    tag_columns = tag_column_names(sx.store) if sx is not None else []
    if tag_columns:
        rows = with_tag_columns(sx.store, rows, by, tag_columns)  # (row, columns) pairs
    count = write_rows(out_path, header, rows, [c for _, *pair in tag_columns for c in pair])
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


def _classify_on_cluster(
    settings,
    labels,
    ray,
    shards,
    out_path,
    policy,
    by,
    top,
    threshold,
    policy_options,
    path_glob,
    strict,
    json_out,
    probe=None,
) -> None:
    """`classify --ray`: score exported Parquet parts on the cluster, results as Parquet parts in --out DIR."""
    from search.cluster.classify import classify_on_cluster

    if out_path is None:
        raise BadInput("classify --ray writes Parquet parts: give --out DIR")
    if path_glob:
        raise BadInput("--path-glob and --tag are not available with --ray; filter the Parquet results instead")
    with _policy_option_errors():
        doc = classify_on_cluster(
            ray or settings.ray,
            settings,
            labels,
            out_dir=out_path,
            shards=shards,
            index_dir=None if shards else settings.index,
            policy=policy,
            by=by,
            top=top,
            threshold=threshold,
            policy_options=policy_options,
            strict=strict or None,
            probe=probe,
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


@app.command()
def export(
    index_dir: Annotated[Path, typer.Argument(help="the index directory")],
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the Parquet parts")],
    rows_per_part: Annotated[
        int, typer.Option("--rows-per-part", help="windows per Parquet part (whole files per part)")
    ] = 1_000_000,
    json_out: JsonOpt = False,
):
    """Export windows (ids, path, start, end, tags) and vectors as partitioned Parquet, for `classify --ray`."""
    from indexer.export import export_index

    meta = export_index(index_dir, out_dir, rows_per_part)
    if json_out:
        _emit_json(meta)
    else:
        out.print(
            f"exported {meta['windows']} windows of {meta['files']} files to {len(meta['parts'])} Parquet parts "
            f"in {out_dir}",
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


@app.command("classify-file")
def classify_file_cmd(
    file: Annotated[Path, typer.Argument(help="an audio file")],
    labels: Annotated[Optional[str], typer.Option("--labels")] = None,
    label_set: LabelSetOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    policy: Annotated[Optional[str], typer.Option("--policy", help="scoring policy (default softmax)")] = None,
    policy_option: Annotated[
        Optional[list[str]], typer.Option("--policy-option", help="policy option key=value, repeatable")
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", help="fire a label only at this score or above")
    ] = None,
    prompt_template: Annotated[Optional[str], typer.Option("--prompt-template", help="e.g. 'the sound of {}'")] = None,
    start: Annotated[Optional[float], typer.Option("--start", help="classify from here, seconds")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="classify this many seconds")] = None,
    json_out: JsonOpt = False,
    index: IndexOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
):
    """Classify one file, window by window and as a whole; no index needed (uploaded to the owning server, if any)."""
    from indexer.errors import UnknownPolicy
    from plugins.manager import default_plugins
    from search.core.options import check_prompt_template, check_segment
    from search.core.prompts import parse_labels

    call = _labels_or_set(labels, label_set, policy, _policy_options(policy_option), prompt_template)
    policy, prompt_template, label_names = call.policy, call.prompt_template, call.label_names
    parse_labels(call.labels)  # fail on a bad label list, policy or option before loading a model (or asking a server)
    policies = default_plugins().policies
    if policy not in policies:
        raise UnknownPolicy(f"no scoring policy named {policy!r}; registered: {', '.join(sorted(policies))}")
    check_segment(start, duration)
    if prompt_template is not None:
        check_prompt_template(prompt_template)
    if not file.is_file():
        raise BadInput(f"no such file: {file}")
    settings = _settings(index, model, device)
    options = call.policy_options
    client = None if label_set is not None else _client(settings.index, server, api_key)  # a set: classified here
    if client is not None and not server and settings.model:
        from search.sound_index import _model_source

        if client.stats()["model"]["id"] != _model_source(settings.model):
            client = None  # the owning server runs another model than the one asked for: classify here
    if client is not None:
        result = client.classify_file(
            file,
            labels,
            policy=policy,
            policy_options=options,
            threshold=threshold,
            prompt_template=prompt_template,
            start=start,
            duration=duration,
        )
    else:
        from search.sound_index import classify_file, load_encoder

        with _policy_option_errors():
            result = classify_file(
                file,
                call.labels,
                load_encoder(settings),
                settings,
                policy=policy,
                policy_options=options,
                threshold=threshold,
                prompt_template=prompt_template,
                start=start,
                duration=duration,
                label_names=label_names,
            )
    if json_out:
        _emit_json(result)
        return
    _print_rows(result.labels, result.texts, result.windows, policy)
    best = result.file
    out.print(
        f"file: [bold]{best.label}[/bold] "
        + ", ".join(f"{k} {v:.4f}" for k, v in best.scores.items())
        + (
            f" (peak {_fmt_time(best.peak_start)}-{_fmt_time(best.peak_end)})"
            if best.peak_start is not None and best.peak_end is not None
            else ""
        )
    )
    for warning in result.warnings:
        out.print(f"[yellow]warning: {warning}[/yellow]")


@app.command()
def stats(
    index: IndexOpt = None,
    model: ModelOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
):
    """Files (indexed, failed, skipped), windows, hours of audio, model and settings (no model is loaded)."""
    from indexer.index_stats import index_stats

    settings = _settings(index)  # counts only: --model is accepted, not needed
    client = _client(settings.index, server, api_key)
    if client is None:
        try:
            doc = index_stats(settings.index)
        except IndexLocked:
            client = _client(settings.index, None, api_key)  # a server took the index meanwhile: ask it
            if client is None:
                raise
    if client is not None:
        doc = client.stats()
    if json_out:
        _emit_json(doc)
        return
    f = doc["files"]
    out.print(f"files: {f['indexed']} indexed, {f['failed']} failed, {f['skipped']} skipped (last run)")
    out.print(f"windows: {doc['windows']} ({doc['hours']:.3f} h of audio)")
    out.print(f"model: {doc['model']['id']}@{doc['model']['revision']} ({doc['model']['embedding_dim']}-d)")
    out.print(f"settings: {json.dumps(doc['settings'])}", markup=False, highlight=False)
    for t in doc.get("tags", []):
        out.print(
            f"tags: {t['alias']} = {t['model']}@{t['revision']}: {t['windows_tagged']} windows, {t['labels']} labels, "
            f"top_k {t['top_k']}, {t['function_to_apply']}",
            markup=False,
            highlight=False,
        )


def _configured_models(tagger: str) -> list:
    """The models ``[plugin.<tagger>] models`` names in the settings (not loaded)."""
    from plugins.builtin.tag_classifier import model_entries

    return model_entries({"classifier.models": (_settings().plugin.get(tagger) or {}).get("models")})


@app.command()
def plugins(json_out: JsonOpt = False):
    """Plugins, the hooks each implements, decoders, policies, taggers and any that failed to load."""
    from plugins.manager import default_plugins

    host = default_plugins()
    doc: dict[str, Any] = {
        "plugins": [{"name": n, "hooks": host.hooks_of(n)} for n in host.plugin_names()],
        "decoders": [
            {
                "name": d.name,
                "extensions": list(d.extensions),
                "magic": [m.decode("latin-1") for m in d.magic],
                "generic": d.generic,
            }
            for d in host.decoders.values()
        ],
        "policies": [
            {"name": p.name, "description": p.description, "options": dict(p.option_help)}
            for p in host.policies.values()
        ],
        "taggers": [
            {
                "name": t.name,
                "description": t.description,
                **({"models": _configured_models(t.name)} if t.classifiers is not None else {}),
            }
            for t in host.taggers.values()
        ],
        "failed": [{"name": f.name, "error": f.error} for f in host.failures],
    }
    if json_out:
        _emit_json(doc)
        return
    for p in doc["plugins"]:
        out.print(f"{p['name']}: {', '.join(p['hooks'])}")
    out.print(
        "decoders: " + ", ".join(f"{d['name']} ({', '.join(d['extensions']) or 'magic'})" for d in doc["decoders"])
    )
    out.print("policies: " + ", ".join(p["name"] for p in doc["policies"]))
    out.print(
        "taggers: "
        + ", ".join(
            t["name"] + (f" (models: {', '.join(map(str, t['models'])) or 'none configured'})" if "models" in t else "")
            for t in doc["taggers"]
        )
    )
    for f in doc["failed"]:
        err.print(
            f"failed to load {f['name']}: {f['error']}", style="red", markup=False, highlight=False, soft_wrap=True
        )


@app.command()
def tag(
    model: Annotated[
        str,
        typer.Option("--model", help="audio-classification checkpoint: Hugging Face id, local directory, or alias=id"),
    ],
    index: IndexOpt = None,
    device: DeviceOpt = None,
    top_k: Annotated[
        Optional[int], typer.Option("--top-k", help="labels kept per window (default 5; 0 = every label)")
    ] = None,
    function_to_apply: Annotated[
        Optional[str], typer.Option("--function-to-apply", help="softmax, sigmoid or none (default: the model's own)")
    ] = None,
    alias: Annotated[
        Optional[str], typer.Option("--alias", help="short name for --tag filters (default: the id's last part)")
    ] = None,
    retag: Annotated[
        bool, typer.Option("--retag", help="the model's labels or settings changed: drop its stored tags and tag again")
    ] = False,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    workers: Annotated[
        Optional[int], typer.Option("--workers", help="decode worker processes (default: one per core)")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="when a server owns the index: follow the job it runs until done")
    ] = False,
    json_out: JsonOpt = False,
):
    """Tag the windows of an index with a fixed-label audio classifier (only windows it has not tagged yet)."""
    from search.cli.tagging import hand_off_tag, model_ref, report_lines, tag_index

    settings = _settings(index, None, device, batch_size=batch_size, decode_workers=workers)
    ref = model_ref(model, alias)
    try:
        doc = tag_index(settings, ref, top_k=top_k, function_to_apply=function_to_apply, retag=retag).document()
    except IndexLocked as locked:  # a running server owns it: the job goes to the server
        url, job = hand_off_tag(
            settings.index,
            locked,
            {"model": ref, "top_k": top_k, "function_to_apply": function_to_apply, "retag": retag},
            wait,
        )
        if json_out:
            _emit_json({"handed_off": True, "server": url, "job": job})
        elif not wait:
            out.print(
                f"job {job['id']} queued on {url}; follow it with `curl {url}/jobs/{job['id']}`",
                markup=False,
                highlight=False,
            )
        elif job.get("report"):
            for line in report_lines(job["report"]):
                out.print(line, markup=False, highlight=False)
        return
    if json_out:
        _emit_json(doc)
        return
    for line in report_lines(doc):
        out.print(line, markup=False, highlight=False)


@app.command()
def doctor(
    model: ModelOpt = None,
    device: DeviceOpt = None,
    model_check: Annotated[
        bool, typer.Option("--model-check", help="also load torch and the model (seconds, not instant)")
    ] = False,
):
    """Check the environment: versions, model weights present, plugins; --model-check also loads the model and device."""
    from importlib.metadata import PackageNotFoundError, version

    from indexer.errors import ModelNotFound
    from indexer.settings import DEFAULT_MODEL

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    settings = _settings(None, model, device)
    out.print(f"python {sys.version.split()[0]}, torch {installed('torch')}, transformers {installed('transformers')}")
    if model_check:
        import torch

        from search.sound_index import load_encoder

        out.print(f"cuda available: {torch.cuda.is_available()}")
        try:
            encoder = load_encoder(settings)
            out.print(f"model: {encoder.identity.describe()} on {encoder.device}")
        except ModelNotFound as exc:
            out.print(f"[yellow]model: {exc}[/yellow]")
    else:
        out.print(
            f"model: {_weights_present(settings.model or DEFAULT_MODEL)} (not loaded; `soundsift doctor --model-check` loads it)",
            markup=False,
            highlight=False,
        )
    from plugins.manager import default_plugins

    failures = default_plugins().failures
    out.print(f"plugins: {len(default_plugins().plugin_names())} loaded, {len(failures)} failed")


def _weights_present(model: str) -> str:
    """Where the model's weights are, found without loading anything."""
    target = Path(model).expanduser()
    if target.is_dir():
        return f"{target} ({'config.json found' if (target / 'config.json').exists() else 'no config.json: not a checkpoint'})"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - a check that must not fail
        cached = None
    return f"{model} ({'in the Hugging Face cache' if isinstance(cached, str) else 'not in the Hugging Face cache'})"


@app.command()
def serve(
    index: IndexOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    host: Annotated[Optional[str], typer.Option("--host")] = None,
    port: Annotated[Optional[int], typer.Option("--port")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="SOUNDSIFT_API_KEY")] = None,
    reindex_every: Annotated[Optional[str], typer.Option("--reindex-every", help="e.g. 30m, 1h")] = None,
    reindex_path: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--reindex-path", help="what --reindex-every re-indexes (default: the roots already in the index)"
        ),
    ] = None,
    allow_root: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--allow-root", help="a directory API jobs may index besides the roots already in the index (repeatable)"
        ),
    ] = None,
    ray: RayOpt = None,
):
    """Serve the HTTP API and the web page (one process owns the index)."""
    from search.http.server import run_server

    settings = _settings(index, model, device, host=host, port=port, api_key=api_key, ray=ray)
    if allow_root:
        settings.allow_roots = [*settings.allow_roots, *(str(p.resolve()) for p in allow_root)]
    run_server(
        settings, reindex_every=reindex_every, reindex_paths=[str(p.resolve()) for p in reindex_path or []] or None
    )


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="where the demo archive and index go")] = Path("demo"),
    model: ModelOpt = None,
):
    """Generate a small archive, index it, run a few searches and a classification (what `make run` does)."""
    from search.demo import run_demo

    run_demo(directory, model)
