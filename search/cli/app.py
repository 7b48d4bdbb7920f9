"""What every `soundsift` command shares: the typer app, the consoles, the common options and small helpers."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from indexer.errors import BadInput, IndexLocked
from indexer.settings import Settings, load_settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Find sounds in audio archives by describing them in words."
)
# Without a terminal (pipes, CI) rich would wrap tables at 80 columns; paths need more.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="index directory (default ./.soundsift)")]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", help="Hugging Face id or local directory of a CLAP checkpoint")
]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]
ServerOpt = Annotated[
    Optional[str],
    typer.Option(
        "--server",
        envvar="SOUNDSIFT_SERVER",
        help="URL of a running `soundsift serve` to ask (default: the server that owns the index, when one does)",
    ),
]
ApiKeyOpt = Annotated[Optional[str], typer.Option("--api-key", envvar="SOUNDSIFT_API_KEY", help="the server's API key")]
RayOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ray",
        help="run on a Ray cluster: auto (this machine's cluster, else a local Ray; also `--ray` alone) or its address",
    ),
]
TagOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--tag",
        help="only windows with this tag, repeatable: MODEL:LABEL, MODEL:LABEL>=0.5 (>=, >, <=, <, =) "
        "for a classifier's label (alias or id prefix), NAME=VALUE for an acoustic tag (silence=false)",
    ),
]


SaidOpt = Annotated[
    Optional[str],
    typer.Option(
        "--said",
        help='only windows whose transcript says this: words, "phrases", prefix*, AND/OR/NOT '
        "(e.g. '退款 OR 投诉'); searched as typed, never translated",
    ),
]


def _filters(path_glob: str | None, tags: list[str] | None, said: str | None = None):
    """Filters from the --path-glob, --tag and --said options (their syntax checked before any model loads)."""
    from search.filters import Filters, parse_tag_filter

    for text in tags or []:
        parse_tag_filter(text)
    if said is not None:
        from search.core.said import parse_said

        parse_said(said)
    return Filters(path_glob=path_glob, **({"tags": list(tags)} if tags else {}), **({"said": said} if said else {}))


def _settings(index: Path | None = None, model: str | None = None, device: str | None = None, **more) -> Settings:
    return load_settings(index=index, model=model, device=device, **more)


def _emit_json(document) -> None:
    # search.sound_index.dumps, without importing the index's machinery for a document already made
    data = document.model_dump(mode="json") if hasattr(document, "model_dump") else document
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def _policy_options(items: list[str] | None) -> dict:
    """``--policy-option key=value`` pairs; each value is read as JSON when it parses (0.3, {"dog": 0.2}), else a string."""
    options: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(
                f"--policy-option takes key=value, e.g. threshold=0.3 or 'thresholds={{\"dog\": 0.2}}', not {item!r}"
            )
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw
    return options


@contextlib.contextmanager
def _policy_option_errors():
    """A bad policy option is the user's mistake: one line, no traceback."""
    from plugins.contract import PolicyOptionError

    try:
        yield
    except PolicyOptionError as exc:
        raise BadInput(f"{exc} (see `soundsift plugins` for each policy's options)") from None


def _client(index_dir: Path, server: str | None, api_key: str | None):
    """A client of the server that answers for this index (``--server``, else the server owning it), or None: work locally."""
    from search.cli.client import RemoteIndex, serving_owner

    url = server or serving_owner(index_dir)
    return RemoteIndex(url, api_key) if url else None


def _reader(settings: Settings, server: str | None, api_key: str | None):
    """The `IndexReader` that answers for the index: the server's client when a server does, else the index opened
    read-only here. Either is a context manager; a command makes its one call on it."""
    from search.sound_index import SoundIndex

    client = _client(settings.index, server, api_key)
    if client is not None:
        return client
    try:
        return SoundIndex.open(settings.index, settings=settings, read_only=True)
    except IndexLocked:
        client = _client(settings.index, None, api_key)  # a server took the index meanwhile: ask it
        if client is None:
            raise
        return client


def _progress_rows(rows, enabled: bool, what: str = "rows"):
    """``rows`` passed through, counted on a transient progress line on stderr when ``enabled`` (a terminal, no --json)."""
    if not enabled:
        yield from rows
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} " + what),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("scoring", total=None)
        for row in rows:
            bar.advance(task)
            yield row


def _show_progress(json_out: bool) -> bool:
    return not json_out and sys.stderr.isatty()


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:05.2f}"


LabelSetOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--label-set",
        help="a TOML label set (`soundsift eval --save-label-set`): its labels, texts, template, policy, options, "
        "thresholds",
    ),
]
