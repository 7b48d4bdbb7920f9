"""`soundsift classify-file`: one file classified alone (uploaded to the owning server, if any)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from indexer.errors import BadInput
from search.cli.app import (
    ApiKeyOpt,
    DeviceOpt,
    IndexOpt,
    JsonOpt,
    LabelSetOpt,
    ModelOpt,
    ServerOpt,
    _client,
    _emit_json,
    _fmt_time,
    _policy_option_errors,
    _policy_options,
    _settings,
    app,
    out,
)
from search.cli.client import RemoteIndex
from search.cli.querying import _labels_or_set, _print_rows
from search.core.requests import ClassifyFileOptions, FileClassifier


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
    client: FileClassifier | None = None if label_set is not None else _client(settings.index, server, api_key)
    if isinstance(client, RemoteIndex) and not server and settings.model:
        from search.sound_index import _model_source

        if client.stats()["model"]["id"] != _model_source(settings.model):
            client = None  # the owning server runs another model than the one asked for: classify here
    options = ClassifyFileOptions(
        policy, call.policy_options, threshold, prompt_template, start, duration, label_names=label_names
    )
    if client is None:
        from search.sound_index import LocalFiles

        client = LocalFiles(settings)
    with _policy_option_errors():
        result = client.classify_file(file, call.labels, options)
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
