"""`soundsift watch add|list|show|remove|test|status`: standing queries stored in the index, fired on new windows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

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
