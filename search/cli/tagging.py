"""Passes over an existing index (`soundsift tag`, `soundsift transcribe`): run here as its owner or handed to the server
that owns it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.errors import IndexLocked, IndexMissing, SoundsiftError
from indexer.settings import Settings
from indexer.tag_pass import TagReport, run_tag_pass


def model_ref(model: str, alias: str | None) -> str:
    """``--model`` with ``--alias`` folded in as ``alias=id`` (the form settings use); a local directory made absolute,
    so the index keys it the same from any working directory (and a server resolves it as the user meant)."""
    name, sep, rest = model.partition("=")
    if sep and not alias and not Path(model).expanduser().exists():
        alias, model = name, rest
    local = Path(model).expanduser()
    if local.is_dir():
        model = str(local.resolve())
    return f"{alias}={model}" if alias else model


def run_as_owner(settings: Settings, role: str, run_pass: Callable[[Any], Any]):
    """Own the index (one owner, as for `soundsift index`) and return ``run_pass(store)``; no CLAP is loaded."""
    from indexer.ownership import IndexOwnership
    from indexer.store import DB_NAME, IndexStore

    index_dir = Path(settings.index)
    if not (index_dir / DB_NAME).exists():
        raise IndexMissing(f"no index at {index_dir}: build one with `soundsift index PATH --index {index_dir}`")
    ownership = IndexOwnership(index_dir, role=role)
    try:
        store = IndexStore.open(index_dir, None, create=False)
        try:
            return run_pass(store)
        finally:
            store.close()
    finally:
        ownership.release()


def tag_index(
    settings: Settings,
    model: str,
    top_k: int | None = None,
    function_to_apply: str | None = None,
    retag: bool = False,
    progress: bool | None = None,
) -> TagReport:
    """Own the index and run the tag pass."""
    from plugins.manager import default_plugins

    return run_as_owner(
        settings,
        "tag",
        lambda store: run_tag_pass(
            store,
            default_plugins(),
            settings,
            model,
            top_k=top_k,
            function_to_apply=function_to_apply,
            retag=retag,
            progress=progress,
        ),
    )


def run_here_or_hand_off(
    kind: str,
    settings: Settings,
    run_here: Callable[[], Any],
    body: dict,
    report_lines: Callable[[dict], list[str]],
    *,
    wait: bool,
    json_out: bool,
    api_key: str | None,
) -> None:
    """A pass's command body: run it here as the index's owner, or, when a server owns the index, as its job ``kind``;
    print the report (``report_lines``) or its JSON document; a report's note goes to stderr either way."""
    from search.cli.app import _emit_json, out

    def print_report(doc: dict, as_json: bool = False) -> None:
        if as_json:
            _emit_json(doc)
        else:
            for line in report_lines(doc):
                out.print(line, markup=False, highlight=False)
        if doc.get("note"):
            sys.stderr.write(f"note: {doc['note']}\n")

    try:
        doc = run_here().document()
    except IndexLocked as locked:  # a running server owns it: the job goes to the server
        url, job = hand_off_job(kind, settings.index, locked, body, wait, api_key)
        if json_out:
            _emit_json({"handed_off": True, "server": url, "job": job})
        elif not wait:
            out.print(
                f"job {job['id']} queued on {url}; follow it with `curl {url}/jobs/{job['id']}`",
                markup=False,
                highlight=False,
            )
        elif job.get("report"):
            print_report(job["report"])
        return
    print_report(doc, as_json=json_out)


def hand_off_job(
    kind: str, index_dir: Path, locked: IndexLocked, body: dict, wait: bool, api_key: str | None = None
) -> tuple[str, dict]:
    """POST /jobs/``kind`` (tag, transcribe) to the server owning the index (re-raises ``locked`` when no server
    owns it); follow it with ``wait``."""
    from search.cli.client import RemoteIndex, serving_owner
    from search.cli.handoff import JOB_CALL_S, follow

    url = serving_owner(index_dir)
    if not url:
        raise locked
    job = RemoteIndex(url, api_key, timeout_s=JOB_CALL_S).submit_job(kind, body)
    if wait:
        job = follow(url, job["id"], show_progress=True, api_key=api_key)
        if job["status"] != "completed":
            raise SoundsiftError(
                f"job {job['id']} on {url} {job['status']}: {job.get('error') or 'see GET /jobs/' + job['id']}"
            )
    return url, job


def report_lines(doc: dict) -> list[str]:
    """The human-readable summary of a tag report document."""
    lines = [
        f"tagged {doc['windows_tagged']} windows in {doc['files_tagged']} files with {doc['model']} "
        f"(alias {doc['alias']}, revision {doc['revision']}, {doc['labels']} labels) "
        f"[{doc.get('windows_per_s', 0):.2f} windows/s]; already tagged {doc['windows_already']}, failed files {doc['files_failed']}"
        + ("; earlier tags of this model dropped (--retag)" if doc.get("retagged") else "")
    ]
    lines += [f"  failed: {e['path']}: {e['error']}" for e in doc.get("errors", [])]
    return lines
