"""A labelled sample's clips embedded once, the way `classify-file` embeds a file: decoded in worker processes,
cropped to the clip, cut into windows and embedded (`search.core.one_file.ClipEmbedder`), and cached in the
index when one is given (keyed by the file's content hash, the clip's start and end, the model fingerprint and
the windowing), so a second evaluation of the same sample embeds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from indexer.decode_workers import DecodePool, FileDecoded, FileFailed, FileOpened, WindowsDecoded
from indexer.errors import SoundsiftError
from indexer.label_set_store import ClipKey, ClipVectors, LabelSetStore
from indexer.scan import content_hashes
from indexer.settings import Settings
from search.core.one_file import EMBED_BATCH, ClipEmbedder, SharedBatch, decode_job
from search.core.samples import Sample, SampleClip, SkippedRow


@dataclass
class EmbeddedSample:
    """The clips that could be embedded, their windows' vectors (clip by clip) and what could not be used."""

    clips: list[SampleClip]
    vectors: np.ndarray  # (windows, dim) float32 unit vectors
    clip_of_window: np.ndarray  # (windows,) int64: the clip (index into ``clips``) each window belongs to
    skipped: list[SkippedRow] = field(default_factory=list)
    embedded_windows: int = 0  # windows embedded by this run (0 when everything came from the cache)
    cached_clips: int = 0
    clip_ends: list[float] = field(default_factory=list)  # where each clip's audio ends (its last window's end), s

    @property
    def spans(self) -> list[tuple[int, int]]:
        """(first, last + 1) window rows of each clip."""
        bounds = np.searchsorted(self.clip_of_window, np.arange(len(self.clips) + 1))
        return [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(self.clips))]


def _key(clip: SampleClip, digest: str, fingerprint: str, settings: Settings) -> ClipKey:
    return ClipKey(fingerprint, digest, float(clip.start), clip.end, float(settings.window_s), float(settings.hop_s))


def embed_sample(
    sample: Sample,
    encoder,
    settings: Settings,
    plugins,
    store=None,
    workers: int | None = None,
) -> EmbeddedSample:
    """Every clip of ``sample`` as window vectors: from ``store``'s cache when it holds them, else decoded and
    embedded (and then cached there, when the store can be written). A clip that fails to decode, or starts
    past its file's end, is skipped with its reason; the rest is evaluated."""
    skipped = list(sample.skipped)
    digests = content_hashes(sorted({str(c.path) for c in sample.clips}))
    fingerprint = encoder.identity.fingerprint
    table = LabelSetStore(store) if store is not None else None
    keys: dict[int, ClipKey] = {}
    for i, clip in enumerate(sample.clips):
        digest = digests.get(str(clip.path))
        if digest is None:
            skipped.append(SkippedRow(str(clip.path), "cannot read the file"))
            continue
        keys[i] = _key(clip, digest, fingerprint, settings)
    cached = table.clip_vectors(list(set(keys.values()))) if table is not None else {}
    done: dict[int, ClipVectors] = {i: cached[k] for i, k in keys.items() if k in cached}
    todo = [i for i in keys if i not in done]
    fresh = _embed_clips([sample.clips[i] for i in todo], encoder, settings, plugins, workers)
    new_items = []
    embedded = 0
    for i, outcome in zip(todo, fresh):
        if isinstance(outcome, str):
            skipped.append(SkippedRow(_where(sample.clips[i]), outcome))
            continue
        done[i] = outcome
        embedded += len(outcome.spans)
        new_items.append((keys[i], outcome))
    if table is not None and new_items and not getattr(store, "read_only", False):
        table.put_clip_vectors(new_items)
    order = sorted(done)
    dim = encoder.embedding_dim
    vectors = [done[i].vectors for i in order]
    return EmbeddedSample(
        clips=[sample.clips[i] for i in order],
        vectors=np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32),
        clip_of_window=np.repeat(np.arange(len(order), dtype=np.int64), [len(done[i].spans) for i in order]),
        skipped=skipped,
        embedded_windows=embedded,
        cached_clips=len(order) - len(new_items),
        clip_ends=[max(e for _, e in done[i].spans) for i in order],
    )


def _where(clip: SampleClip) -> str:
    if clip.start or clip.end is not None:
        end = "end" if clip.end is None else f"{clip.end:g}"
        return f"{clip.path} [{clip.start:g}-{end} s]"
    return str(clip.path)


def _embed_clips(clips: list[SampleClip], encoder, settings: Settings, plugins, workers: int | None) -> list:
    """Per clip, its `ClipVectors` or the reason it failed (a string), decoding in parallel worker processes."""
    if not clips:
        return []
    import os

    out: list = [None] * len(clips)
    batch = SharedBatch(encoder, settings.batch_size or EMBED_BATCH)  # short clips: windows of several clips at once
    embedders = {
        i: ClipEmbedder(encoder, settings, None, float(c.start), c.duration, batcher=batch) for i, c in enumerate(clips)
    }
    ended: set[int] = set()
    n = workers or settings.decode_workers or max(1, min(4, os.cpu_count() or 1))
    pool = DecodePool(decode_job(settings), workers=n, timeout_s=settings.decode_timeout_s)
    for event in pool.run([str(c.path) for c in clips]):
        i = event.file_idx
        if out[i] is not None:  # failed already, or past its segment: the rest of the file is not needed
            continue
        try:
            if isinstance(event, FileFailed):
                out[i] = f"cannot decode: {event.reason}"
            elif isinstance(event, FileOpened):
                embedders[i].opened(event)
            elif isinstance(event, WindowsDecoded):
                embedders[i].feed(event)
            elif isinstance(event, FileDecoded):
                ended.add(i)
                embedders[i].end_of_audio()  # its last windows join the shared batch
        except SoundsiftError as exc:
            out[i] = str(exc)
    batch.flush()
    for i, embedder in embedders.items():
        if out[i] is not None:
            continue
        if i not in ended:  # the pool ends every file with FileDecoded or FileFailed
            out[i] = "the decoder reported no end of the file"
            continue
        clip = embedder.result()
        out[i] = ClipVectors(clip.spans, clip.vectors)
    return out
