"""A transcribe pass: the tag pass (indexer/tag_pass.py) with a speech model in place of a classifier.

The same machinery: only windows without a transcript from that model and revision are transcribed; each
such file is decoded once by the decode workers, its stored windows cut from the stream and transcribed in
batches; transcripts are committed every few hundred windows, so a kill -9 loses at most the uncommitted
batch and a rerun resumes. One owner: the CLI owns the index or hands the job to the server that does.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer import transcript_store
from indexer.decode import TARGET_RATE
from indexer.errors import BadInput
from indexer.settings import Settings
from indexer.store import IndexStore
from indexer.tag_pass import COMMIT_EVERY_S, TagPass, TagReport
from indexer.transcript_store import TranscriptModel, TranscriptRows
from plugins.contract import SpeechTranscriber, TranscriberLoadError


class TranscriberError(BadInput):
    """A speech model cannot be loaded or used: missing, not speech recognition, a bad option."""


@dataclass
class TranscribeReport(TagReport):
    """What a transcribe pass did; ``soundsift transcribe --json`` prints these fields."""

    language: str | None = None
    windows_without_speech: int = 0

    @property
    def note(self) -> str | None:
        """One line when nothing was heard in any window transcribed (silence, music, or the wrong model)."""
        if self.windows_tagged and self.windows_without_speech == self.windows_tagged:
            return (
                f"no speech was heard in any of the {self.windows_tagged} windows transcribed with {self.model}; "
                "their empty transcripts are stored and will not be transcribed again "
                "(use --retranscribe after changing the model or language)"
            )
        return None

    def document(self) -> dict:
        doc = super().document()
        doc.pop("labels", None)
        doc["windows_transcribed"] = doc.pop("windows_tagged")
        doc["files_transcribed"] = doc.pop("files_tagged")
        doc["retranscribed"] = doc.pop("retagged")
        doc.update(language=self.language, windows_without_speech=self.windows_without_speech, note=self.note)
        return doc


def transcriber_view(
    settings: Settings, model: str, language: str | None = None, device: str | None = None
) -> dict[str, Any]:
    """The plugin settings view for one speech model given on the command line (the other transcriber settings kept)."""
    view = settings.plugin_view()
    view["transcriber.models"] = [model]
    if language:
        view["transcriber.language"] = language
    if device is not None:
        view["device"] = device
    return view


def load_transcribers(plugins, view: Mapping[str, Any], only_builtin: bool = False) -> list[SpeechTranscriber]:
    """Every speech model the loaded `Transcriber` plugins configure from ``view``; a failure is one TranscriberError."""
    found = sorted(plugins.transcribers.values(), key=lambda t: t.name != "transcriber")
    if only_builtin:
        found = found[:1]  # one model given on the command line loads once, through the built-in first
    if not found:
        raise TranscriberError("no transcriber plugin is loaded (see `soundsift plugins`)")
    models: list[SpeechTranscriber] = []
    for plugin in found:
        try:
            models.extend(plugin.load(view))
        except TranscriberLoadError as exc:
            raise TranscriberError(str(exc)) from None
    return models


class TranscribePass(TagPass):
    """Transcribes the windows of one store with one speech model; used by `soundsift transcribe`, jobs and Python."""

    def __init__(
        self,
        store: IndexStore,
        transcriber: SpeechTranscriber,
        settings: Settings,
        progress: bool | None = None,
        on_progress: Callable[[dict], None] | None = None,
    ):
        self.store = store
        self.classifier = transcriber  # type: ignore[assignment]  # the tag pass's model slot
        self.model = TranscriptModel.of(transcriber, store.transcript_models().get(transcriber.model_id))  # type: ignore[assignment]
        self.settings = settings
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.on_progress = on_progress
        self.batch_size = max(1, settings.batch_size or 8)
        self.commit_every_s = getattr(settings, "commit_every_s", COMMIT_EVERY_S)
        self._spans: dict[int, tuple[float, float]] = {}
        self._silent = 0

    def run(self, retag: bool = False) -> TranscribeReport:  # type: ignore[override]
        """Transcribe every window lacking this model's transcript (every window with ``retag``: --retranscribe)."""
        t0 = time.monotonic()
        m: TranscriptModel = self.model  # type: ignore[assignment]
        report = TranscribeReport(model=m.model, revision=m.revision, alias=m.alias, labels=0, language=m.language)
        report.retagged = bool(retag) and m.model in self.store.transcript_models()
        rows, report.windows_already = transcript_store.pending_windows(self.store.cursor(), m, everything=retag)
        self._drop = m.model if report.retagged else None
        self._spans = {int(r[4]): (float(r[5]), float(r[6])) for r in rows}
        by_file: dict[int, list[tuple]] = {}
        for row in rows:
            by_file.setdefault(row[0], []).append(row)
        files = [(fid, items) for fid, items in by_file.items() if self._unchanged(items[0], report)]
        if files:
            self._tag_files(files, report)
        self._commit(TranscriptRows.empty(m))  # the model's record, even with nothing (left) to transcribe
        report.windows_without_speech = self._silent
        report.timings["total_s"] = time.monotonic() - t0
        return report

    def _commit(self, rows) -> None:  # type: ignore[override]
        self.store.commit_transcripts([rows], retranscribe=self._drop)
        self._drop = None

    def _empty_rows(self):
        return TranscriptRows.empty(self.model)  # type: ignore[arg-type]

    def _label(self, audio: list[np.ndarray]) -> list:
        return self.classifier.transcribe(audio, TARGET_RATE)  # type: ignore[attr-defined]

    def _add(self, buffer, window_id: int, result) -> None:
        start, end = self._spans[int(window_id)]
        if not str(result.text).strip():
            self._silent += 1
        buffer.add(window_id, start, end, result)


def run_transcribe_pass(
    store: IndexStore,
    plugins,
    settings: Settings,
    model: str,
    language: str | None = None,
    retranscribe: bool = False,
    device: str | None = None,
    progress: bool | None = None,
    on_progress: Callable[[dict], None] | None = None,
    transcriber: SpeechTranscriber | None = None,
) -> TranscribeReport:
    """Load ``model`` (hub id, local directory or ``alias=id``) through the transcriber plugins and transcribe ``store``."""
    if transcriber is None:
        view = transcriber_view(settings, model, language, device)
        named = plugins.transcribers.get(model) or plugins.transcribers.get(model.partition("=")[2])
        if named is not None and named.name != "transcriber":  # --model names a plugin's transcriber by its name
            try:
                loaded = list(named.load(view))
            except TranscriberLoadError as exc:
                raise TranscriberError(str(exc)) from None
        else:
            loaded = load_transcribers(plugins, view, only_builtin=True)
        if not loaded:
            raise TranscriberError(f"no transcriber plugin loaded {model}")
        transcriber = loaded[0]
    return TranscribePass(store, transcriber, settings, progress, on_progress).run(retag=retranscribe)


def configured_transcribers(plugins, settings: Settings, device: str | None = None, cluster=None) -> list:
    """The speech models ``[plugin.transcriber]`` names, loaded before an index run writes anything.

    A Ray run refuses them: transcription runs in the owner process only (then `soundsift transcribe`)."""
    view = settings.plugin_view()
    if not view.get("transcriber.models"):
        return []
    if cluster is not None:
        raise TranscriberError(
            "transcription ([plugin.transcriber] models) runs only in a local run, not on a Ray cluster: "
            "index with --ray without them, then run `soundsift transcribe --model ID` on the owner"
        )
    if device is not None:
        view["device"] = device
    return load_transcribers(plugins, view)


def transcribe_all(store: IndexStore, transcribers: list, settings: Settings) -> list[dict]:
    """Run a transcribe pass of each loaded model over the windows it has not transcribed; their report documents."""
    return [TranscribePass(store, t, settings, progress=False).run().document() for t in transcribers]
