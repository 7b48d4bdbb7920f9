"""`soundsift transcribe`: a speech-recognition pass over an existing index, run here as its owner or handed to the server."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from indexer.settings import Settings
from search.cli.app import ApiKeyOpt, DeviceOpt, IndexOpt, JsonOpt, _settings, app


def transcribe_index(
    settings: Settings,
    model: str,
    language: str | None = None,
    retranscribe: bool = False,
    progress: bool | None = None,
):
    """Own the index and run the transcribe pass (no CLAP is loaded)."""
    from indexer.transcribe_pass import run_transcribe_pass
    from plugins.manager import default_plugins
    from search.cli.tagging import run_as_owner

    return run_as_owner(
        settings,
        "transcribe",
        lambda store: run_transcribe_pass(
            store,
            default_plugins(),
            settings,
            model,
            language=language,
            retranscribe=retranscribe,
            progress=progress,
        ),
    )


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
    from search.cli.tagging import model_ref, run_here_or_hand_off

    settings = _settings(index, None, device, batch_size=batch_size, decode_workers=workers)
    ref = model_ref(model, alias)
    run_here_or_hand_off(
        "transcribe",
        settings,
        lambda: transcribe_index(settings, ref, language=language, retranscribe=retranscribe),
        {"model": ref, "language": language, "retranscribe": retranscribe},
        report_lines,
        wait=wait,
        json_out=json_out,
        api_key=api_key,
    )
