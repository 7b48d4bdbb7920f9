"""A tag pass: run one fixed-label audio classifier over the windows of an existing index.

Incremental: only windows without tags from that model and revision are tagged. Each file with such
windows is decoded once by the normal decode workers, its stored windows are cut from the stream
(same window and hop as the index) and classified in batches; tags are committed every few hundred
windows, so a kill loses at most the uncommitted batch and a rerun resumes. The CLAP vectors and
FAISS are untouched.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.decode import TARGET_RATE
from indexer.decode_workers import DecodeJob, DecodePool, FileFailed
from indexer.errors import BadInput
from indexer.settings import Settings
from indexer.store import IndexStore
from indexer.tag_store import TagModel, TagRows
from indexer.window_stream import FileDone, StreamWindow, WindowsBatch, WindowStream
from plugins.contract import AudioClassifier, ClassifierLoadError

COMMIT_EVERY_WINDOWS = 256
COMMIT_EVERY_S = 30.0


class TagModelError(BadInput):
    """A tagging model cannot be loaded or used: missing, not an audio classifier, a bad option."""


class TagLabelsChanged(BadInput):
    """The model now has another label set (or top_k / function_to_apply) than the tags stored for it."""


@dataclass
class TagFileError:
    path: str
    error: str


@dataclass
class TagReport:
    """What a tag pass did; ``soundsift tag --json`` prints these fields."""

    model: str
    revision: str
    alias: str
    labels: int
    windows_tagged: int = 0
    windows_already: int = 0  # had tags from this model and revision before the pass
    files_tagged: int = 0
    files_failed: int = 0
    retagged: bool = False
    errors: list[TagFileError] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def windows_per_s(self) -> float:
        total = self.timings.get("total_s", 0.0)
        return self.windows_tagged / total if total > 0 else 0.0

    def document(self) -> dict:
        return {
            "model": self.model,
            "revision": self.revision,
            "alias": self.alias,
            "labels": self.labels,
            "windows_tagged": self.windows_tagged,
            "windows_already": self.windows_already,
            "files_tagged": self.files_tagged,
            "files_failed": self.files_failed,
            "retagged": self.retagged,
            "errors": [{"path": e.path, "error": e.error} for e in self.errors],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "windows_per_s": round(self.windows_per_s, 3),
        }


def load_tag_models(taggers: Mapping[str, Any], settings: Mapping[str, Any]) -> list[AudioClassifier]:
    """Every classifier the ``taggers`` configure from ``settings`` (the plugin view); a load failure is one TagModelError."""
    models: list[AudioClassifier] = []
    for tagger in taggers.values():
        if tagger.classifiers is None:
            continue
        try:
            models.extend(tagger.classifiers(settings))
        except ClassifierLoadError as exc:
            raise TagModelError(str(exc)) from None
    return models


def tag_model_view(
    settings: Settings,
    model: str,
    top_k: int | None = None,
    function_to_apply: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The plugin settings view for one model given on the command line (the other classifier settings kept)."""
    view = settings.plugin_view()
    view["classifier.models"] = [model]
    if top_k is not None:
        view["classifier.top_k"] = top_k
    if function_to_apply is not None:
        view["classifier.function_to_apply"] = function_to_apply
    if device is not None:
        view["device"] = device
    return view


def check_label_set(store: IndexStore, model: TagModel, retag: bool = False) -> bool:
    """True when tags of this model id are stored with other labels or settings; TagLabelsChanged unless ``retag``."""
    stored = store.tag_models().get(model.model)
    if stored is None:
        return False
    changes = []
    if stored.labels != model.labels:
        added = [x for x in model.labels if x not in stored.labels]
        gone = [x for x in stored.labels if x not in model.labels]
        detail = f"{len(stored.labels)} labels stored, {len(model.labels)} now"
        if added or gone:
            detail += f"; new {added[:3]}, gone {gone[:3]}"
        changes.append(f"its label set changed ({detail})")
    if stored.top_k != model.top_k:
        changes.append(f"top_k {stored.top_k} stored, {model.top_k} now")
    if stored.function_to_apply != model.function_to_apply:
        changes.append(f"function_to_apply {stored.function_to_apply} stored, {model.function_to_apply} now")
    if not changes:
        return False
    if retag:
        return True
    raise TagLabelsChanged(
        f"model {model.model} was tagged into {store.index_dir} with other settings: {'; '.join(changes)}. "
        f"Pass --retag to drop its stored tags and tag every window again (`soundsift tag --model {model.model} --retag`), "
        "or keep the earlier settings"
    )


def pending_windows(store: IndexStore, model: TagModel, everything: bool = False) -> tuple[list[tuple], int]:
    """(file id, path, size, mtime, window id, start, end) rows still to tag, by file and start; and how many are done."""
    cur = store.cursor()
    base = (
        'SELECT f.id, f.path, f.size, f.mtime, w.id, w.start, w."end" FROM windows w JOIN files f ON f.id = w.file_id '
        "WHERE f.status = 'indexed'"
    )
    if everything:
        rows = cur.execute(base + " ORDER BY f.id, w.start, w.id").fetchall()
        return rows, 0
    rows = cur.execute(
        base + " AND NOT EXISTS (SELECT 1 FROM window_tags t WHERE t.window_id = w.id AND t.model = ? "
        "AND t.revision = ?) ORDER BY f.id, w.start, w.id",
        [model.model, model.revision],
    ).fetchall()
    total = cur.execute(
        "SELECT count(*) FROM windows w JOIN files f ON f.id = w.file_id WHERE f.status = 'indexed'"
    ).fetchone()[0]  # type: ignore[index]
    return rows, int(total) - len(rows)


class TagPass:
    """Tags the windows of one store with one classifier; used by `soundsift tag`, the server's tag jobs and Python."""

    def __init__(
        self,
        store: IndexStore,
        classifier: AudioClassifier,
        settings: Settings,
        progress: bool | None = None,
        on_progress: Callable[[dict], None] | None = None,
    ):
        self.store = store
        self.classifier = classifier
        self.model = TagModel.of(classifier, store.tag_models().get(classifier.model_id))
        self.settings = settings
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.on_progress = on_progress
        self.batch_size = max(1, settings.batch_size or 8)
        self.commit_every_s = getattr(settings, "commit_every_s", COMMIT_EVERY_S)

    def run(self, retag: bool = False) -> TagReport:
        """Tag every window lacking this model's tags (all windows with ``retag`` after a settings change)."""
        t0 = time.monotonic()
        m = self.model
        report = TagReport(model=m.model, revision=m.revision, alias=m.alias, labels=len(m.labels))
        drop = check_label_set(self.store, m, retag)
        report.retagged = drop
        rows, report.windows_already = pending_windows(self.store, m, everything=drop)
        self._drop = m.model if drop else None
        by_file: dict[int, list[tuple]] = {}
        for row in rows:
            by_file.setdefault(row[0], []).append(row)
        files = [(fid, items) for fid, items in by_file.items() if self._unchanged(items[0], report)]
        if files:
            self._tag_files(files, report)
        self._commit(TagRows.empty(m))  # the model's record, even with nothing (left) to tag
        report.timings["total_s"] = time.monotonic() - t0
        return report

    def _unchanged(self, row: tuple, report: TagReport) -> bool:
        _, path, size, mtime, *_ = row
        try:
            st = os.stat(path)
        except OSError as exc:
            report.files_failed += 1
            report.errors.append(TagFileError(path, f"cannot read: {exc.strerror or exc}"))
            return False
        if st.st_size != size or st.st_mtime != mtime:
            report.files_failed += 1
            report.errors.append(
                TagFileError(path, "changed since it was indexed: run `soundsift index` first, then tag again")
            )
            return False
        return True

    def _commit(self, rows: TagRows) -> None:
        self.store.commit_tags([rows], retag=self._drop)
        self._drop = None  # dropped once, in the first commit, together with the first new tags

    # What a pass does with a batch of windows; a transcribe pass (indexer/transcribe_pass.py) overrides these three.
    def _empty_rows(self):
        return TagRows.empty(self.model)

    def _label(self, audio: list[np.ndarray]) -> list:
        return self.classifier.classify(np.stack(audio), TARGET_RATE)

    def _add(self, buffer, window_id: int, result) -> None:
        buffer.add(window_id, result)

    def _tag_files(self, files: list[tuple[int, list[tuple]]], report: TagReport) -> None:
        config = json.loads((self.store.identity_meta() or {}).get("feature_config", "{}"))
        window = int(round(float(config.get("window_s", self.settings.window_s)) * TARGET_RATE))
        hop = int(round(float(config.get("hop_s", self.settings.hop_s)) * TARGET_RATE))
        s = self.settings
        wanted = {
            idx: {int(round(r[5] * TARGET_RATE)): (int(r[4]), int(round((r[6] - r[5]) * TARGET_RATE))) for r in items}
            for idx, (_, items) in enumerate(files)
        }
        buffer = self._empty_rows()
        last_commit = time.monotonic()
        t_classify = 0.0

        def stored_window(w: StreamWindow) -> int | None:
            """Only stored windows not tagged yet, batched by length (a batch is stacked)."""
            hit = wanted[w.file_idx].pop(w.start, None)
            if hit is None:
                return None
            w.ref, length = hit
            w.audio = w.audio[:length]
            return length

        workers = s.decode_workers or max(1, (os.cpu_count() or 2))
        events = DecodePool(DecodeJob.of(s, window, hop), workers=workers, timeout_s=s.decode_timeout_s).run(
            [items[0][1] for _, items in files]
        )
        stream = WindowStream(
            events,
            batch_size=self.batch_size,
            files_total=len(files),
            group=stored_window,
            on_progress=self.on_progress,
            progress_bar=bool(self.progress),
        )
        for item in stream:
            if isinstance(item, WindowsBatch):
                t = time.monotonic()
                results = self._label([w.audio for w in item.windows])
                t_classify += time.monotonic() - t
                for w, pairs in zip(item.windows, results):
                    self._add(buffer, w.ref, pairs)
                report.windows_tagged += len(item.windows)
            elif isinstance(item, FileFailed):
                report.files_failed += 1
                report.errors.append(TagFileError(files[item.file_idx][1][0][1], item.reason))
                wanted[item.file_idx] = {}
            elif isinstance(item, FileDone):
                if wanted[item.file_idx]:  # stored windows the stream no longer holds: the file changed under us
                    report.errors.append(
                        TagFileError(
                            files[item.file_idx][1][0][1],
                            f"{len(wanted[item.file_idx])} stored windows not found in the audio; re-index the file",
                        )
                    )
                    report.files_failed += 1
                else:
                    report.files_tagged += 1
            if len(buffer) and (
                len(set(buffer.window_ids)) >= COMMIT_EVERY_WINDOWS
                or time.monotonic() - last_commit > self.commit_every_s
            ):
                self._commit(buffer)
                buffer = self._empty_rows()
                last_commit = time.monotonic()
        if len(buffer):
            self._commit(buffer)
        report.timings["classify_s"] = t_classify


def run_tag_pass(
    store: IndexStore,
    plugins,
    settings: Settings,
    model: str,
    top_k: int | None = None,
    function_to_apply: str | None = None,
    retag: bool = False,
    device: str | None = None,
    progress: bool | None = None,
    on_progress: Callable[[dict], None] | None = None,
    classifier: AudioClassifier | None = None,
) -> TagReport:
    """Load ``model`` (hub id, local directory or ``alias=id``) through the classifier tagger and tag ``store``."""
    if classifier is None:
        taggers = [t for t in plugins.taggers.values() if t.classifiers is not None]
        taggers.sort(key=lambda t: t.name != "classifier")  # the built-in one first; one model loads once
        if not taggers:
            raise TagModelError("no tagger that runs audio-classification models is loaded (see `soundsift plugins`)")
        loaded = load_tag_models(
            {taggers[0].name: taggers[0]}, tag_model_view(settings, model, top_k, function_to_apply, device)
        )
        classifier = loaded[0]
    return TagPass(store, classifier, settings, progress, on_progress).run(retag=retag)


def tag_rows_for(
    models: Sequence[TagModel], window_ids: Sequence[int], results: Sequence[Sequence[list]]
) -> list[TagRows]:
    """TagRows per model from per-window results (``results[i][m]`` = window i's pairs for model m)."""
    out = []
    for m, model in enumerate(models):
        rows = TagRows.empty(model)
        for wid, per_model in zip(window_ids, results):
            rows.add(wid, per_model[m])
        out.append(rows)
    return out
