"""Built-in scoring policies: softmax (pipeline parity), multilabel, margin, contrast and archive."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.contract import ArchiveStats, LabelTexts, PolicyResult, ScoringPolicy
from plugins.hookspecs import hookimpl


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _argmax_fired(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    fired = np.zeros(scores.shape, dtype=bool)
    if scores.shape[1]:
        fired[np.arange(len(scores)), scores.argmax(axis=1)] = True
    if threshold is not None:
        fired &= scores >= threshold
    return fired


def _per_label(value: Any, labels: Sequence[LabelTexts], default: float) -> np.ndarray:
    """A float, or a mapping label -> float, as one value per label."""
    if isinstance(value, Mapping):
        return np.array([float(value.get(lt.label, default)) for lt in labels], dtype=np.float32)
    return np.full(len(labels), default if value is None else float(value), dtype=np.float32)


def score_softmax(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """Softmax over the labels of logit_scale * cosine: what the transformers pipeline returns."""
    scores = softmax(logits)
    return PolicyResult(scores, _argmax_fired(scores, options.get("threshold")))


def score_multilabel(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """Independent sigmoid per label: sigmoid(logit - logit_scale * center), fired at a per-label threshold.

    ``center`` (default 0.25) is the cosine at which a label scores 0.5; ``logit_scale`` comes with the options.
    """
    center = float(options.get("center", 0.25))
    bias = float(options.get("logit_scale", 100.0)) * center
    scores = (1.0 / (1.0 + np.exp(-(logits - bias)))).astype(np.float32)
    thresholds = _per_label(options.get("thresholds", options.get("threshold")), labels, 0.5)
    return PolicyResult(scores, scores >= thresholds[None, :])


def score_margin(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """Softmax, plus ``confidence`` = best minus second-best probability; fires when confidence >= min_margin."""
    scores = softmax(logits)
    if scores.shape[1] >= 2:
        top2 = np.sort(scores, axis=1)[:, -2:]
        confidence = (top2[:, 1] - top2[:, 0]).astype(np.float32)
    else:
        confidence = scores[:, 0].copy() if scores.shape[1] else np.zeros(len(scores), np.float32)
    fired = _argmax_fired(scores, options.get("threshold"))
    fired &= (confidence >= float(options.get("min_margin", 0.0)))[:, None]
    return PolicyResult(scores, fired, {"confidence": confidence})


def score_contrast(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """"X but not Y": each label's logit loses weight * softplus(negative - positive), then softmax.

    A window closer to the label's negative texts than to the label is pushed down; labels without
    negatives (negative logit -inf) are unchanged, so with no negatives this equals softmax.
    """
    weight = float(options.get("weight", 1.0))
    gap = np.where(np.isfinite(negative_logits), negative_logits - logits, -np.inf)
    penalty = np.where(np.isfinite(gap), np.logaddexp(0.0, gap), 0.0)
    scores = softmax(logits - weight * penalty)
    return PolicyResult(scores, _argmax_fired(scores, options.get("threshold")))


def score_archive(logits, negative_logits, labels, stats: ArchiveStats | None, options) -> PolicyResult:
    """Each label's logits as z-scores against that label's own distribution over the index; fires at z >= threshold (3)."""
    if stats is None:
        raise ValueError("the archive policy needs archive statistics")
    z = ((logits - stats.mean[None, :]) / np.maximum(stats.std[None, :], 1e-6)).astype(np.float32)
    threshold = options.get("threshold")
    return PolicyResult(z, z >= (3.0 if threshold is None else float(threshold)))


@hookimpl
def register_scoring_policies(register):
    register(ScoringPolicy("softmax", score_softmax, "softmax over labels (transformers pipeline parity)"))
    register(ScoringPolicy("multilabel", score_multilabel, "independent sigmoid per label, per-label thresholds"))
    register(ScoringPolicy("margin", score_margin, "softmax plus confidence = top1 - top2"))
    register(ScoringPolicy("contrast", score_contrast, "labels with negative texts ('X but not Y') pushed down"))
    register(ScoringPolicy("archive", score_archive, "per-label z-scores against the label's distribution over the index",
                           needs_archive_stats=True))
