"""Where inside a window a sound is: short overlapping sub-windows, each prepared as CLAP prepares a short clip
(repeat-padded to the model's input, through the encoder's own feature and model path), scored against a query.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from indexer.decode import TARGET_RATE, DecodeLimits, read_span
from indexer.errors import BadInput, DecodeError
from indexer.model import ClapEncoder
from search.core.audio_cut import NotServable, window_location
from search.core.options import with_prompt_template
from search.core.prompts import combined_vectors, prepare_all
from search.core.results import Localization, SubWindowScore

DEFAULT_SUB_S = 1.0
DEFAULT_HOP_S = 0.25
# Each sub-window costs one full forward pass of the audio tower (it is repeat-padded to the model's input), so
# the work of one request is bounded in sub-windows.
MAX_SUB_WINDOWS = 200  # one window's localization: a 10 s window at the finest steps (0.1 s every 0.05 s) is 199
LOCALIZE_MAX_HITS = 20  # search --localize: at most the best 20 hits per query are localized
SEARCH_MAX_SUB_WINDOWS = 48  # ... and at most this many sub-windows per search (a 10 s window at 1 s / 0.25 s is 37)
LOCALIZE_BATCH = 64  # sub-windows per forward pass of the audio tower


def sub_window_spans(samples: int, sub: int, hop: int) -> list[tuple[int, int]]:
    """(start, end) sample spans of sub-windows over ``samples``: every ``hop``, the last one aligned to the end."""
    if samples <= sub:
        return [(0, samples)] if samples > 0 else []
    spans = [(s, s + sub) for s in range(0, samples - sub + 1, hop)]
    if spans[-1][1] < samples:
        spans.append((samples - sub, samples))
    return spans


def _check_steps(sub_s: float, hop_s: float) -> None:
    if not 0.1 <= sub_s <= 10.0:
        raise BadInput(f"sub_s must be between 0.1 and 10 seconds, not {sub_s}")
    if not 0.05 <= hop_s <= sub_s:
        raise BadInput(f"hop_s must be between 0.05 s and sub_s ({sub_s} s), not {hop_s}")


def _spans_of(audio: np.ndarray, encoder: ClapEncoder, sub_s: float, hop_s: float) -> list[tuple[int, int]]:
    rate = encoder.sample_rate
    return sub_window_spans(len(audio), int(round(sub_s * rate)), int(round(hop_s * rate)))


def embed_clips(encoder: ClapEncoder, clips: list[np.ndarray], batch: int = LOCALIZE_BATCH) -> np.ndarray:
    """Unit embeddings of short clips, ``batch`` at a time through ``encoder.embed_windows`` (repeat-padded)."""
    parts = [encoder.embed_windows(clips[i : i + batch]) for i in range(0, len(clips), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, encoder.embedding_dim), np.float32)


def _localization(
    spans: list[tuple[int, int]],
    scores: np.ndarray,
    rate: float,
    offset_s: float,
    samples: int,
    sub_s: float,
    hop_s: float,
    query: str,
    texts: list[str] | None,
) -> Localization:
    steps = [
        SubWindowScore(start=offset_s + a / rate, end=offset_s + b / rate, score=float(s))
        for (a, b), s in zip(spans, scores.tolist())
    ]
    best = int(np.argmax(scores))
    return Localization(
        query=query,
        texts=texts or [],
        start=steps[best].start,
        end=steps[best].end,
        score=steps[best].score,
        window_start=offset_s,
        window_end=offset_s + samples / rate,
        sub_s=sub_s,
        hop_s=hop_s,
        steps=steps,
    )


def localize_audio(
    audio: np.ndarray,
    query_vector: np.ndarray,
    encoder: ClapEncoder,
    *,
    offset_s: float = 0.0,
    sub_s: float = DEFAULT_SUB_S,
    hop_s: float = DEFAULT_HOP_S,
    query: str = "",
    texts: list[str] | None = None,
    batch: int = LOCALIZE_BATCH,
) -> Localization:
    """Score sub-windows of ``audio`` (mono, 48 kHz) against ``query_vector``; the best one, in seconds of the file.

    Each sub-window goes through ``encoder.embed_windows``: repeat-padded to the model's input exactly as a
    short clip is, then the same log-mel features and audio tower as every indexed window.
    """
    _check_steps(sub_s, hop_s)
    audio = np.asarray(audio, dtype=np.float32)
    spans = _spans_of(audio, encoder, sub_s, hop_s)
    if not spans:
        raise BadInput("no audio to localize in")
    if len(spans) > MAX_SUB_WINDOWS:
        raise BadInput(f"{len(spans)} sub-windows exceed the limit of {MAX_SUB_WINDOWS}: raise hop_s")
    q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    scores = embed_clips(encoder, [audio[a:b] for a, b in spans], batch) @ q
    return _localization(spans, scores, float(encoder.sample_rate), offset_s, len(audio), sub_s, hop_s, query, texts)


def read_mono_48k(
    path: Path,
    start_s: float,
    end_s: float,
    decoders: Mapping[str, Any],
    plugin_settings: Mapping[str, Any],
    limits: DecodeLimits,
) -> np.ndarray:
    """Mono 48 kHz samples of ``path`` between ``start_s`` and ``end_s`` (a seek where the decoder's source can, else streamed)."""
    import soxr

    audio, rate = read_span(path, start_s, end_s, decoders, plugin_settings, limits)
    if rate != TARGET_RATE and len(audio):
        audio = soxr.resample(audio, rate, TARGET_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)


def localize_window(
    sx,
    window_id: int,
    query: str,
    *,
    sub_s: float = DEFAULT_SUB_S,
    hop_s: float = DEFAULT_HOP_S,
    prompt_template: str | None = None,
    strict: bool | None = None,
) -> Localization:
    """Where inside indexed window ``window_id`` the sound ``query`` describes is (seconds of the file).

    Raises ``NotServable`` when the window's file is gone or changed, BadInput for bad options.
    """
    where = window_location(sx, window_id)
    settings = sx.settings
    prepared = prepare_all([query], sx.plugins, with_prompt_template(settings, prompt_template), strict)[0]
    qv = combined_vectors(sx.encoder, [prepared.texts])[0]
    limits = DecodeLimits.of(settings)
    audio = read_mono_48k(Path(where.path), where.start, where.end, sx.plugins.decoders, settings.plugin_view(), limits)
    found = localize_audio(
        audio,
        qv,
        sx.encoder,
        offset_s=where.start,
        sub_s=sub_s,
        hop_s=hop_s,
        query=prepared.query,
        texts=prepared.texts,
    )
    found.window_id = window_id
    return found


def localize_hits(
    sx,
    results,
    *,
    sub_s: float = DEFAULT_SUB_S,
    hop_s: float = DEFAULT_HOP_S,
    prompt_template: str | None = None,
    strict: bool | None = None,
) -> None:
    """Set ``localized`` on the best `LOCALIZE_MAX_HITS` hits of each query, within one request's work.

    The work is bounded: at most `SEARCH_MAX_SUB_WINDOWS` sub-windows per call, taken in rank order
    across the queries (every query's best hit first), each window decoded and embedded once however many
    queries hit it, all sub-windows through the audio tower in batches. A hit past that budget, or whose file
    is gone or changed, keeps None.
    """

    _check_steps(sub_s, hop_s)
    settings = with_prompt_template(sx.settings, prompt_template)
    searched = [result for result in results if result.hits]  # a query with no English was not searched
    if not searched:
        return
    prepared = prepare_all([result.query for result in searched], sx.plugins, settings, strict)
    vectors = combined_vectors(sx.encoder, [p.texts for p in prepared])
    windows, clips = _hit_windows(sx, settings, searched, sub_s, hop_s)
    embedded = embed_clips(sx.encoder, clips)
    rate = float(sx.encoder.sample_rate)
    for result, query, qv in zip(searched, prepared, vectors):
        for hit in result.hits[:LOCALIZE_MAX_HITS]:
            found = windows.get(hit.window_id)
            if found is None:
                continue
            start_s, samples, spans, first = found
            scores = embedded[first : first + len(spans)] @ qv
            hit.localized = _localization(spans, scores, rate, start_s, samples, sub_s, hop_s, query.query, query.texts)
            hit.localized.window_id = hit.window_id


def _hit_windows(sx, settings, searched, sub_s: float, hop_s: float):
    """The hits' windows in rank order across queries until `SEARCH_MAX_SUB_WINDOWS`: window id -> (start_s, samples,
    spans, first row in ``clips``) or None (gone, changed or past the budget), and the sub-window clips."""

    limits = DecodeLimits.of(settings)
    windows: dict[int, tuple[float, int, list[tuple[int, int]], int] | None] = {}
    clips: list[np.ndarray] = []
    for rank in range(LOCALIZE_MAX_HITS):
        for result in searched:
            if rank >= len(result.hits) or result.hits[rank].window_id in windows:
                continue
            window_id = result.hits[rank].window_id
            windows[window_id] = None
            if len(clips) >= SEARCH_MAX_SUB_WINDOWS:
                continue
            try:
                where = window_location(sx, window_id)
                audio = read_mono_48k(
                    Path(where.path), where.start, where.end, sx.plugins.decoders, settings.plugin_view(), limits
                )
            except (NotServable, DecodeError):
                continue
            spans = _spans_of(audio, sx.encoder, sub_s, hop_s)
            if spans and len(clips) + len(spans) <= SEARCH_MAX_SUB_WINDOWS:
                windows[window_id] = (where.start, len(audio), spans, len(clips))
                clips.extend(audio[a:b] for a, b in spans)
    return windows, clips
