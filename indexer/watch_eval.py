"""A watch compiled to plain numbers, and its evaluation on a block of unit window vectors with numpy.

Three kinds, all scorers of the window matrix:
- ``query``: one unit text vector; a window matches when its cosine (search's score, -1..1) >= ``min_score``;
- ``labels``: label text vectors (and negatives), a logit scale and a scoring policy (a plugin) with its
  options; a window matches when the policy's probability of label ``label_index`` >= ``threshold``;
- ``probe``: a trained W (classes x dim) and b over the same vectors; probabilities by softmax (sigmoid for
  a single row); a window matches when class ``label_index``'s probability >= ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plugins.contract import ArchiveStats, LabelTexts


@dataclass
class CompiledWatch:
    """What evaluation needs, as stored with the watch."""

    kind: str
    matrix: np.ndarray  # query: (1, dim); labels: (L + M, dim) positives then negatives; probe: W (classes, dim)
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # probe: b (classes,)
    threshold: float = 0.0  # query: min cosine; others: min probability
    label_index: int = 0
    label: str | None = None  # the query text, the label or the class: what an alert says matched
    logit_scale: float = 1.0
    policy: str = "softmax"
    policy_options: dict = field(default_factory=dict)
    labels: list[list] = field(default_factory=list)  # [label, [texts], [negatives]] per label
    negative_owner: list[int] = field(default_factory=list)
    stats_mean: list[float] | None = None  # archive statistics for policies that need them
    stats_std: list[float] | None = None
    stats_count: int = 0
    filter_sql: str | None = None  # a condition over w (windows) and f (files), or None
    filter_params: dict = field(default_factory=dict)

    def scalars(self) -> dict[str, Any]:
        """Everything but the arrays and the filter, as JSON-ready data."""
        return {
            "kind": self.kind,
            "dim": int(self.matrix.shape[1]) if self.matrix.ndim == 2 else 0,
            "threshold": self.threshold,
            "label_index": self.label_index,
            "label": self.label,
            "logit_scale": self.logit_scale,
            "policy": self.policy,
            "policy_options": self.policy_options,
            "labels": self.labels,
            "negative_owner": self.negative_owner,
            "stats_mean": self.stats_mean,
            "stats_std": self.stats_std,
            "stats_count": self.stats_count,
        }

    @classmethod
    def of(
        cls, scalars: dict, matrix: np.ndarray, bias: np.ndarray, filter_sql: str | None, filter_params: dict
    ) -> "CompiledWatch":
        keep = {k: v for k, v in scalars.items() if k != "dim"}
        return cls(matrix=matrix, bias=bias, filter_sql=filter_sql, filter_params=filter_params, **keep)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def label_scores(
    rule: CompiledWatch, vectors: np.ndarray, policies: dict | None = None, product: np.ndarray | None = None
) -> np.ndarray:
    """(n, labels) probabilities of a labels watch through its scoring policy (``product``: vectors @ matrix.T)."""
    if policies is None:
        from plugins.manager import default_plugins

        policies = default_plugins().policies
    n_labels = len(rule.labels)
    cos = vectors @ rule.matrix.T if product is None else product
    logits = (rule.logit_scale * cos[:, :n_labels]).astype(np.float32)
    neg = np.full(logits.shape, -np.inf, dtype=np.float32)
    if cos.shape[1] > n_labels:
        owner = np.asarray(rule.negative_owner, dtype=np.int64)
        neg_all = rule.logit_scale * cos[:, n_labels:]
        for j in range(n_labels):
            cols = np.flatnonzero(owner == j)
            if len(cols):
                neg[:, j] = neg_all[:, cols].max(axis=1)
    labels = [LabelTexts(lt[0], tuple(lt[1]), tuple(lt[2])) for lt in rule.labels]
    stats = None
    if rule.stats_mean is not None:
        stats = ArchiveStats(
            np.asarray(rule.stats_mean, np.float32), np.asarray(rule.stats_std, np.float32), rule.stats_count
        )
    result = policies[rule.policy].score(logits, neg, labels, stats, dict(rule.policy_options))
    return np.asarray(result.scores, dtype=np.float32)


def _scores(rule: CompiledWatch, vectors: np.ndarray, product: np.ndarray, policies: dict | None) -> np.ndarray:
    if rule.kind == "query":
        return product[:, 0]
    if rule.kind == "labels":
        return label_scores(rule, vectors, policies, product)[:, rule.label_index]
    if rule.kind == "probe":
        logits = product + rule.bias[None, :]
        if logits.shape[1] == 1:
            return 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return _softmax(logits)[:, rule.label_index]
    raise ValueError(f"unknown watch kind {rule.kind!r}")


def evaluate(rule: CompiledWatch, vectors: np.ndarray, policies: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(matches, scores) of a watch on (n, dim) unit vectors: a bool mask and each window's score."""
    return evaluate_all([rule], vectors, policies)[0]


def evaluate_all(
    rules: list[CompiledWatch], vectors: np.ndarray, policies: dict | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`evaluate` for many watches at once: one matrix product of the windows with every watch's rows
    (a hundred matrix-vector products cost 30 times one product of the same size), then each watch's own step."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if not len(v) or not rules:
        return [(np.zeros(len(v), bool), np.zeros(len(v), np.float32)) for _ in rules]
    stacked = np.concatenate([r.matrix for r in rules]).astype(np.float32, copy=False)
    product = v @ stacked.T
    out, at = [], 0
    for r in rules:
        rows = len(r.matrix)
        scores = np.asarray(_scores(r, v, product[:, at : at + rows], policies), dtype=np.float32)
        at += rows
        out.append((scores >= np.float32(r.threshold), scores))
    return out
