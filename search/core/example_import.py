"""A labelled manifest as examples: class folders, an ESC-50 folder, or CSV/JSONL rows of path, start, end, label.

Each row names a file (relative paths are read from the manifest's folder) and optionally a span; the
file's windows overlapping the span (all of them without one) become positive examples of the label.
Files that are not in the index are reported, not guessed at.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import BadInput
from indexer.teach_store import TeachStore, WindowRef

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".aac", ".aif", ".aiff", ".slk", ".amr", ".pcm"}


@dataclass(frozen=True)
class LabelledSpan:
    """One manifest row: a file, an optional span in seconds, its label."""

    path: str
    start: float | None
    end: float | None
    label: str


def _number(value) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BadInput(f"a start or end in the manifest is not a number: {value!r}") from None


def _row(raw: dict, base: Path, where: str) -> LabelledSpan:
    path = raw.get("path") or raw.get("filename") or raw.get("file")
    label = raw.get("label") or raw.get("category") or raw.get("class")
    if not path or not label or not str(label).strip():
        raise BadInput(f"{where}: each row needs a path and a label (columns path, start, end, label)")
    p = Path(str(path))
    return LabelledSpan(
        str(p if p.is_absolute() else base / p), _number(raw.get("start")), _number(raw.get("end")), str(label).strip()
    )


def read_manifest(sample: Path) -> list[LabelledSpan]:
    """The rows of a manifest in any of the sample formats."""
    sample = Path(sample)
    if not sample.exists():
        raise BadInput(f"no such file or directory: {sample}")
    if sample.is_dir():
        esc = sample / "meta" / "esc50.csv"
        if esc.is_file():
            with esc.open(newline="") as fh:
                return [_row(dict(r), sample / "audio", str(esc)) for r in csv.DictReader(fh)]
        rows = [
            LabelledSpan(str(f), None, None, d.name)
            for d in sorted(p for p in sample.iterdir() if p.is_dir())
            for f in sorted(d.rglob("*"))
            if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
        ]
        if not rows:
            raise BadInput(f"{sample} holds no class folders of audio (CLASS/file.wav) and no meta/esc50.csv")
        return rows
    if sample.suffix.lower() in (".jsonl", ".ndjson"):
        out = []
        for n, line in enumerate(sample.read_text().splitlines(), 1):
            if line.strip():
                try:
                    out.append(_row(json.loads(line), sample.parent, f"{sample}:{n}"))
                except json.JSONDecodeError:
                    raise BadInput(f"{sample}:{n} is not JSON") from None
        return out
    if sample.suffix.lower() in (".csv", ".tsv"):
        with sample.open(newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if sample.suffix.lower() == ".tsv" else ",")
            return [_row(dict(r), sample.parent, f"{sample}:{n}") for n, r in enumerate(reader, 2)]
    raise BadInput(f"cannot read {sample}: give class folders, an ESC-50 folder, or a .csv/.jsonl manifest")


def import_examples(store, sample: Path) -> dict:
    """Mark every manifest row's windows as examples of its label; returns counts and the files not indexed."""
    from search.core.like import _file_of

    teach = TeachStore(store)
    by_class: dict[str, list[WindowRef]] = {}
    missing: list[str] = []
    for row in read_manifest(sample):
        found = _file_of(teach, row.path)
        if found is None:
            missing.append(row.path)
            continue
        windows = [
            w
            for w in teach.file_windows(found[0])
            if (row.start is None or w.end > row.start) and (row.end is None or w.start < row.end)
        ]
        by_class.setdefault(row.label, []).extend(windows)
    if not by_class:
        raise BadInput(f"none of the {len(missing)} files in {sample} is in the index: index them first")
    added = 0
    for cls, windows in by_class.items():  # everything resolved before the first write
        added += teach.add_examples(cls, windows, True, f"import:{Path(sample).name}")
    return {"examples": added, "classes": sorted(by_class), "not_indexed": missing}
