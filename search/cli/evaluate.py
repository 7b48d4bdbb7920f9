"""`soundsift eval`: a label set measured on a labelled sample; `soundsift label-set add|list|show|remove`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from indexer.errors import BadInput, IndexLocked
from search.cli.app import DeviceOpt, IndexOpt, JsonOpt, ModelOpt, _emit_json, _policy_options, _settings, app, out

label_set_app = typer.Typer(
    no_args_is_help=True, help="Label sets stored in the index (used by name in POST /classify and the page)."
)
app.add_typer(label_set_app, name="label-set")


@app.command("eval")
def eval_cmd(
    sample: Annotated[
        Path,
        typer.Argument(
            help="class folders (dog/*.wav), an ESC-50 or UrbanSound8K folder, or a manifest .csv/.jsonl "
            "(path, label, optional start/end)"
        ),
    ],
    labels: Annotated[
        Optional[str],
        typer.Option(
            "--labels",
            help='labels for the classes: "dog, cat" or dog="dog barking", bearing=轴承异响 (default: the class names)',
        ),
    ] = None,
    model: ModelOpt = None,
    index: Annotated[
        Optional[Path],
        typer.Option(
            "--index",
            help="use this index's model and cache the clips' vectors in it (default: no index; --model alone)",
        ),
    ] = None,
    device: DeviceOpt = None,
    policy: Annotated[
        Optional[list[str]], typer.Option("--policy", help="scoring policy; repeat to compare policies")
    ] = None,
    policy_option: Annotated[
        Optional[list[str]], typer.Option("--policy-option", help="policy option key=value, repeatable")
    ] = None,
    prompt_template: Annotated[
        Optional[list[str]],
        typer.Option("--prompt-template", help="e.g. 'the sound of {}'; repeat to compare templates"),
    ] = None,
    variant: Annotated[
        Optional[list[str]],
        typer.Option("--variant", help='alternative phrasing(s) to compare, e.g. bearing="bearing squeal"; repeatable'),
    ] = None,
    target_precision: Annotated[
        Optional[float],
        typer.Option(
            "--target-precision", help="thresholds reach this precision with the highest recall (default: best F1)"
        ),
    ] = None,
    save_label_set: Annotated[
        Optional[Path],
        typer.Option(
            "--save-label-set",
            help="write the best variant as a TOML label set with its thresholds (with --index: also stored in "
            "the index under the file's name)",
        ),
    ] = None,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="also write a self-contained HTML report with the plots")
    ] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="decoding processes (default: settings)")] = None,
    strict: Annotated[bool, typer.Option("--strict")] = False,
    probe: Annotated[
        Optional[str], typer.Option("--probe", help="evaluate a probe trained in --index instead of a label set")
    ] = None,
    json_out: JsonOpt = False,
):
    """Measure a label set (or a --probe) on your own labelled recordings: accuracy, F1, AP, thresholds, calibration."""
    from search.core.eval_setup import parse_label_map, plan_variants
    from search.core.evaluate import check_label_map
    from search.core.samples import read_sample

    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise BadInput(f"--target-precision must be in (0, 1], not {target_precision:g}")
    if out_path is not None and out_path.suffix.lower() not in (".html", ".htm"):
        raise BadInput(f"--out writes an HTML report: give a .html file, not {out_path}")
    found = read_sample(sample)
    if probe is not None:
        from search.cli.teach import evaluate_probe

        report = evaluate_probe(found, probe, _settings(index, model, device), index, workers, target_precision)
        _emit_json(report) if json_out else _print_report(report)
        return
    label_map = parse_label_map(labels) if labels else {c: c for c in found.classes}
    check_label_map(list(label_map), found.classes)  # before any model loads
    settings = _settings(index, model, device)
    plan = plan_variants(
        label_map, prompt_template, variant, policy, _policy_options(policy_option), settings.prompt_template
    )
    with contextlib.ExitStack() as stack:
        encoder, store = _model_and_cache(stack, settings, index)
        report, best = _run(found, plan, encoder, settings, store, workers, strict, target_precision)
        if save_label_set is not None:
            saved = _save(best, report, save_label_set, store)
    if out_path is not None:
        from search.core.eval_report import write_html

        write_html(report, out_path)
    if json_out:
        _emit_json(report)
        return
    _print_report(report)
    if out_path is not None:
        out.print(f"wrote the report to {out_path}")
    if save_label_set is not None:
        out.print(f"saved the label set to {save_label_set}" + (f" and in the index as {saved!r}" if saved else ""))


def _model_and_cache(stack: contextlib.ExitStack, settings, index: Path | None):
    """(encoder, store): with --index, the index's model and its clip cache (read-only when another process owns
    the index: then nothing is cached); without, the model alone (--model, else the default) and no index."""
    from search.sound_index import SoundIndex, load_encoder

    if index is None:
        return load_encoder(settings), None
    try:
        sx = stack.enter_context(SoundIndex.open(settings.index, settings=settings))
    except IndexLocked:
        sx = stack.enter_context(SoundIndex.open(settings.index, settings=settings, read_only=True))
    return sx.encoder, sx.store


def _run(found, plan, encoder, settings, store, workers, strict, target_precision):
    from plugins.manager import default_plugins
    from search.core.eval_setup import run_evaluation

    return run_evaluation(
        found,
        plan,
        encoder,
        settings,
        default_plugins(),
        store=store,
        workers=workers,
        strict=strict or None,
        target_precision=target_precision,
    )


def _save(best, report, path: Path, store) -> str | None:
    """The best variant with its thresholds as a TOML file (and in the index, named after the file)."""
    from search.core.label_set import check_label_set_name, save_label_set_in_index

    best.save(path)
    if store is None or store.read_only:
        return None
    name = check_label_set_name(path.stem)
    save_label_set_in_index(store, name, best)
    return name


def _print_report(report) -> None:
    from rich.table import Table

    out.print(
        f"[bold]{report.clips}[/bold] clips, {len(report.labels)} labels ({report.layout}"
        + (", multi-label" if report.multilabel else "")
        + f"); embedded {report.embedded_windows} windows, {report.cached_clips} clips from the cache"
    )
    out.print(
        f"accuracy {report.accuracy:.3f}  top-5 {report.top5_accuracy:.3f}  macro-F1 {report.macro_f1:.3f}  "
        f"micro-F1 {report.micro_f1:.3f}  mAP {_num(report.map)}  ECE {_num(report.calibration.ece)}"
    )
    table = Table("label", "text", "precision", "recall", "F1", "AP", "support", "threshold")
    for p in report.per_label:
        table.add_row(
            p.label,
            p.text,
            f"{p.precision:.3f}",
            f"{p.recall:.3f}",
            f"{p.f1:.3f}",
            _num(p.ap),
            str(p.support),
            _num(p.threshold),
        )
    out.print(table)
    if len(report.variants) > 1:
        ranked = Table("rank", "variant", "macro-F1", "mAP", "accuracy")
        for v in report.variants:
            ranked.add_row(str(v.rank), v.name, f"{v.macro_f1:.3f}", _num(v.map), f"{v.accuracy:.3f}")
        out.print(ranked)
    if report.retrieval is not None:
        r = report.retrieval
        out.print(
            f"retrieval: recall@1 {_num(r.recall_at_1)}  @5 {_num(r.recall_at_5)}  @10 {_num(r.recall_at_10)}  mAP {_num(r.map)}"
        )
    for what, items in (
        ("classes without a label", report.classes_without_label),
        ("labels without examples", report.labels_without_examples),
    ):
        if items:
            out.print(f"[yellow]{what}: {', '.join(items)}[/yellow]")
    for s in report.skipped:
        out.print(f"[yellow]skipped {s.where}: {s.reason}[/yellow]")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# -- label sets in the index ------------------------------------------------------------------------
@contextlib.contextmanager
def _label_sets(index: Path | None, write: bool):
    """The index's label-set table, opened without any model (as its owner when ``write``, else as a reader)."""
    from indexer.label_set_store import LabelSetStore
    from indexer.ownership import IndexOwnership
    from indexer.store import DB_NAME, IndexStore

    index_dir = _settings(index).index
    if not (index_dir / DB_NAME).exists():
        raise BadInput(f"no index at {index_dir}: build one with `soundsift index PATH --index {index_dir}`")
    ownership = IndexOwnership(index_dir, shared=not write)
    try:
        store = IndexStore.open(index_dir, None, create=False, read_only=not write)
        try:
            yield LabelSetStore(store)
        finally:
            store.close()
    finally:
        ownership.release()


@label_set_app.command("add")
def label_set_add(
    name: Annotated[str, typer.Argument(help="the name POST /classify and the page use")],
    file: Annotated[Path, typer.Argument(help="a TOML label set (as `soundsift eval --save-label-set` writes)")],
    index: IndexOpt = None,
):
    """Store a TOML label set in the index under NAME (replacing one of that name)."""
    from search.core.label_set import check_label_set_name, load_label_set

    check_label_set_name(name)
    label_set = load_label_set(file)
    with _label_sets(index, write=True) as table:
        table.put(name, label_set.dumps())
    out.print(f"stored the label set {name!r} ({len(label_set.labels)} labels)")


@label_set_app.command("list")
def label_set_list(index: IndexOpt = None, json_out: JsonOpt = False):
    """The label sets stored in the index."""
    with _label_sets(index, write=False) as table:
        names = table.names()
    if json_out:
        _emit_json({"label_sets": names})
        return
    for name in names:
        out.print(name)


@label_set_app.command("show")
def label_set_show(name: Annotated[str, typer.Argument()], index: IndexOpt = None):
    """Print a stored label set as TOML."""
    from search.core.label_set import parse_label_set

    with _label_sets(index, write=False) as table:
        found = table.get(name)
    if found is None:
        raise BadInput(f"no label set named {name!r} in the index (see `soundsift label-set list`)")
    out.print(parse_label_set(found.body, f"label set {name!r}").dumps(), markup=False, highlight=False)


@label_set_app.command("remove")
def label_set_remove(name: Annotated[str, typer.Argument()], index: IndexOpt = None):
    """Drop a stored label set."""
    with _label_sets(index, write=True) as table:
        if not table.remove(name):
            raise BadInput(f"no label set named {name!r} in the index")
    out.print(f"removed the label set {name!r}")
