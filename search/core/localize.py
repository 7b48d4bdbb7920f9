"""Where inside a window a sound is: short overlapping sub-windows, each prepared as CLAP prepares a short clip
(repeat-padded to the model's input, through the encoder's own feature and model path), scored against a query.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from indexer.decode import TARGET_RATE, DecodeLimits
from indexer.errors import BadInput, DecodeError
from indexer.model import ClapEncoder
from search.core.audio_cut import NotServable, _read_seekable, _read_streaming, window_location
from search.core.options import with_prompt_template
from search.core.prompts import combined_vectors, prepare_all
from search.core.results import Localization, SubWindowScore

DEFAULT_SUB_S = 1.0
DEFAULT_HOP_S = 0.25
MAX_SUB_WINDOWS = 400  # one request embeds at most this many clips
LOCALIZE_MAX_HITS = 20  # search --localize: the best hits per query are localized, later ones keep None


def sub_window_spans(samples: int, sub: int, hop: int) -> list[tuple[int, int]]:
    """(start, end) sample spans of sub-windows over ``samples``: every ``hop``, the last one aligned to the end."""
    if samples <= sub:
        return [(0, samples)] if samples > 0 else []
    spans = [(s, s + sub) for s in range(0, samples - sub + 1, hop)]
    if spans[-1][1] < samples:
        spans.append((samples - sub, samples))
    return spans


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
    batch: int = 16,
) -> Localization:
    """Score sub-windows of ``audio`` (mono, 48 kHz) against ``query_vector``; the best one, in seconds of the file.

    Each sub-window goes through ``encoder.embed_windows``: repeat-padded to the model's input exactly as a
    short clip is, then the same log-mel features and audio tower as every indexed window.
    """
    if not 0.1 <= sub_s <= 10.0:
        raise BadInput(f"sub_s must be between 0.1 and 10 seconds, not {sub_s}")
    if not 0.05 <= hop_s <= sub_s:
        raise BadInput(f"hop_s must be between 0.05 s and sub_s ({sub_s} s), not {hop_s}")
    audio = np.asarray(audio, dtype=np.float32)
    sub, hop = int(round(sub_s * encoder.sample_rate)), int(round(hop_s * encoder.sample_rate))
    spans = sub_window_spans(len(audio), sub, hop)
    if not spans:
        raise BadInput("no audio to localize in")
    if len(spans) > MAX_SUB_WINDOWS:
        raise BadInput(f"{len(spans)} sub-windows exceed the limit of {MAX_SUB_WINDOWS}: raise hop_s")
    q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    scores = []
    for i in range(0, len(spans), batch):
        part = spans[i : i + batch]
        vectors = encoder.embed_windows([audio[a:b] for a, b in part])
        scores.extend((vectors @ q).tolist())
    rate = float(encoder.sample_rate)
    steps = [
        SubWindowScore(start=offset_s + a / rate, end=offset_s + b / rate, score=float(s))
        for (a, b), s in zip(spans, scores)
    ]
    best = int(np.argmax(scores))
    return Localization(
        query=query,
        texts=texts or [],
        start=steps[best].start,
        end=steps[best].end,
        score=steps[best].score,
        window_start=offset_s,
        window_end=offset_s + len(audio) / rate,
        sub_s=sub_s,
        hop_s=hop_s,
        steps=steps,
    )


def read_mono_48k(
    path: Path,
    start_s: float,
    end_s: float,
    decoders: Mapping[str, Any],
    plugin_settings: Mapping[str, Any],
    limits: DecodeLimits,
) -> np.ndarray:
    """Mono 48 kHz samples of ``path`` between ``start_s`` and ``end_s`` (a seek where libsndfile can, else streamed)."""
    import soxr

    found = _read_seekable(path, start_s, end_s)
    if found is None:
        return _read_streaming(path, start_s, end_s, decoders, plugin_settings, limits)
    audio, rate = found
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

    Raises ``search.core.audio_cut.NotServable`` when the window's file is gone or changed, BadInput for bad options.
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
    """Set ``localized`` on the best `LOCALIZE_MAX_HITS` hits of each query (a hit whose file is gone keeps None)."""
    settings = with_prompt_template(sx.settings, prompt_template)
    limits = DecodeLimits.of(settings)
    for result in results:
        if not result.hits:  # includes a query with no English: it was not searched
            continue
        prepared = prepare_all([result.query], sx.plugins, settings, strict)[0]
        qv = combined_vectors(sx.encoder, [prepared.texts])[0]
        for hit in result.hits[:LOCALIZE_MAX_HITS]:
            try:
                where = window_location(sx, hit.window_id)
                audio = read_mono_48k(
                    Path(where.path), where.start, where.end, sx.plugins.decoders, settings.plugin_view(), limits
                )
            except (NotServable, DecodeError):
                continue
            hit.localized = localize_audio(
                audio,
                qv,
                sx.encoder,
                offset_s=where.start,
                sub_s=sub_s,
                hop_s=hop_s,
                query=prepared.query,
                texts=prepared.texts,
            )
            hit.localized.window_id = hit.window_id
