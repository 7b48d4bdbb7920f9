"""Built-in scoring policies: softmax (pipeline parity), multilabel, margin, contrast and archive."""

from __future__ import annotations

import numpy as np

from soundsift import ALWAYS_GIVEN_OPTIONS as ALWAYS_GIVEN
from soundsift import (
    ArchiveStats,
    PolicyResult,
    ScoringPolicy,
    best_label_fired,
    check_options,
    hookimpl,
    number,
    per_label,
    sigmoid,
    softmax,
)

__all__ = [
    "ALWAYS_GIVEN",
    "best_label_fired",
    "check_options",
    "number",
    "per_label",
    "register_scoring_policies",
    "sigmoid",
    "softmax",
]

THRESHOLD_HELP = "fire a label only when its score is at least this: one number, or one per label ({label: value} or a list in label order)"


# -- softmax -------------------------------------------------------------------------------------
SOFTMAX_OPTIONS = {"threshold": THRESHOLD_HELP + " (a probability; default none)"}


def score_softmax(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """Softmax over the labels of logit_scale * cosine: what the transformers pipeline returns."""
    scores = softmax(logits)
    thresholds = per_label("threshold", options.get("threshold"), labels, -np.inf)
    return PolicyResult(scores, best_label_fired(scores, thresholds))


# -- multilabel ----------------------------------------------------------------------------------
MULTILABEL_OPTIONS = {
    "center": "the cosine similarity at which a label scores 0.5: one number or one per label (default 0.25)",
    "threshold": THRESHOLD_HELP + " (default 0.5)",
    "thresholds": "per-label thresholds ({label: value} or a list) that override threshold for the labels they name",
}


def score_multilabel(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """Independent sigmoid per label, sigmoid(logit - logit_scale * center); every label at its threshold fires.

    Labels do not compete: one window may fire several labels, or none.
    """
    logit_scale = number("logit_scale", options.get("logit_scale"), 100.0)
    center = per_label("center", options.get("center"), labels, 0.25)
    scores = sigmoid(logits - logit_scale * center[None, :])
    base = per_label("threshold", options.get("threshold"), labels, 0.5)
    thresholds = per_label("thresholds", options.get("thresholds"), labels, base)
    return PolicyResult(scores, scores >= thresholds[None, :])


# -- margin --------------------------------------------------------------------------------------
MARGIN_OPTIONS = {
    "min_margin": "fire the best label only when confidence (best minus second-best probability) is at least this (default 0)",
    "threshold": THRESHOLD_HELP + " (a probability; default none)",
}


def score_margin(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """Softmax, plus ``confidence`` = best minus second-best probability; the best label fires when confidence >= min_margin."""
    scores = softmax(logits)
    if scores.shape[1] >= 2:
        top2 = np.sort(scores, axis=1)[:, -2:]
        confidence = (top2[:, 1] - top2[:, 0]).astype(np.float32)
    else:  # one label: nothing to be confused with
        confidence = np.ones(len(scores), np.float32) if scores.shape[1] else np.zeros(len(scores), np.float32)
    fired = best_label_fired(scores, per_label("threshold", options.get("threshold"), labels, -np.inf))
    fired &= (confidence >= number("min_margin", options.get("min_margin"), 0.0))[:, None]
    return PolicyResult(scores, fired, {"confidence": confidence})


# -- contrast ------------------------------------------------------------------------------------
CONTRAST_OPTIONS = {
    "weight": "how hard a label's negative texts push it down: one number or one per label (default 1)",
    "threshold": THRESHOLD_HELP + " (a probability; default none)",
}


def score_contrast(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """ "X but not Y": each label's logit loses weight * softplus(negative - positive), then softmax over labels.

    A window closer to the label's negative texts than to the label is pushed down by about the gap;
    one much closer to the label loses almost nothing. Labels without negatives (negative logit -inf)
    are unchanged, so with no negatives this equals softmax.
    """
    weight = per_label("weight", options.get("weight"), labels, 1.0)
    penalty = np.logaddexp(0.0, negative_logits - logits)  # softplus; exactly 0 where the negative is -inf
    scores = softmax(logits - weight[None, :] * penalty)
    thresholds = per_label("threshold", options.get("threshold"), labels, -np.inf)
    return PolicyResult(scores, best_label_fired(scores, thresholds))


# -- archive -------------------------------------------------------------------------------------
ARCHIVE_OPTIONS = {"threshold": THRESHOLD_HELP + " (a z-score; default 3)"}


def score_archive(logits, negative_logits, labels, stats: ArchiveStats | None, options) -> PolicyResult:
    """Each label's logits as z-scores against that label's own distribution over the index; fires at z >= threshold.

    Labels do not compete: a window fires every label it matches unusually well for this archive.
    """
    if stats is None:
        raise ValueError("the archive policy needs archive statistics (ScoringPolicy.needs_archive_stats)")
    z = ((logits - stats.mean[None, :]) / np.maximum(stats.std[None, :], 1e-6)).astype(np.float32)
    thresholds = per_label("threshold", options.get("threshold"), labels, 3.0)
    return PolicyResult(z, z >= thresholds[None, :])


@hookimpl
def register_scoring_policies(register):
    register(
        ScoringPolicy(
            "softmax", score_softmax, "softmax over labels (transformers pipeline parity)", option_help=SOFTMAX_OPTIONS
        )
    )
    register(
        ScoringPolicy(
            "multilabel",
            score_multilabel,
            "independent sigmoid per label, per-label thresholds",
            option_help=MULTILABEL_OPTIONS,
        )
    )
    register(ScoringPolicy("margin", score_margin, "softmax plus confidence = top1 - top2", option_help=MARGIN_OPTIONS))
    register(
        ScoringPolicy(
            "contrast",
            score_contrast,
            "labels with negative texts ('X but not Y') pushed down",
            option_help=CONTRAST_OPTIONS,
        )
    )
    register(
        ScoringPolicy(
            "archive",
            score_archive,
            "per-label z-scores against the label's distribution over the index",
            needs_archive_stats=True,
            option_help=ARCHIVE_OPTIONS,
        )
    )
