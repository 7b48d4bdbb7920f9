"""One uploaded file classified under the server's upload caps: audio duration and a time budget.

The file is decoded in a decode worker process (never in the server process); its duration is checked
from the header as soon as the worker has opened it, and again while windows arrive, so a small file
that decodes to hours of audio is refused after a few seconds of work. Windows are embedded a batch at
a time as they arrive: the model lock is held for one batch, never for the whole upload.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from indexer.decode import TARGET_RATE, DecodeLimits
from indexer.decode_workers import DecodeJob, DecodePool, FileFailed, FileOpened, WindowsDecoded
from indexer.errors import DecodeError, SoundsiftError
from indexer.model import ClapEncoder
from indexer.settings import Settings
from plugins.manager import PluginHost
from search.results import FileClassification


class UploadTooLong(SoundsiftError):
    """An upload holds more audio than ``max_upload_duration_s`` or needs more than ``upload_time_budget_s`` (HTTP 413)."""


def too_long(duration_s: float, cap_s: float) -> UploadTooLong:
    return UploadTooLong(f"the upload holds {'at least ' if duration_s <= cap_s else ''}{duration_s:.0f} s of audio, over the "
                         f"limit of {cap_s:.0f} s per upload (max_upload_duration_s); cut it, or index it with `soundsift index`")


class _Embedded:
    """The encoder, with the upload's windows already embedded batch by batch (classify_windows asks for them at once)."""

    def __init__(self, encoder: ClapEncoder, vectors: np.ndarray):
        self._encoder = encoder
        self._vectors = vectors

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def embed_windows(self, windows) -> np.ndarray:
        return self._vectors


def classify_upload(path: str | Path, labels: list[str] | str, encoder: ClapEncoder, settings: Settings,
                    plugins: PluginHost, policy: str = "softmax", **options) -> FileClassification:
    """Classify an uploaded file within the upload caps; raises UploadTooLong (413) or DecodeError (422).

    ``options`` (``strict``, ``policy_options``) go to `search.sound_index.classify_windows`.
    """
    from indexer.runner import auto_batch_size
    from search.sound_index import classify_windows

    cap_s = settings.max_upload_duration_s
    budget_s = settings.upload_time_budget_s
    deadline = time.monotonic() + budget_s
    window, hop = int(round(settings.window_s * TARGET_RATE)), int(round(settings.hop_s * TARGET_RATE))
    job = DecodeJob(window=window, hop=hop, plugin_settings=settings.plugin_view(),
                    limits=DecodeLimits(settings.min_sample_rate, settings.max_sample_rate, settings.max_channels,
                                        settings.max_duration_s))
    batch = settings.batch_size or auto_batch_size(encoder)
    pending: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    pool = DecodePool(job, workers=1, timeout_s=min(settings.decode_timeout_s, budget_s))
    events = pool.run([str(path)])
    try:
        for event in events:
            if time.monotonic() > deadline:
                raise UploadTooLong(f"the upload took more than {budget_s:.0f} s to decode and embed (upload_time_budget_s); "
                                    "send a shorter file, or index it with `soundsift index`")
            if isinstance(event, FileFailed):
                raise DecodeError(f"{path}: {event.reason}")
            if isinstance(event, FileOpened) and event.duration_s is not None and event.duration_s > cap_s:
                raise too_long(event.duration_s, cap_s)  # from the header: nothing decoded yet
            if isinstance(event, WindowsDecoded):
                for start, length, audio in zip(event.starts, event.lengths, event.audio):
                    end_s = (int(start) + int(length)) / TARGET_RATE
                    if end_s > cap_s + 1e-6:
                        raise too_long(end_s, cap_s)  # the header did not say (or lied): stop decoding here
                    pending.append(audio[:length])
                    spans.append((int(start) / TARGET_RATE, end_s))
                while len(pending) >= batch:
                    vectors.append(encoder.embed_windows(pending[:batch]))
                    del pending[:batch]
    finally:
        events.close()  # kills the worker if it is still decoding
    if pending:
        vectors.append(encoder.embed_windows(pending))
    embedded = np.concatenate(vectors) if vectors else np.zeros((0, encoder.embedding_dim), np.float32)
    return classify_windows([None] * len(spans), spans, labels, _Embedded(encoder, embedded), settings, plugins, policy,
                            path=str(path), **options)
