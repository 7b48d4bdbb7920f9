"""A labelled sample as examples: any layout `eval` reads (class folders, ESC-50, CSV/JSONL of path, start, end, label).

Each clip names a file and optionally a span; the file's windows in the index overlapping the span (all of
them without one) become positive examples of each of its labels. Files not in the index are reported.
"""

from __future__ import annotations

from pathlib import Path

from indexer.errors import BadInput
from indexer.teach_store import TeachStore, WindowRef


def import_examples(store, sample: Path) -> dict:
    """Mark every clip's windows as examples of its labels; returns counts, the files not in the index and the rows
    the sample reader skipped (a file that does not exist, a bad row)."""
    from search.core.like import _file_of
    from search.core.samples import read_sample

    teach = TeachStore(store)
    by_class: dict[str, list[WindowRef]] = {}
    missing: list[str] = []
    found_sample = read_sample(sample)
    for clip in found_sample.clips:
        found = _file_of(teach, str(clip.path))
        if found is None:
            missing.append(str(clip.path))
            continue
        windows = [
            w for w in teach.file_windows(found[0]) if w.end > clip.start and (clip.end is None or w.start < clip.end)
        ]
        for label in clip.labels:
            by_class.setdefault(label, []).extend(windows)
    if not by_class:
        raise BadInput(f"none of the {len(missing)} files in {sample} is in the index: index them first")
    added = 0
    for cls, windows in by_class.items():  # everything resolved before the first write
        added += teach.add_examples(cls, windows, True, f"import:{Path(sample).name}")
    skipped = [{"where": r.where, "reason": r.reason} for r in found_sample.skipped]
    return {"examples": added, "classes": sorted(by_class), "not_indexed": missing, "skipped": skipped}
