"""Information commands: stats, plugins, doctor (no model is loaded unless asked)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.errors import IndexLocked
from search.cli.app import (
    ApiKeyOpt,
    DeviceOpt,
    IndexOpt,
    JsonOpt,
    ModelOpt,
    ServerOpt,
    _client,
    _emit_json,
    _settings,
    app,
    err,
    out,
)


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
    for t in doc.get("transcripts", []):
        out.print(
            f"transcripts: {t['alias']} = {t['model']}@{t['revision']}: {t['windows_transcribed']} windows, "
            f"{t['windows_with_speech']} with speech" + (f", language {t['language']}" if t.get("language") else ""),
            markup=False,
            highlight=False,
        )


def _configured_models(tagger: str) -> list:
    """The models ``[plugin.<tagger>] models`` names in the settings (not loaded)."""
    from plugins.builtin.tag_classifier import model_entries

    return model_entries({"classifier.models": (_settings().plugin.get(tagger) or {}).get("models")})


@app.command()
def plugins(json_out: JsonOpt = False):
    """Plugins, the hooks each implements, decoders, policies, taggers, transcribers and any that failed to load."""
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
        "transcribers": [
            {
                "name": t.name,
                "description": t.description,
                "models": (_settings().plugin.get(t.name) or {}).get("models") or [],
            }
            for t in host.transcribers.values()
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
    out.print("transcribers: " + ", ".join(t["name"] for t in doc["transcribers"]))
    for f in doc["failed"]:
        err.print(
            f"failed to load {f['name']}: {f['error']}", style="red", markup=False, highlight=False, soft_wrap=True
        )


@app.command()
def doctor(
    model: ModelOpt = None,
    device: DeviceOpt = None,
    model_check: Annotated[
        bool, typer.Option("--model-check", help="also load torch and the model (seconds, not instant)")
    ] = False,
    export: Annotated[
        bool,
        typer.Option("--export", help="write the model's ONNX text tower now (search and classify then need no torch)"),
    ] = False,
):
    """Check the environment: versions, model weights present, plugins; --model-check also loads the model and device;
    --export writes the ONNX text tower of --model (or the default model) unless a sound one is there."""
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
    if export:
        from search.sound_index import write_model_exports

        text, audio = write_model_exports(settings)
        out.print(f"text tower (ONNX): {text}", markup=False, highlight=False)
        out.print(f"audio tower (ONNX): {audio}", markup=False, highlight=False)
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
