"""Zero-shot classification at scale: label vectors x stored windows in chunks, a scoring policy, rows out."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.errors import BadInput, UnknownPolicy
from indexer.store import WindowChunk
from plugins.contract import ArchiveStats, PolicyOptionError, PolicyResult, ScoringPolicy
from search.core.prompts import PreparedQuery, combined_vectors
from search.core.results import ClassifyRow
from search.core.scorers import (
    LabelSetScorer,
    Scorer,
    aggregate_files,
    policy_options_for,
    scorer_labels,
    scorer_logits,
)

#: A label set as a scorer (its older name, kept for callers).
LabelMatrix = LabelSetScorer


def policy_named(policies: dict[str, ScoringPolicy], name: str) -> ScoringPolicy:
    try:
        return policies[name]
    except KeyError:
        raise UnknownPolicy(f"no scoring policy named {name!r}; registered: {', '.join(sorted(policies))}") from None


def chunk_logits(matrix: Scorer, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, negative_logits), both (n, L); negative is the max over each label's negatives, -inf if none."""
    return scorer_logits(matrix, vectors)


CHUNK_ELEMENTS = 2**21  # logits per chunk: the policy's temporaries (8 MB each) stay in cache and reused memory


def chunk_rows(labels: int, limit: int) -> int:
    """Windows per chunk for ``labels`` labels: up to ``limit``, fewer as labels grow (numpy temporaries of
    a 65,536 x 1,000 chunk are 256 MB each, fresh pages every time: 2.5x slower than 16 MB ones)."""
    return int(max(1024, min(limit, CHUNK_ELEMENTS // max(1, labels))))


def archive_stats(matrix: Scorer, chunks: Iterator[WindowChunk]) -> ArchiveStats:
    """Per-label mean and std of logits over the given windows (one streaming pass)."""
    n = 0
    total = np.zeros(len(matrix.classes), np.float64)
    total_sq = np.zeros(len(matrix.classes), np.float64)
    for c in chunks:
        logits, _ = chunk_logits(matrix, c.vectors)
        total += logits.sum(axis=0)
        total_sq += np.square(logits, dtype=np.float64).sum(axis=0)
        n += len(logits)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(total_sq / max(n, 1) - mean**2, 0.0))
    return ArchiveStats(mean=mean.astype(np.float32), std=std.astype(np.float32), count=n)


@dataclass
class ClassifyOptions:
    by: str = "window"  # window | file
    top: int | None = None
    threshold: float | None = None
    policy_options: dict = field(default_factory=dict)


def check_policy_options(policy: ScoringPolicy, matrix: Scorer, options: ClassifyOptions) -> None:
    """Run the policy on zero windows so a bad option is one clear error before any row is streamed."""
    n = len(matrix.classes)
    empty = np.zeros((0, n), np.float32)
    stats = ArchiveStats(np.zeros(n, np.float32), np.ones(n, np.float32), 0) if policy.needs_archive_stats else None
    try:
        policy.score(
            empty,
            empty,
            scorer_labels(matrix),
            stats,
            policy_options_for(matrix, options.threshold, options.policy_options),
        )
    except PolicyOptionError as exc:
        raise BadInput(f"{exc} (see `soundsift plugins` for each policy's options)") from None


def _best_label(result: PolicyResult, labels: list[str], row: int) -> str | None:
    fired = np.flatnonzero(result.fired[row])
    if not len(fired):
        return None
    return labels[fired[np.argmax(result.scores[row, fired])]]


def score_chunks(
    chunks: Iterator[WindowChunk],
    paths: dict[int, str],
    matrix: Scorer,
    policy: ScoringPolicy,
    stats: ArchiveStats | None,
    options: ClassifyOptions,
) -> Iterator[ClassifyRow]:
    """Rows for every window (or file), streamed chunk by chunk; with ``top``, only the best N rows, best first."""
    names = list(matrix.classes)
    policy_options = policy_options_for(matrix, options.threshold, options.policy_options)
    if options.by == "window" and options.top is not None:
        yield from _top_window_rows(chunks, paths, matrix, policy, stats, policy_options, names, options)
        return
    rows = (
        _file_rows(chunks, paths, matrix, policy, stats, policy_options, names)
        if options.by == "file"
        else _window_rows(chunks, paths, matrix, policy, stats, policy_options, names)
    )
    if options.threshold is not None:
        rows = (r for r in rows if r.label is not None)
    if options.top is None:
        yield from rows
        return
    key = lambda r: r.scores.get(r.label, -np.inf) if r.label else max(r.scores.values(), default=-np.inf)
    yield from heapq.nlargest(options.top, rows, key=key)


def _window_rows(chunks, paths, matrix, policy, stats, policy_options, names) -> Iterator[ClassifyRow]:
    for c in chunks:
        logits, negative = chunk_logits(matrix, c.vectors)
        result = policy.score(logits, negative, scorer_labels(matrix), stats, policy_options)
        for i in range(len(c.ids)):
            yield ClassifyRow(
                path=paths[int(c.file_ids[i])],
                start=float(c.starts[i]),
                end=float(c.ends[i]),
                scores={name: float(result.scores[i, j]) for j, name in enumerate(names)},
                label=_best_label(result, names, i),
                window_id=int(c.ids[i]),
                file_id=int(c.file_ids[i]),
                extras={k: float(v[i]) for k, v in result.extras.items()},
                fired=[names[j] for j in np.flatnonzero(result.fired[i])],
            )


def _row_keys(result: PolicyResult) -> tuple[np.ndarray, np.ndarray, Any]:
    """Per row: the best fired label (-1 if none), the ranking key (its score, else the best score) as _best_label does."""
    fired_scores = np.where(result.fired, result.scores, -np.inf)
    best = fired_scores.argmax(axis=1)
    any_fired = result.fired.any(axis=1)
    label = np.where(any_fired, best, -1)
    key = np.where(any_fired, fired_scores[np.arange(len(best)), best], result.scores.max(axis=1, initial=-np.inf))
    return label, key, any_fired


def _top_window_rows(chunks, paths, matrix, policy, stats, policy_options, names, options) -> Iterator[ClassifyRow]:
    """The best ``top`` windows, kept per chunk with array operations: rows are built only for the winners."""
    best: dict[str, np.ndarray] | None = (
        None  # the running top: keys, ids, file ids, starts, ends, labels, scores, extras
    )
    for c in chunks:
        logits, negative = chunk_logits(matrix, c.vectors)
        result = policy.score(logits, negative, scorer_labels(matrix), stats, policy_options)
        label, key, any_fired = _row_keys(result)
        pick = np.flatnonzero(any_fired) if options.threshold is not None else np.arange(len(key))
        if len(pick) > options.top:
            pick = np.sort(pick[np.argpartition(-key[pick], options.top - 1)[: options.top]])
        part = {
            "key": key[pick],
            "id": np.asarray(c.ids)[pick],
            "file_id": np.asarray(c.file_ids)[pick],
            "start": np.asarray(c.starts)[pick],
            "end": np.asarray(c.ends)[pick],
            "label": label[pick],
            "scores": np.asarray(result.scores)[pick],
            "fired": np.asarray(result.fired)[pick],
            **{f"x:{k}": np.asarray(v)[pick] for k, v in result.extras.items()},
        }
        best = part if best is None else {k: np.concatenate([best[k], part[k]]) for k in part}
        if len(best["key"]) > options.top:
            order = np.argsort(-best["key"], kind="stable")[
                : options.top
            ]  # ties: the earlier window, as heapq.nlargest
            best = {k: v[np.sort(order)] for k, v in best.items()}
    if best is None:
        return
    extras = [k for k in best if k.startswith("x:")]
    for i in np.argsort(-best["key"], kind="stable"):
        yield ClassifyRow(
            path=paths[int(best["file_id"][i])],
            start=float(best["start"][i]),
            end=float(best["end"][i]),
            scores={name: float(best["scores"][i, j]) for j, name in enumerate(names)},
            label=names[best["label"][i]] if best["label"][i] >= 0 else None,
            window_id=int(best["id"][i]),
            file_id=int(best["file_id"][i]),
            extras={k[2:]: float(best[k][i]) for k in extras},
            fired=[names[j] for j in np.flatnonzero(best["fired"][i])],
        )


def _file_rows(chunks, paths, matrix, policy, stats, policy_options, names) -> Iterator[ClassifyRow]:
    """Per file: each label's max over the file's windows, and the window where the winning label peaks."""
    best: dict[int, np.ndarray] = {}
    where: dict[int, np.ndarray] = {}  # per label: (window id, start, end) of the max
    fired_any: dict[int, np.ndarray] = {}
    for c in chunks:
        logits, negative = chunk_logits(matrix, c.vectors)
        result = policy.score(logits, negative, scorer_labels(matrix), stats, policy_options)
        files = aggregate_files(result, c.file_ids)
        ids, starts, ends = np.asarray(c.ids), np.asarray(c.starts), np.asarray(c.ends)
        for k, fid in enumerate(files.file_ids.tolist()):
            peak, arg = files.scores[k], files.peak[k]
            loc = np.stack([ids[arg], starts[arg], ends[arg]], axis=1)
            if fid not in best:
                best[fid], where[fid], fired_any[fid] = peak, loc, files.fired[k]
            else:
                better = peak > best[fid]
                best[fid] = np.where(better, peak, best[fid])
                where[fid][better] = loc[better]
                fired_any[fid] = fired_any[fid] | files.fired[k]
    for fid in sorted(best):
        fired = np.flatnonzero(fired_any[fid])
        label_idx = int(fired[np.argmax(best[fid][fired])]) if len(fired) else int(np.argmax(best[fid]))
        wid, start, end = where[fid][label_idx]
        yield ClassifyRow(
            path=paths[fid],
            start=float(start),
            end=float(end),
            scores={name: float(best[fid][j]) for j, name in enumerate(names)},
            label=names[label_idx] if len(fired) else None,
            window_id=int(wid),
            file_id=fid,
            fired=[names[j] for j in fired],
            peak_window=int(wid),
            peak_start=float(start),
            peak_end=float(end),
        )


def in_memory_chunks(vectors: np.ndarray, spans: list[tuple[float, float]]) -> list[WindowChunk]:
    """Windows of one file held in memory (classify-file), as a single chunk of file 0."""
    n = len(vectors)
    return [
        WindowChunk(
            ids=np.arange(n, dtype=np.int64),
            file_ids=np.zeros(n, dtype=np.int64),
            starts=np.array([s for s, _ in spans], dtype=np.float64),
            ends=np.array([e for _, e in spans], dtype=np.float64),
            vectors=vectors,
        )
    ]


def label_matrix(prepared: list[PreparedQuery], encoder) -> LabelMatrix:
    """The label set's vectors, each label's phrasings combined, its negatives apart: numpy on the CPU (classify
    needs no torch there), tensors on a GPU."""
    positive = combined_vectors(encoder, [p.texts for p in prepared])
    negatives = [(i, t) for i, p in enumerate(prepared) for t in p.negatives]
    negative = (
        encoder.embed_texts([t for _, t in negatives]) if negatives else np.zeros((0, positive.shape[1]), np.float32)
    )
    device = scoring_device(encoder)
    if device.startswith("cpu"):
        on_device = (np.ascontiguousarray(positive, np.float32), np.ascontiguousarray(negative, np.float32))
    else:
        import torch

        on_device = (torch.from_numpy(positive).to(device), torch.from_numpy(negative).to(device))
    return LabelMatrix(
        labels=[p.as_label() for p in prepared],
        positive=on_device[0],
        negative=on_device[1],
        negative_owner=np.array([i for i, _ in negatives], dtype=np.int64),
        logit_scale=encoder.logit_scale,
    )


def scoring_device(encoder) -> str:
    """Where label vectors and window chunks meet: the encoder's device, decided without torch where it can be."""
    light = getattr(encoder, "scoring_device", None)
    return light() if callable(light) else str(encoder.device)
