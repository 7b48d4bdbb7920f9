"""`soundsift transcribe`: a speech-recognition pass over an existing index, run here as its owner or handed to the server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from indexer.errors import IndexLocked, IndexMissing
from indexer.settings import Settings
from search.cli.app import ApiKeyOpt, DeviceOpt, IndexOpt, JsonOpt, _emit_json, _settings, app, out


def transcribe_index(
    settings: Settings,
    model: str,
    language: str | None = None,
    retranscribe: bool = False,
    progress: bool | None = None,
):
    """Own the index (one owner, as for `soundsift tag`) and run the transcribe pass; no CLAP is loaded."""
    from indexer.ownership import IndexOwnership
    from indexer.store import DB_NAME, IndexStore
    from indexer.transcribe_pass import run_transcribe_pass
    from plugins.manager import default_plugins

    index_dir = Path(settings.index)
    if not (index_dir / DB_NAME).exists():
        raise IndexMissing(f"no index at {index_dir}: build one with `soundsift index PATH --index {index_dir}`")
    ownership = IndexOwnership(index_dir, role="transcribe")
    try:
        store = IndexStore.open(index_dir, None, create=False)
        try:
            return run_transcribe_pass(
                store,
                default_plugins(),
                settings,
                model,
                language=language,
                retranscribe=retranscribe,
                progress=progress,
            )
        finally:
            store.close()
    finally:
        ownership.release()


def hand_off_transcribe(
    index_dir: Path, locked: IndexLocked, body: dict, wait: bool, api_key: str | None = None
) -> tuple[str, dict]:
    """POST /jobs/transcribe to the server owning the index (re-raises ``locked`` when none does); follow it with ``wait``."""
    from search.cli.tagging import hand_off_job

    return hand_off_job("transcribe", index_dir, locked, body, wait, api_key)


def report_lines(doc: dict) -> list[str]:
    """The human-readable summary of a transcribe report document."""
    language = f", language {doc['language']}" if doc.get("language") else ""
    lines = [
        f"transcribed {doc['windows_transcribed']} windows in {doc['files_transcribed']} files with {doc['model']} "
        f"(alias {doc['alias']}, revision {doc['revision']}{language}) [{doc.get('windows_per_s', 0):.2f} windows/s]; "
        f"already transcribed {doc['windows_already']}, without speech {doc['windows_without_speech']}, "
        f"failed files {doc['files_failed']}"
        + ("; earlier transcripts of this model dropped (--retranscribe)" if doc.get("retranscribed") else "")
    ]
    lines += [f"  failed: {e['path']}: {e['error']}" for e in doc.get("errors", [])]
    return lines


def _print(doc: dict) -> None:
    for line in report_lines(doc):
        out.print(line, markup=False, highlight=False)
    if doc.get("note"):
        sys.stderr.write(f"note: {doc['note']}\n")


@app.command()
def transcribe(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="speech-recognition checkpoint (Whisper, wav2vec2/HuBERT CTC): Hugging Face id, local directory, "
            "alias=id, or the name of a plugin's transcriber",
        ),
    ],
    index: IndexOpt = None,
    language: Annotated[
        Optional[str], typer.Option("--language", help="the language spoken, e.g. zh or en (Whisper is asked for it)")
    ] = None,
    alias: Annotated[
        Optional[str], typer.Option("--alias", help="short name for the model (default: the id's last part)")
    ] = None,
    retranscribe: Annotated[
        bool,
        typer.Option("--retranscribe", help="drop the model's stored transcripts and transcribe every window again"),
    ] = False,
    device: DeviceOpt = None,
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
    """Transcribe the windows of an index with a speech-recognition model (only windows it has not transcribed yet)."""
    from search.cli.tagging import model_ref

    settings = _settings(index, None, device, batch_size=batch_size, decode_workers=workers)
    ref = model_ref(model, alias)
    try:
        doc = transcribe_index(settings, ref, language=language, retranscribe=retranscribe).document()
    except IndexLocked as locked:  # a running server owns it: the job goes to the server
        body = {"model": ref, "language": language, "retranscribe": retranscribe}
        url, job = hand_off_transcribe(settings.index, locked, body, wait, api_key)
        if json_out:
            _emit_json({"handed_off": True, "server": url, "job": job})
        elif not wait:
            out.print(
                f"job {job['id']} queued on {url}; follow it with `curl {url}/jobs/{job['id']}`",
                markup=False,
                highlight=False,
            )
        elif job.get("report"):
            _print(job["report"])
        return
    if json_out:
        _emit_json(doc)
        if doc.get("note"):
            sys.stderr.write(f"note: {doc['note']}\n")
        return
    _print(doc)
