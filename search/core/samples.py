"""A labelled sample: recordings (or segments of them) with the classes they belong to, read from any common layout.

Layouts, recognised in this order:
- a manifest file, CSV or JSONL, with ``path``, optional ``start``/``end`` seconds and ``label`` (several labels
  joined with ``;`` make a multi-label sample); relative paths are relative to the manifest;
- a folder holding ``meta/esc50.csv`` (ESC-50: ``filename``, ``category``, audio under ``audio/``);
- a folder holding ``metadata/UrbanSound8K.csv`` (``slice_file_name``, ``fold``, ``class``; audio under
  ``audio/fold{N}/`` or ``fold{N}/``);
- a folder whose sub-folders are the classes (``dog/*.wav``, searched recursively).

Nothing is dropped silently: a row that cannot be used (a missing file, a blank label, a bad time) is kept in
``Sample.skipped`` with its reason, and the rest of the sample is used.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from indexer.errors import BadInput

MANIFEST_COLUMNS = ("path", "start", "end", "label")
ESC50_META = Path("meta") / "esc50.csv"
US8K_META = Path("metadata") / "UrbanSound8K.csv"
#: Files in class folders that are never audio (notes, metadata): not taken for recordings.
NOT_AUDIO = frozenset({".txt", ".md", ".csv", ".json", ".jsonl", ".toml", ".yaml", ".yml", ".py", ".html"})


@dataclass(frozen=True)
class SampleClip:
    """One labelled clip: a file, or its part from ``start`` to ``end`` seconds (``end`` None: to the end)."""

    path: Path
    start: float = 0.0
    end: float | None = None
    labels: tuple[str, ...] = ()

    @property
    def duration(self) -> float | None:
        """Seconds from ``start`` to ``end``, None when the clip runs to the end of the file."""
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True)
class SkippedRow:
    """A row (or file) of the sample that could not be used, and why."""

    where: str  # "manifest.csv:12", a path, ...
    reason: str


@dataclass
class Sample:
    """The clips of a labelled sample, the layout it was read from and what was skipped."""

    source: Path
    layout: str  # manifest-csv | manifest-jsonl | esc50 | urbansound8k | folders
    clips: list[SampleClip] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Every class that has at least one clip, sorted."""
        return sorted({label for clip in self.clips for label in clip.labels})

    @property
    def multilabel(self) -> bool:
        """True when some clip carries more than one label."""
        return any(len(clip.labels) > 1 for clip in self.clips)

    def support(self) -> dict[str, int]:
        """Clips per class."""
        counts: dict[str, int] = {}
        for clip in self.clips:
            for label in clip.labels:
                counts[label] = counts.get(label, 0) + 1
        return counts


def read_sample(path: str | Path) -> Sample:
    """Read a labelled sample from a manifest or a folder (see the module docstring for the layouts).

    Raises BadInput for a path that does not exist, a manifest with unknown or missing columns, and a sample
    with no usable clip (the reasons of the skipped rows are in the message).
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise BadInput(
            f"no such sample: {source} (give a folder of class folders, an ESC-50 or UrbanSound8K folder, or a manifest .csv/.jsonl)"
        )
    if source.is_file():
        sample = _read_manifest(source)
    elif (source / ESC50_META).is_file():
        sample = _read_esc50(source)
    elif (source / US8K_META).is_file():
        sample = _read_urbansound8k(source)
    else:
        sample = _read_folders(source)
    if not sample.clips:
        why = "; ".join(f"{s.where}: {s.reason}" for s in sample.skipped[:3])
        raise BadInput(f"the sample {source} has no labelled clips" + (f" ({why})" if why else ""))
    return sample


def split_labels(raw: object) -> tuple[str, ...]:
    """Labels of one row: ``a;b`` (or a JSON list) as a tuple of distinct, stripped names, in order."""
    items = raw if isinstance(raw, (list, tuple)) else str(raw if raw is not None else "").split(";")
    out: list[str] = []
    for item in items:
        name = str(item).strip()
        if name and name not in out:
            out.append(name)
    return tuple(out)


def _seconds(value: object, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not a number of seconds: {value!r}") from None
    if not (seconds >= 0.0 and seconds != float("inf")):
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return seconds


def _check_columns(columns: list[str], where: Path) -> None:
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    missing = [c for c in ("path", "label") if c not in columns]
    if unknown or missing:
        said = []
        if unknown:
            said.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
        if missing:
            said.append(f"missing column(s) {', '.join(map(repr, missing))}")
        raise BadInput(
            f"{where}: {' and '.join(said)}; a manifest has the columns path, label and optionally start, end "
            "(seconds); several labels are joined with ';'"
        )


def _manifest_rows(source: Path) -> tuple[str, list[tuple[int, dict]]]:
    """(layout, [(line number, row)]) of a CSV or JSONL manifest, columns checked."""
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the manifest {source}: {exc}") from None
    if source.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows: list[tuple[int, dict]] = []
        columns: list[str] = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(
                    f"{source}:{n}: not a JSON object ({exc.msg}); a JSONL manifest has one object per line"
                ) from None
            if not isinstance(row, dict):
                raise BadInput(f"{source}:{n}: not a JSON object; a JSONL manifest has one object per line")
            columns.extend(k for k in row if k not in columns)
            rows.append((n, row))
        if rows:
            _check_columns(columns, source)
        return "manifest-jsonl", rows
    reader = csv.DictReader(text.splitlines())
    header = [c.strip() for c in (reader.fieldnames or [])]
    if header:
        _check_columns(header, source)
    reader.fieldnames = header
    return "manifest-csv", [(n, row) for n, row in enumerate(reader, 2)]


def _read_manifest(source: Path) -> Sample:
    layout, rows = _manifest_rows(source)
    sample = Sample(source=source, layout=layout)
    base = source.parent
    for n, row in rows:
        where = f"{source.name}:{n}"
        raw_path = row.get("path")
        if raw_path is None or not str(raw_path).strip():
            sample.skipped.append(SkippedRow(where, "no path"))
            continue
        labels = split_labels(row.get("label"))
        if not labels:
            sample.skipped.append(SkippedRow(where, f"no label for {raw_path}"))
            continue
        try:
            start = _seconds(row.get("start"), "start") or 0.0
            end = _seconds(row.get("end"), "end")
        except ValueError as exc:
            sample.skipped.append(SkippedRow(where, str(exc)))
            continue
        if end is not None and end <= start:
            sample.skipped.append(SkippedRow(where, f"end {end:g} s is not after start {start:g} s"))
            continue
        clip_path = Path(str(raw_path).strip()).expanduser()
        if not clip_path.is_absolute():
            clip_path = base / clip_path
        if not clip_path.is_file():
            sample.skipped.append(SkippedRow(where, f"no such file: {clip_path}"))
            continue
        sample.clips.append(SampleClip(clip_path, start, end, labels))
    return sample


def _csv_rows(meta: Path, needed: tuple[str, ...]) -> list[tuple[int, dict]]:
    with open(meta, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in needed if c not in header]
        if missing:
            raise BadInput(f"{meta}: missing column(s) {', '.join(map(repr, missing))} (needs {', '.join(needed)})")
        reader.fieldnames = header
        return [(n, row) for n, row in enumerate(reader, 2)]


def _add_file(sample: Sample, where: str, path: Path, label: str | None) -> None:
    labels = split_labels(label)
    if not labels:
        sample.skipped.append(SkippedRow(where, f"no label for {path.name}"))
    elif not path.is_file():
        sample.skipped.append(SkippedRow(where, f"no such file: {path}"))
    else:
        sample.clips.append(SampleClip(path, 0.0, None, labels))


def _read_esc50(root: Path) -> Sample:
    sample = Sample(source=root, layout="esc50")
    for n, row in _csv_rows(root / ESC50_META, ("filename", "category")):
        _add_file(
            sample, f"{ESC50_META}:{n}", root / "audio" / (row.get("filename") or "").strip(), row.get("category")
        )
    return sample


def _read_urbansound8k(root: Path) -> Sample:
    sample = Sample(source=root, layout="urbansound8k")
    # The CSV's start/end are the slice's place in its original Freesound recording, not in the slice file.
    for n, row in _csv_rows(root / US8K_META, ("slice_file_name", "fold", "class")):
        name, fold = (row.get("slice_file_name") or "").strip(), (row.get("fold") or "").strip()
        path = root / "audio" / f"fold{fold}" / name
        if not path.is_file() and (root / f"fold{fold}" / name).is_file():
            path = root / f"fold{fold}" / name
        _add_file(sample, f"{US8K_META}:{n}", path, row.get("class"))
    return sample


def _read_folders(root: Path) -> Sample:
    sample = Sample(source=root, layout="folders")
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            if entry.suffix.lower() not in NOT_AUDIO:
                sample.skipped.append(SkippedRow(str(entry), "not in a class folder (class folders hold the audio)"))
            continue
        for f in sorted(p for p in entry.rglob("*") if p.is_file()):
            if any(part.startswith(".") for part in f.relative_to(root).parts) or f.suffix.lower() in NOT_AUDIO:
                continue
            sample.clips.append(SampleClip(f, 0.0, None, (entry.name,)))
    return sample
