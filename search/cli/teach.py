"""Teach the index your sounds: `examples add|list|remove|import`, `train`, `probes list|remove|export|import`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from indexer.errors import BadInput, IndexLocked
from search.cli.app import IndexOpt, JsonOpt, _emit_json, _settings, app, out
from search.core.probes import check_class_name as _class_name
from search.core.probes import example_document

examples_app = typer.Typer(no_args_is_help=True, help="Marked windows (examples) per class, kept in the index.")
probes_app = typer.Typer(no_args_is_help=True, help="Probes trained from the examples: list, remove, export, import.")
app.add_typer(examples_app, name="examples")
app.add_typer(probes_app, name="probes")


@contextlib.contextmanager
def owned_store(index: Path | None):
    """The index's store opened by this process as its owner (no model loaded): examples and probes are written here."""
    from indexer.errors import IndexMissing
    from indexer.ownership import IndexOwnership
    from indexer.store import DB_NAME, IndexStore

    settings = _settings(index)
    if not (settings.index / DB_NAME).exists():
        raise IndexMissing(
            f"no index at {settings.index}: build one with `soundsift index PATH --index {settings.index}`"
        )
    try:
        ownership = IndexOwnership(settings.index, role="teach")
    except IndexLocked as exc:
        raise IndexLocked(f"{exc} (a running server takes examples and probes on /examples and /probes)") from None
    try:
        store = IndexStore.open(settings.index, None, create=False)
        try:
            yield store
        finally:
            store.close()
    finally:
        ownership.release()


def _windows(store, targets: list[str]):
    from indexer.teach_store import TeachStore
    from search.core.like import resolve_windows

    teach = TeachStore(store)
    found = []
    for target in targets:  # every target resolved before anything is written
        found += resolve_windows(teach, target)
    if any(w.hash is None for w in found):
        raise BadInput("a target's file has no content hash; run `soundsift index --verify-content` first")
    return teach, found


@examples_app.command("add")
def examples_add(
    cls: Annotated[str, typer.Argument(metavar="CLASS", help="the class (the first example creates it)")],
    targets: Annotated[list[str], typer.Argument(help="window ids, PATH (all its windows) or PATH@SECONDS")],
    negative: Annotated[bool, typer.Option("--negative", help="mark as counter-examples (not CLASS)")] = False,
    source: Annotated[str, typer.Option("--source", help="where the marks come from")] = "cli",
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Mark windows as examples of CLASS (or, with --negative, as counter-examples)."""
    cls = _class_name(cls)
    with owned_store(index) as store:
        teach, windows = _windows(store, targets)
        added = teach.add_examples(cls, windows, not negative, source)
    doc = {"class": cls, "added": added, "positive": not negative, "window_ids": [w.window_id for w in windows]}
    if json_out:
        _emit_json(doc)
    else:
        out.print(f"{cls}: marked {added} window(s) as {'counter-' if negative else ''}examples", markup=False)


@examples_app.command("list")
def examples_list(
    cls: Annotated[Optional[str], typer.Option("--class", help="only this class")] = None,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Every example with its current window; a stale one (its file changed or is gone) says so."""
    from indexer.teach_store import TeachStore

    with owned_store(index) as store:
        rows = [example_document(e) for e in TeachStore(store).examples(cls)]
    if json_out:
        _emit_json({"examples": rows})
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("class", "mark", "window", "start", "end", "path", "stale"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["class"],
            "+" if r["positive"] else "-",
            str(r["window_id"] if r["window_id"] is not None else "-"),
            f"{r['start']:g}",
            f"{r['end']:g}",
            r["path"] or "",
            r["stale"] or "",
        )
    out.print(table)


@examples_app.command("remove")
def examples_remove(
    cls: Annotated[str, typer.Argument(metavar="CLASS", help="the class ('*' with targets: every class)")],
    targets: Annotated[Optional[list[str]], typer.Argument(help="targets to unmark (default: the whole class)")] = None,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Forget the examples of CLASS on the given targets, or the whole class."""
    from indexer.teach_store import TeachStore

    with owned_store(index) as store:
        if targets:
            teach, windows = _windows(store, targets)
            removed = teach.remove_examples(None if cls == "*" else cls, windows)
        else:
            teach = TeachStore(store)
            if cls not in teach.classes():
                raise BadInput(f"no class {cls!r}; classes: {', '.join(teach.classes()) or 'none'}")
            removed = teach.remove_examples(cls, None)
    if json_out:
        _emit_json({"class": cls, "removed": removed})
    else:
        out.print(f"removed {removed} example(s)", markup=False)


@examples_app.command("import")
def examples_import(
    sample: Annotated[
        Path, typer.Argument(help="class folders, an ESC-50 folder, or a CSV/JSONL with path, start, end, label")
    ],
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Import a labelled manifest as examples (each row's windows in the index; files not indexed are reported)."""
    from search.core.example_import import import_examples

    with owned_store(index) as store:
        doc = import_examples(store, sample)
    if json_out:
        _emit_json(doc)
    else:
        out.print(
            f"imported {doc['examples']} examples of {len(doc['classes'])} classes; "
            f"{len(doc['not_indexed'])} file(s) not in the index",
            markup=False,
        )


@app.command()
def train(
    probe: Annotated[str, typer.Argument(metavar="PROBE", help="the probe's name")],
    classes: Annotated[
        str, typer.Option("--classes", help="comma-separated classes with examples, e.g. 'fault, normal'")
    ],
    background: Annotated[
        Optional[int],
        typer.Option(
            "--background", help="N random unlabelled windows as an 'other' class (default: 200 for one class, else 0)"
        ),
    ] = None,
    c: Annotated[float, typer.Option("--c", help="inverse regularisation strength of the logistic regression")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="the background draw and the folds")] = 0,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Train a probe (class-balanced logistic regression on the examples' vectors); reports cross-validated accuracy and F1."""
    from indexer.matrix import WindowMatrix
    from search.core.probes import probe_summary
    from search.core.probes import train as train_probe

    with owned_store(index) as store:
        record = train_probe(store, WindowMatrix.current(store), probe, classes, background, c, seed)
        doc = probe_summary(store, record)
    if json_out:
        _emit_json(doc)
        return
    m = record.metrics
    acc = f"{m['cv_accuracy']:.3f}" if "cv_accuracy" in m else "n/a"
    out.print(
        f"probe {record.name} v{record.version}: {', '.join(record.classes)}; {m['examples']} windows; "
        f"cross-validated accuracy {acc} ({m['folds']} folds)",
        markup=False,
    )
    for cls, f1 in (m.get("f1") or {}).items():
        out.print(f"  {cls}: F1 {f1:.3f} ({m['counts'].get(cls, 0)} windows)", markup=False)


@probes_app.command("list")
def probes_list(index: IndexOpt = None, json_out: JsonOpt = False):
    """Every probe: classes, version, model, cross-validated figures, and whether its examples changed since."""
    from indexer.teach_store import TeachStore
    from search.core.probes import probe_summary

    with owned_store(index) as store:
        teach = TeachStore(store)
        docs = [probe_summary(store, teach.probe(n)) for n in teach.probe_names()]  # type: ignore[arg-type]
    if json_out:
        _emit_json({"probes": docs})
        return
    for d in docs:
        acc = d["metrics"].get("cv_accuracy")
        changed = " (examples changed since: train again)" if d["examples_changed"] else ""
        out.print(
            f"{d['name']} v{d['version']}: {', '.join(d['classes'])}; cv accuracy "
            f"{'n/a' if acc is None else format(acc, '.3f')}{changed}",
            markup=False,
        )


@probes_app.command("remove")
def probes_remove(
    name: Annotated[str, typer.Argument(metavar="PROBE")], index: IndexOpt = None, json_out: JsonOpt = False
):
    """Remove a probe."""
    from indexer.teach_store import TeachStore

    with owned_store(index) as store:
        if not TeachStore(store).remove_probe(name):
            raise BadInput(f"no probe named {name!r}; probes: {', '.join(TeachStore(store).probe_names()) or 'none'}")
    if json_out:
        _emit_json({"removed": name})
    else:
        out.print(f"removed probe {name}", markup=False)


@probes_app.command("export")
def probes_export(
    name: Annotated[str, typer.Argument(metavar="PROBE")],
    file: Annotated[Path, typer.Argument(metavar="FILE", help="the probe file to write (JSON)")],
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Write a probe to a small file another index with the same model can import."""
    from search.core.probes import export_probe

    with owned_store(index) as store:
        doc = export_probe(store, name, file)
    if json_out:
        _emit_json(doc)
    else:
        out.print(f"wrote probe {name} to {file} ({doc['bytes']} bytes)", markup=False)


@probes_app.command("import")
def probes_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="a file `probes export` wrote")],
    name: Annotated[Optional[str], typer.Option("--name", help="store it under this name (default: its own)")] = None,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
):
    """Load a probe file; one trained with another model is refused, naming both."""
    from search.core.probes import import_probe, probe_summary

    with owned_store(index) as store:
        record = import_probe(store, file, name)
        doc = probe_summary(store, record)
    if json_out:
        _emit_json(doc)
    else:
        out.print(f"imported probe {record.name} v{record.version}: {', '.join(record.classes)}", markup=False)


def evaluate_probe(found, probe: str, settings, index: Path | None, workers, target_precision):
    """`eval SAMPLE --probe PROBE`: the sample's clips embedded with the index's model, scored by the stored probe."""
    from plugins.manager import default_plugins
    from search.core.classify import policy_named
    from search.core.eval_clips import embed_sample
    from search.core.evaluate import Variant, check_label_map, evaluate
    from search.core.probes import OTHER, load_scorer
    from search.sound_index import SoundIndex

    if index is None:
        raise BadInput("--probe needs the --index the probe was trained in")
    plugins = default_plugins()
    with contextlib.ExitStack() as stack:
        try:
            sx = stack.enter_context(SoundIndex.open(settings.index, settings=settings))
        except IndexLocked:
            sx = stack.enter_context(SoundIndex.open(settings.index, settings=settings, read_only=True))
        scorer = load_scorer(sx.store, probe)
        check_label_map([c for c in scorer.classes if c != OTHER], found.classes)
        variant = Variant(
            name=f"probe:{probe}",
            scorer=scorer,
            policy=policy_named(plugins.policies, "softmax"),
            policy_name="softmax",
            texts={c: f"probe {probe}" for c in scorer.classes},
        )
        embedded = embed_sample(found, sx.encoder, settings, plugins, store=sx.store, workers=workers)
        return evaluate(
            embedded, [variant], source=str(found.source), layout=found.layout, target_precision=target_precision
        )
