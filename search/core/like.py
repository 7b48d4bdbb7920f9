"""Query by example: targets (window ids, files, a time in a file, a clip) resolved to windows, mixed with text (Rocchio).

A TARGET is a window id (``1234``), a file in the index (``PATH``: the mean of its windows), the window of a
file holding a time (``PATH@SECONDS``), or a clip outside the index embedded through the same audio path
(decoders, 48 kHz, windows, the CLAP audio tower). The query vector is Rocchio's
``text_weight * unit(text) + like_weight * mean(likes) - unlike_weight * mean(unlikes)``, made unit length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.errors import BadInput
from indexer.teach_store import TeachStore, WindowRef


@dataclass(frozen=True)
class LikeWeights:
    """Rocchio's weights: the text, the examples to move toward, and those to move away from."""

    text: float = 1.0
    like: float = 1.0
    unlike: float = 0.5


@dataclass
class Target:
    """A resolved target: the windows it names and the vector standing for it (their mean, unit length)."""

    spec: str
    windows: list[WindowRef]
    vector: np.ndarray
    window_ids: list[int] = field(default_factory=list)


def _file_of(teach: TeachStore, path_text: str) -> tuple[int, str] | None:
    """(file id, stored path) of the indexed file ``path_text`` names: as stored, else the same file on disk."""
    candidates = teach.files_named(path_text, os.path.basename(path_text.rstrip("/")))
    for fid, stored in candidates:
        if stored == path_text:
            return fid, stored
    wanted = os.path.realpath(path_text)
    for fid, stored in candidates:
        if os.path.realpath(stored) == wanted:
            return fid, stored
    return None


def resolve_windows(teach: TeachStore, spec: str | int | dict) -> list[WindowRef]:
    """The windows a target names (a window id, ``PATH``, ``PATH@SECONDS`` or ``{"path", "start"}``); BadInput if none."""
    if isinstance(spec, dict):
        if "path" not in spec:
            raise BadInput(f"a target object needs a path (and optionally start): {spec!r}")
        text = str(spec["path"]) if spec.get("start") is None else f"{spec['path']}@{float(spec['start'])}"
        return resolve_windows(teach, text)
    text = str(spec).strip()
    if not text:
        raise BadInput("an empty target: give a window id, PATH or PATH@SECONDS")
    if "\x00" in text:
        raise BadInput("a target cannot contain a NUL character")
    if isinstance(spec, int) or text.isdigit():
        found = _file_of(teach, text) if not isinstance(spec, int) else None
        if found is None:
            w = teach.window(int(text))
            if w is None:
                raise BadInput(f"no window {text} in the index (window ids are in `search --json` hits)")
            return [w]
    path_text, at, seconds = text.rpartition("@")
    if at and _is_number(seconds) and _file_of(teach, path_text) is not None:
        fid, stored = _file_of(teach, path_text)  # type: ignore[misc]
        t = float(seconds)
        windows = teach.file_windows(fid)
        holding = [w for w in windows if w.start <= t < w.end] or [w for w in windows if w.start <= t <= w.end]
        if not holding:
            last = max((w.end for w in windows), default=0.0)
            raise BadInput(f"{stored} has no window at {t:g} s (its windows end at {last:g} s)")
        return [max(holding, key=lambda w: w.start)]  # the latest window starting at or before the time
    found = _file_of(teach, text)
    if found is None:
        raise BadInput(
            f"{text!r} is not in the index: give a window id, an indexed file's PATH or PATH@SECONDS "
            "(index the file first, or pass a clip with --like-file)"
        )
    windows = teach.file_windows(found[0])
    if not windows:
        raise BadInput(f"{found[1]} has no windows in the index")
    return windows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit length (a zero vector stays zero)."""
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def resolve_target(teach: TeachStore, wm, spec: str | int | dict) -> Target:
    """A target's windows and its vector (the unit mean of those windows' stored vectors)."""
    windows = resolve_windows(teach, spec)
    ids, vectors = wm.vectors_of(np.array([w.window_id for w in windows], np.int64))
    if not len(ids):
        raise BadInput(f"target {spec!r} has no stored vector (re-index, then try again)")
    return Target(str(spec), windows, unit(np.asarray(vectors, np.float32).mean(axis=0)), [int(i) for i in ids])


def embed_clip(path: str | Path, encoder, settings, plugins) -> np.ndarray:
    """A clip outside the index as one unit vector: its windows embedded as the indexer embeds them, averaged."""
    from indexer.decode import TARGET_RATE, DecodeLimits, mono_48k_blocks, open_audio
    from indexer.errors import DecodeError
    from indexer.windows import WindowCutter

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    limits = DecodeLimits(
        settings.min_sample_rate, settings.max_sample_rate, settings.max_channels, settings.max_duration_s
    )
    window, hop = int(round(settings.window_s * TARGET_RATE)), int(round(settings.hop_s * TARGET_RATE))
    cutter = WindowCutter(window, hop)
    pieces: list[np.ndarray] = []
    try:
        opened = open_audio(path, plugins.decoders, settings.plugin_view(), limits)
        for block in mono_48k_blocks(opened, limits):
            pieces.extend(w for _, w in cutter.feed(block))
        pieces.extend(w for _, w in cutter.finish())
    except DecodeError as exc:
        raise BadInput(f"cannot decode {path}: {exc}") from None
    if not pieces:
        raise BadInput(f"{path} holds no audio")
    vectors = np.asarray(encoder.embed_windows(pieces), np.float32)
    return unit(vectors.mean(axis=0))


def rocchio(
    text_vector: np.ndarray | None, likes: list[np.ndarray], unlikes: list[np.ndarray], weights: LikeWeights
) -> np.ndarray:
    """The unit query vector: text, toward the likes' mean, away from the unlikes' mean."""
    if text_vector is None and not likes:
        raise BadInput("searching by example needs a text or a --like/--like-file target (--unlike only moves away)")
    dim = len(text_vector) if text_vector is not None else len(likes[0])
    q = np.zeros(dim, np.float64)
    if text_vector is not None:
        q += weights.text * unit(np.asarray(text_vector, np.float32))
    if likes:
        q += weights.like * np.mean(np.stack(likes), axis=0)
    if unlikes:
        q -= weights.unlike * np.mean(np.stack(unlikes), axis=0)
    if not np.isfinite(q).all() or float(np.linalg.norm(q)) == 0.0:
        raise BadInput("the examples cancel out: the query vector is zero (lower --unlike-weight)")
    return unit(q)


@dataclass
class LikeQuery:
    """What a search by example asks: targets to move toward and away from, clips, weights, and self-inclusion."""

    like: list = field(default_factory=list)  # window ids, "PATH", "PATH@SECONDS" or {"path", "start"}
    unlike: list = field(default_factory=list)
    like_vectors: list[np.ndarray] = field(default_factory=list)  # clips already embedded (--like-file, an upload)
    include_self: bool = False
    weights: LikeWeights = field(default_factory=LikeWeights)

    def is_empty(self) -> bool:
        return not (self.like or self.unlike or self.like_vectors)


def search_like(sx, prepared: list, text_vectors: np.ndarray | None, query: LikeQuery, k: int, allowed):
    """One QueryResult: the top-k windows for the Rocchio mix of the texts and the examples.

    The like targets' own windows are left out unless ``include_self``."""
    from search.core.results import QueryResult
    from search.core.topk import top_k_hits

    teach = TeachStore(sx.store)
    wm = sx.window_matrix()
    likes = [resolve_target(teach, wm, t) for t in query.like]
    unlikes = [resolve_target(teach, wm, t) for t in query.unlike]
    text = None
    if text_vectors is not None and len(text_vectors):
        text = unit(np.asarray(text_vectors, np.float32).mean(axis=0))
    q = rocchio(
        text,
        [t.vector for t in likes] + [unit(v) for v in query.like_vectors],
        [t.vector for t in unlikes],
        query.weights,
    )
    excluded = set() if query.include_self else {i for t in likes for i in t.window_ids}
    hits = []
    if sx.vectors.ntotal and (allowed is None or len(allowed)):
        found = top_k_hits(sx.store, sx.vectors, q[None, :], k + len(excluded), allowed, sx.window_matrix)[0]
        hits = [h for h in found if h.window_id not in excluded][:k]
    label = [p.query for p in prepared] + [f"like {t.spec}" for t in likes] + ["like clip"] * len(query.like_vectors)
    label += [f"unlike {t.spec}" for t in unlikes]
    return QueryResult(
        query=" + ".join(label),
        texts=[t for p in prepared for t in p.texts],
        untranslated=[u for p in prepared for u in p.untranslated],
        hits=hits,
    )
