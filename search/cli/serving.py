"""Serving commands: tag (a classifier pass), serve (the HTTP API and page), demo (`make run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from search.cli.app import (
    ApiKeyOpt,
    DeviceOpt,
    IndexOpt,
    JsonOpt,
    ModelOpt,
    RayOpt,
    _settings,
    app,
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
    api_key: ApiKeyOpt = None,
):
    """Tag the windows of an index with a fixed-label audio classifier (only windows it has not tagged yet)."""
    from search.cli.tagging import model_ref, report_lines, run_here_or_hand_off, tag_index

    settings = _settings(index, None, device, batch_size=batch_size, decode_workers=workers)
    ref = model_ref(model, alias)
    run_here_or_hand_off(
        "tag",
        settings,
        lambda: tag_index(settings, ref, top_k=top_k, function_to_apply=function_to_apply, retag=retag),
        {"model": ref, "top_k": top_k, "function_to_apply": function_to_apply, "retag": retag},
        report_lines,
        wait=wait,
        json_out=json_out,
        api_key=api_key,
    )


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
    follow: Annotated[
        bool,
        typer.Option("--follow", help="index files as they land under --reindex-path (default: the index's roots)"),
    ] = False,
):
    """Serve the HTTP API and the web page (one process owns the index)."""
    from search.http.server import run_server

    settings = _settings(index, model, device, host=host, port=port, api_key=api_key, ray=ray)
    if allow_root:
        settings.allow_roots = [*settings.allow_roots, *(str(p.resolve()) for p in allow_root)]
    run_server(
        settings,
        reindex_every=reindex_every,
        reindex_paths=[str(p.resolve()) for p in reindex_path or []] or None,
        follow=follow,
    )


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="where the demo archive and index go")] = Path("demo"),
    model: ModelOpt = None,
):
    """Generate a small archive, index it, run a few searches and a classification (what `make run` does)."""
    from search.demo import run_demo

    run_demo(directory, model)
