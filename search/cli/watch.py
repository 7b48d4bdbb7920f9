"""`soundsift watch add|list|show|remove|test|status`: standing queries stored in the index, fired on new windows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from indexer.errors import BadInput
from search.cli.app import IndexOpt, JsonOpt, ModelOpt, _emit_json, _fmt_time, _policy_options, _settings, app, out

watch_app = typer.Typer(no_args_is_help=True, help="Standing queries: alerts when new audio matches.")
app.add_typer(watch_app, name="watch")

NameArg = Annotated[str, typer.Argument(help="the watch's name")]


def _open(index: Path | None, model: str | None = None, write: bool = False):
    from search.sound_index import SoundIndex

    settings = _settings(index, model)
    return SoundIndex.open(settings.index, settings=settings, read_only=not write)


@watch_app.command("add")
def add(
    name: NameArg,
    query: Annotated[Optional[str], typer.Option("--query", help="a description, as for `search`")] = None,
    min_score: Annotated[
        Optional[float], typer.Option("--min-score", help="with --query: cosine on search's scale (-1..1)")
    ] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help="comma-separated label set")] = None,
    label: Annotated[Optional[str], typer.Option("--label", help="with --labels: the label that fires")] = None,
    probe: Annotated[Optional[str], typer.Option("--probe", help="a stored probe's class, PROBE:CLASS")] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", help="with --labels/--probe: probability (0..1) that fires")
    ] = None,
    policy: Annotated[str, typer.Option("--policy", help="scoring policy of --labels")] = "softmax",
    policy_option: Annotated[
        Optional[list[str]], typer.Option("--policy-option", help="key=value for the policy, repeatable")
    ] = None,
    path_glob: Annotated[Optional[str], typer.Option("--path-glob", help="only files whose path matches")] = None,
    tag: Annotated[
        Optional[list[str]], typer.Option("--tag", help="only windows with this tag (search's syntax)")
    ] = None,
    webhook: Annotated[Optional[str], typer.Option("--webhook", help="POST each alert here (http/https)")] = None,
    secret: Annotated[
        Optional[str], typer.Option("--secret", help="sign webhook bodies: X-Soundsift-Signature: sha256=<HMAC>")
    ] = None,
    ndjson: Annotated[
        Optional[str], typer.Option("--ndjson", help="append each alert to this file, one JSON line")
    ] = None,
    exec_: Annotated[
        Optional[str], typer.Option("--exec", help="run this command with each alert's JSON on stdin")
    ] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    json_out: JsonOpt = False,
):
    """Add a watch; it fires on windows indexed from now on (`watch test --fire` for the ones already there)."""
    from search.core.watches import WatchSpec, add_watch, check_targets

    spec = WatchSpec(
        name=name,
        query=query,
        min_score=min_score,
        labels=labels,
        label=label,
        probe=probe,
        threshold=threshold,
        policy=policy,
        policy_options=_policy_options(policy_option),
        path_glob=path_glob,
        tags=list(tag or []),
        webhook=webhook,
        secret=secret,
        ndjson=ndjson,
        exec=exec_,
    )
    spec.kind()  # the user's mistakes before a model loads
    check_targets(spec)
    from search.core.watches import _filters

    _filters(spec)
    with _open(index, model, write=True) as sx:
        record = add_watch(sx, spec)
    if json_out:
        _emit_json({"name": record.name, "kind": record.kind, "spec": record.spec, "targets": record.target_names()})
        return
    targets = ", ".join(record.target_names()) or "no delivery (alerts are kept in the index)"
    out.print(f"watch {record.name!r} added ({record.kind}); delivers to: {targets}", markup=False, highlight=False)


def _describe(w) -> dict:
    return {
        "name": w.name,
        "kind": w.kind,
        "spec": w.spec,
        "targets": w.target_names(),
        "created_at": w.created_at,
        "filter": bool(w.rule.filter_sql),
    }


@watch_app.command("list")
def list_(index: IndexOpt = None, json_out: JsonOpt = False):
    """The stored watches and how many alerts each has."""
    from indexer.watch_store import WatchStore

    with _open(index) as sx:
        ws = WatchStore(sx.store)
        rows = ws.all()
        counts = ws.alert_counts()
    docs = [{**_describe(w), "alerts": counts.get(w.name, 0)} for w in rows]
    if json_out:
        _emit_json({"watches": docs})
        return
    if not docs:
        out.print("no watches; add one with `soundsift watch add NAME --query ... --min-score ...`", markup=False)
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("name", "kind", "rule", "targets", "alerts"):
        table.add_column(col)
    for d in docs:
        s = d["spec"]
        rule = (
            f"{s.get('query')} >= {s.get('min_score')}"
            if d["kind"] == "query"
            else f"{s.get('label') or s.get('probe')} >= {s.get('threshold')}"
        )
        table.add_row(d["name"], d["kind"], rule, ", ".join(d["targets"]) or "-", str(d["alerts"]))
    out.print(table)


@watch_app.command("show")
def show(name: NameArg, index: IndexOpt = None, json_out: JsonOpt = False):
    """One watch: its rule, filters, targets, alert count and delivery state."""
    from indexer.watch_store import WatchStore
    from search.core.watches import get_watch

    with _open(index) as sx:
        w = get_watch(sx.store, name)
        ws = WatchStore(sx.store)
        doc = {
            **_describe(w),
            "alerts": ws.alert_counts(name).get(name, 0),
            "deliveries": [c._asdict() for c in ws.status() if c.watch == name],
        }
    if json_out:
        _emit_json(doc)
        return
    out.print(json.dumps(doc, ensure_ascii=False, indent=2), markup=False, highlight=False)


@watch_app.command("remove")
def remove(name: NameArg, index: IndexOpt = None, model: ModelOpt = None):
    """Remove a watch (its alerts stay in the index; undelivered ones are dropped)."""
    from indexer.watch_store import WatchStore
    from search.core.watches import get_watch

    with _open(index, model, write=True) as sx:
        get_watch(sx.store, name)
        WatchStore(sx.store).remove(name)
    out.print(f"watch {name!r} removed", markup=False, highlight=False)


@watch_app.command("test")
def test(
    name: NameArg,
    fire: Annotated[bool, typer.Option("--fire", help="write alerts (and deliver them) for the matches")] = False,
    top: Annotated[Optional[int], typer.Option("--top", help="print only the best N")] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    json_out: JsonOpt = False,
):
    """Run the watch over the whole index and print what it would have fired (nothing fires without --fire)."""
    from search.core.watches import run_watch_test

    with _open(index, model, write=fire) as sx:
        matches, fired = run_watch_test(sx, name, fire=fire)
        left = _deliver_now(sx) if fire and fired else 0
    shown = matches[:top] if top else matches
    if json_out:
        _emit_json({"watch": name, "matches": len(matches), "fired": fired, "rows": [m.__dict__ for m in shown]})
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("#", "score", "start", "end", "path"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for rank, m in enumerate(shown, 1):
        table.add_row(str(rank), f"{m.score:.4f}", _fmt_time(m.start), _fmt_time(m.end), m.path)
    out.print(table)
    out.print(
        f"{len(matches)} windows match {name!r}"
        + (f"; {fired} alerts written, {left} undelivered" if fire else " (nothing fired)"),
        markup=False,
    )


def _deliver_now(sx) -> int:
    from search.core.delivery import deliverer_for

    return deliverer_for(sx).start().finish(sx.settings.delivery_drain_s)


@watch_app.command("status")
def status(index: IndexOpt = None, json_out: JsonOpt = False):
    """Delivery state per watch and target: pending, delivered, failing (with the last error)."""
    from indexer.watch_store import WatchStore

    with _open(index) as sx:
        rows = WatchStore(sx.store).status()
    if json_out:
        _emit_json({"deliveries": [r._asdict() for r in rows]})
        return
    if not rows:
        out.print("no deliveries yet", markup=False)
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("watch", "target", "pending", "delivered", "failing", "last error"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.watch, r.target, str(r.pending), str(r.delivered), str(r.failing), r.last_error or "")
    out.print(table)


@app.command()
def report(
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="the HTML (or, with --json, JSON) file to write")
    ] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="alerts of the last 24h, 30m, 7d, 2w")] = None,
    run: Annotated[Optional[int], typer.Option("--run", help="alerts of this indexing run instead")] = None,
    watch: Annotated[Optional[str], typer.Option("--watch", help="only this watch")] = None,
    top: Annotated[int, typer.Option("--top", help="top matches shown per watch")] = 5,
    embed_audio: Annotated[
        bool,
        typer.Option(
            "--embed-audio", help="put each top match's audio in the page (else the player streams from --server)"
        ),
    ] = False,
    server: Annotated[
        Optional[str], typer.Option("--server", help="URL of the soundsift server the links and players point at")
    ] = None,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Per watch: alerts per hour/day and the top matches (waveform, score, player, link), as self-contained HTML."""
    from search.core.report import build_report, render_html

    if since is not None and run is not None:
        raise BadInput("give --since or --run, not both")
    if out_path is None and not json_out:
        raise BadInput("give --out report.html (or --json to print the report)")
    with _open(index) as sx:
        base = server or _default_url(sx.settings)
        doc = build_report(sx.store, since=since, run_id=run, watch=watch, top=top, base_url=base)
        if json_out:
            text = json.dumps(doc, ensure_ascii=False)
        else:
            text = render_html(doc, clip_of=_clip_reader(sx, embed_audio), server_url=base)
    if out_path is None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_path)
    total = sum(w["alerts"] for w in doc["watches"])
    out.print(f"wrote {out_path}: {total} alerts from {len(doc['watches'])} watches ({doc['scope']})", markup=False)


def _default_url(settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return f"http://{host}:{settings.port}"


def _clip_reader(sx, embed: bool):
    """alert document -> (mono samples for the waveform, WAV bytes when ``embed``); a file that no longer decodes
    gets an empty waveform."""
    import io

    import numpy as np
    import soundfile as sf

    from indexer.decode import DecodeLimits
    from plugins.contract import DecodeError
    from search.core.audio_cut import cut_clip

    s = sx.settings
    limits = DecodeLimits(s.min_sample_rate, s.max_sample_rate, s.max_channels, s.max_duration_s)

    def clip_of(alert: dict):
        try:
            clip = cut_clip(
                Path(alert["path"]), alert["start"], alert["end"], "wav", sx.plugins.decoders, s.plugin_view(), limits
            )
        except (DecodeError, OSError, ValueError):
            return np.zeros(0, np.float32), None
        audio, _ = sf.read(io.BytesIO(clip.data), dtype="float32")
        return audio, (clip.data if embed else None)

    return clip_of


@app.command()
def clips(
    out_dir: Annotated[Path, typer.Option("--out", help="folder the clips and clips.csv go in (flat)")],
    watch: Annotated[Optional[str], typer.Option("--watch", help="every alert of this watch")] = None,
    query: Annotated[Optional[str], typer.Option("--query", help="windows matching a description")] = None,
    min_score: Annotated[float, typer.Option("--min-score", help="with --query: cosine (-1..1)")] = 0.0,
    probe: Annotated[
        Optional[str], typer.Option("--probe", help="windows a stored probe's class fires on, PROBE:CLASS")
    ] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="with --probe: probability")] = 0.5,
    context: Annotated[float, typer.Option("--context", help="seconds of audio kept each side")] = 2.0,
    fmt: Annotated[str, typer.Option("--format", help="wav or flac")] = "wav",
    since: Annotated[Optional[str], typer.Option("--since", help="with --watch: alerts of the last 24h, 7d...")] = None,
    top: Annotated[Optional[int], typer.Option("--top", help="only the best N")] = None,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Cut each matched segment (with context) from its original file at its own rate, plus clips.csv."""
    import time

    from indexer.decode import DecodeLimits
    from search.core.clips import FORMATS, Segment, write_clips
    from search.core.report import parse_since

    if sum(x is not None for x in (watch, query, probe)) != 1:
        raise BadInput("give exactly one of --watch, --query or --probe")
    if fmt not in FORMATS:
        raise BadInput(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if top is not None and top < 1:
        raise BadInput("--top must be at least 1")
    if since is not None and watch is None:
        raise BadInput("--since narrows the alerts of --watch; with --query or --probe use --top")
    since_t = time.time() - parse_since(since) if since else None
    with _open(index) as sx:
        if watch is not None:
            from indexer.watch_store import WatchStore
            from search.core.watches import get_watch

            get_watch(sx.store, watch)
            rows = WatchStore(sx.store).alerts(watch=watch, since=since_t, order="score", limit=top)
            segments = [Segment(a.path, a.start, a.end, a.score, a.label, a.watch, a.window_id) for a in rows]
        else:
            from search.core.watches import WatchSpec, compile_watch, matches_of

            spec = WatchSpec(name="clips", query=query, min_score=min_score, probe=probe, threshold=threshold)
            rule = compile_watch(sx, spec)
            found, _ = matches_of(sx, rule)
            found.sort(key=lambda m: (-m.score, m.window_id))
            label = query or (probe or "").partition(":")[2]
            segments = [Segment(m.path, m.start, m.end, m.score, label, None, m.window_id) for m in found[:top]]
        s = sx.settings
        limits = DecodeLimits(s.min_sample_rate, s.max_sample_rate, s.max_channels, s.max_duration_s)
        rows_out, failures = write_clips(segments, out_dir, context, fmt, sx.plugins.decoders, s.plugin_view(), limits)
    if json_out:
        _emit_json({"out": str(out_dir), "clips": rows_out, "failed": [{"path": p, "error": e} for p, e in failures]})
        return
    out.print(f"wrote {len(rows_out)} clips and clips.csv to {out_dir}", markup=False)
    for path, error in failures:
        out.print(f"  not cut: {path}: {error}", markup=False, highlight=False)
