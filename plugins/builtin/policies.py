"""Built-in scoring policies: softmax (pipeline parity), multilabel, margin, contrast and archive."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.contract import ArchiveStats, LabelTexts, PolicyOptionError, PolicyResult, ScoringPolicy
from plugins.hookspecs import hookimpl

# soundsift puts these in every policy's options: the --threshold flag and the model's logit scale.
ALWAYS_GIVEN = {"threshold", "logit_scale"}
THRESHOLD_HELP = "fire a label only when its score is at least this: one number, or one per label ({label: value} or a list in label order)"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    # One new array, then in place: at a million windows x 1,000 labels each temporary costs seconds.
    out = np.asarray(logits, dtype=np.float32) - np.max(logits, axis=1, keepdims=True)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings for large |x|."""
    return np.exp(-np.logaddexp(0.0, -x)).astype(np.float32)


def check_options(policy: str, options: Mapping[str, Any], known: Mapping[str, str]) -> None:
    """Refuse option names the policy does not read (a typo would otherwise be ignored silently)."""
    unknown = sorted(set(options) - ALWAYS_GIVEN - set(known))
    if unknown:
        raise PolicyOptionError(f"the {policy} policy has no option {', '.join(map(repr, unknown))}; "
                                f"it reads: {', '.join(sorted(known)) or 'none'}")


def per_label(name: str, value: Any, labels: Sequence[LabelTexts], default: float | np.ndarray) -> np.ndarray:
    """``value`` as one float per label: None (``default``), a number, ``{label: number}`` (others keep
    ``default``) or a list with one number per label, in label order."""
    names = [lt.label for lt in labels]
    out = np.broadcast_to(np.asarray(default, dtype=np.float32), (len(names),)).copy()
    try:
        if value is None:
            return out
        if isinstance(value, Mapping):
            strangers = sorted(set(value) - set(names))
            if strangers:
                raise PolicyOptionError(f"{name} names labels that are not in the label set: {', '.join(map(repr, strangers))}")
            for j, label in enumerate(names):
                if label in value:
                    out[j] = float(value[label])
            return out
        if isinstance(value, Sequence) and not isinstance(value, str):
            if len(value) != len(names):
                raise PolicyOptionError(f"{name} has {len(value)} values for {len(names)} labels")
            return np.array([float(v) for v in value], dtype=np.float32)
        out[:] = float(value)
        return out
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PolicyOptionError):
            raise
        raise PolicyOptionError(f"{name} must be a number, {{label: number}} or a list of numbers, not {value!r}") from None


def number(name: str, value: Any, default: float) -> float:
    """An option that is one number."""
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PolicyOptionError(f"{name} must be a number, not {value!r}") from None


def best_label_fired(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Only each window's best label fires, and only if it reaches its threshold."""
    fired = np.zeros(scores.shape, dtype=bool)
    if scores.shape[1]:
        fired[np.arange(len(scores)), scores.argmax(axis=1)] = True
    return fired & (scores >= thresholds[None, :])


# -- softmax -------------------------------------------------------------------------------------
SOFTMAX_OPTIONS = {"threshold": THRESHOLD_HELP + " (a probability; default none)"}


def score_softmax(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """Softmax over the labels of logit_scale * cosine: what the transformers pipeline returns."""
    check_options("softmax", options, SOFTMAX_OPTIONS)
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
    check_options("multilabel", options, MULTILABEL_OPTIONS)
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
    check_options("margin", options, MARGIN_OPTIONS)
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
    """"X but not Y": each label's logit loses weight * softplus(negative - positive), then softmax over labels.

    A window closer to the label's negative texts than to the label is pushed down by about the gap;
    one much closer to the label loses almost nothing. Labels without negatives (negative logit -inf)
    are unchanged, so with no negatives this equals softmax.
    """
    check_options("contrast", options, CONTRAST_OPTIONS)
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
    check_options("archive", options, ARCHIVE_OPTIONS)
    if stats is None:
        raise ValueError("the archive policy needs archive statistics (ScoringPolicy.needs_archive_stats)")
    z = ((logits - stats.mean[None, :]) / np.maximum(stats.std[None, :], 1e-6)).astype(np.float32)
    thresholds = per_label("threshold", options.get("threshold"), labels, 3.0)
    return PolicyResult(z, z >= thresholds[None, :])


@hookimpl
def register_scoring_policies(register):
    register(ScoringPolicy("softmax", score_softmax, "softmax over labels (transformers pipeline parity)",
                           option_help=SOFTMAX_OPTIONS))
    register(ScoringPolicy("multilabel", score_multilabel, "independent sigmoid per label, per-label thresholds",
                           option_help=MULTILABEL_OPTIONS))
    register(ScoringPolicy("margin", score_margin, "softmax plus confidence = top1 - top2", option_help=MARGIN_OPTIONS))
    register(ScoringPolicy("contrast", score_contrast, "labels with negative texts ('X but not Y') pushed down",
                           option_help=CONTRAST_OPTIONS))
    register(ScoringPolicy("archive", score_archive, "per-label z-scores against the label's distribution over the index",
                           needs_archive_stats=True, option_help=ARCHIVE_OPTIONS))
