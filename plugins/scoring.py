"""Helpers for scoring policies, public for plugin authors (``from soundsift import softmax, per_label, ...``).

``per_label`` and ``number`` read option values and raise `PolicyOptionError` with the option's name;
``softmax``, ``sigmoid`` and ``best_label_fired`` are the arithmetic the built-in policies share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.contract import LabelTexts, PolicyOptionError

__all__ = ["best_label_fired", "number", "per_label", "sigmoid", "softmax"]


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
                raise PolicyOptionError(
                    f"{name} names labels that are not in the label set: {', '.join(map(repr, strangers))}"
                )
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
        raise PolicyOptionError(
            f"{name} must be a number, {{label: number}} or a list of numbers, not {value!r}"
        ) from None


def number(name: str, value: Any, default: float) -> float:
    """An option that is one number (``default`` when None)."""
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
