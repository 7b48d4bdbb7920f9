"""Indexing commands: index (here, or handed to the server that owns the index), check, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from indexer.errors import BadInput, IndexLocked, SoundsiftError
from search.cli.app import (
    ApiKeyOpt,
    DeviceOpt,
    IndexOpt,
    JsonOpt,
    ModelOpt,
    RayOpt,
    ServerOpt,
    _client,
    _emit_json,
    _settings,
    _show_progress,
    app,
    err,
    out,
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
    follow: Annotated[
        bool, typer.Option("--follow", help="then keep watching the paths: index files as they land (Ctrl-C stops)")
    ] = False,
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
        from search.cli.client import serving_owner

        if (verify_content or allow_empty_root) and serving_owner(settings.index):
            raise BadInput(
                "--verify-content and --allow-empty-root cannot be handed to the server that owns "
                f"{settings.index}; run them when it is stopped"
            ) from None
        _hand_off_index(settings.index, paths, locked, retry_failed, wait, json_out, api_key)
        return
    from search.core.delivery import deliverer_for

    with sx:
        deliverer = deliverer_for(sx).start()  # alerts go out beside indexing, never in its way
        report = sx.index(
            [str(p) for p in paths],
            retry_failed=retry_failed,
            verify_content=verify_content,
            allow_empty_root=allow_empty_root,
            progress=_show_progress(json_out),
        )
        if follow:
            from search.cli.follow import follow_index

            _print_index_report(report, json_out)
            follow_index(sx, paths, deliverer, json_out)
        undelivered = deliverer.finish(settings.delivery_drain_s)  # bounded: what is left goes out next time
    if undelivered > 0:
        err.print(f"{undelivered} alert deliveries still pending (see `soundsift watch status`)", markup=False)
    if not follow:
        _print_index_report(report, json_out)


def _print_index_report(report, json_out: bool) -> None:
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


def _hand_off_index(
    index_dir: Path, paths: list[Path], locked, retry_failed: bool, wait: bool, json_out: bool, api_key: str | None
) -> None:
    """Submit the job to the server owning the index (POST /jobs/index) and say how to follow it, or follow it."""
    from search.cli.handoff import follow, submit_to_owner

    url, job = submit_to_owner(index_dir, paths, locked, retry_failed, api_key)
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
    job = follow(url, job["id"], show_progress=not json_out, api_key=api_key)
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
