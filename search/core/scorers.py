"""Scorers: anything that turns unit window vectors into one logit per class, scored through the scoring policies.

A scorer has ``classes`` (its column order) and ``logits(vectors)``: (n, d) float32 unit vectors in,
(n, len(classes)) float32 logits out. A label set is one (`LabelSetScorer`: text vectors x the model's logit
scale, what `classify` computes); a trained probe is another. Classification, evaluation and the file
aggregation take any scorer; a scorer may also offer, when it has them:

- ``labels``: the `LabelTexts` the policies see (default: each class as its own text),
- ``logits_with_negatives(vectors)``: (logits, negative logits) for the contrast policy (default: no negatives),
- ``logit_scale``: the scale the multilabel policy's ``center`` is measured in (default 1.0).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from plugins.contract import ArchiveStats, LabelTexts, PolicyResult, ScoringPolicy
from search.core.half_products import HalfProducts

if TYPE_CHECKING:  # torch is imported where a label set is put on a device
    import torch

    from indexer.teach_store import ProbeRecord


@runtime_checkable
class Scorer(Protocol):
    """Unit vectors in, one logit per class out."""

    @property
    def classes(self) -> list[str]: ...

    def logits(self, vectors: np.ndarray) -> np.ndarray: ...


def scorer_labels(scorer: Scorer) -> list[LabelTexts]:
    """The labels a policy is given: the scorer's own `LabelTexts` when it has them, else one per class."""
    labels = getattr(scorer, "labels", None)
    if labels is not None and all(isinstance(lt, LabelTexts) for lt in labels):
        return list(labels)
    return [LabelTexts(c, (c,), ()) for c in scorer.classes]


def scorer_logit_scale(scorer: Scorer) -> float:
    """The scale the scorer's logits are in (1.0 for a scorer that names none)."""
    return float(getattr(scorer, "logit_scale", 1.0))


def scorer_logits(scorer: Scorer, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, negative logits), both (n, classes); negatives are -inf for a scorer without any."""
    both = getattr(scorer, "logits_with_negatives", None)
    if both is not None:
        return both(vectors)
    logits = np.asarray(scorer.logits(vectors), dtype=np.float32)
    return logits, np.broadcast_to(np.float32(-np.inf), logits.shape)


def policy_options_for(scorer: Scorer, threshold: Any, options: dict) -> dict:
    """The options a policy is called with: threshold and the scorer's logit scale, then the user's options."""
    return {"threshold": threshold, "logit_scale": scorer_logit_scale(scorer), **options}


def score_vectors(
    scorer: Scorer,
    vectors: np.ndarray,
    policy: ScoringPolicy,
    policy_options: dict,
    stats: ArchiveStats | None = None,
) -> PolicyResult:
    """One policy over one block of vectors: the scorer's logits, then ``policy.score``."""
    logits, negative = scorer_logits(scorer, vectors)
    return policy.score(logits, negative, scorer_labels(scorer), stats, policy_options)


@dataclass
class LabelSetScorer:
    """A label set on the device: positive text vectors (L, dim), negatives (M, dim) with the label each belongs
    to, and the model's logit scale; logits = logit_scale x cosine (what the transformers pipeline computes)."""

    labels: list[LabelTexts]
    positive: np.ndarray | torch.Tensor  # numpy on the CPU (no torch imported: a reader classifies without it)
    negative: np.ndarray | torch.Tensor
    negative_owner: np.ndarray  # (M,) label index
    logit_scale: float
    scratch: torch.Tensor | None = field(default=None, repr=False)  # float32 chunk buffer on the CPU device, reused
    host_products: HalfProducts = field(default_factory=HalfProducts, repr=False)
    _both: np.ndarray | None = field(default=None, repr=False)  # positive then negative texts, for one product

    @property
    def classes(self) -> list[str]:
        """The label names, in column order."""
        return [lt.label for lt in self.labels]

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        """(n, L) float32: logit_scale x cosine of each vector with each label's text vector."""
        if self.on_host:
            assert isinstance(self.positive, np.ndarray)
            return self.logit_scale * self.host_products(vectors, self.positive)
        return self._scaled(self._on_device(vectors), self.positive)

    def logits_with_negatives(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, negative logits), both (n, L); a negative is the max over the label's "but not" texts, -inf if none."""
        if not len(self.negative_owner):
            logits = self.logits(vectors)
            return logits, np.broadcast_to(np.float32(-np.inf), logits.shape)  # read-only, no memory per chunk
        width = len(self.labels)
        if self.on_host:  # one pass over the chunk for the label and the "but not" texts together
            both = self.logit_scale * self.host_products(vectors, self._host_texts())
            logits, neg_all = both[:, :width], both[:, width:]
        else:
            v = self._on_device(vectors)
            logits, neg_all = self._scaled(v, self.positive), self._scaled(v, self.negative)
        negative = np.full(logits.shape, -np.inf, dtype=np.float32)
        for j in range(width):
            cols = np.flatnonzero(self.negative_owner == j)
            if len(cols):
                negative[:, j] = neg_all[:, cols].max(axis=1)
        return logits, negative

    @property
    def on_host(self) -> bool:
        """True when the text vectors are numpy arrays (the CPU: scoring imports no torch)."""
        return isinstance(self.positive, np.ndarray)

    def _host_texts(self) -> np.ndarray:
        if self._both is None:
            self._both = np.concatenate([as_numpy(self.positive), as_numpy(self.negative)]).astype(np.float32)
        return self._both

    def _scaled(self, v, texts) -> np.ndarray:
        return (self.logit_scale * (v @ texts.T)).cpu().numpy()

    def _on_device(self, vectors: np.ndarray) -> torch.Tensor:
        """A chunk as float32 on the labels' device. float16 chunks (the memory-mapped matrix) travel as they are
        and widen there; on the CPU they widen into a buffer reused from chunk to chunk (no fresh pages per chunk)."""
        import warnings

        import torch

        assert isinstance(self.positive, torch.Tensor)  # numpy text vectors take host_products
        device = self.positive.device
        v = (
            np.ascontiguousarray(vectors)
            if vectors.dtype in (np.float16, np.float32)
            else np.ascontiguousarray(vectors, np.float32)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a read-only memory map: torch only reads it
            host = torch.from_numpy(v)
        if device.type == "cuda":
            return host.pin_memory().to(device, non_blocking=True).float()
        if host.dtype == torch.float32:
            return host
        n, dim = host.shape
        if not isinstance(self.scratch, torch.Tensor) or self.scratch.shape[0] < n or self.scratch.shape[1] != dim:
            self.scratch = torch.empty((n, dim), dtype=torch.float32)
        out = self.scratch[:n]
        assert isinstance(out, torch.Tensor)
        out.copy_(host)
        return out


def as_numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """A label set's vectors as a host numpy array, whichever side they live on."""
    if isinstance(values, np.ndarray):
        return values
    return values.detach().cpu().numpy()


@dataclass
class FileScores:
    """Per file (clip) of one block: each class's max score over its windows, the window where it peaks, and
    whether the policy fired the class in any window. Rows follow ``file_ids`` (sorted)."""

    file_ids: np.ndarray  # (F,) int64
    scores: np.ndarray  # (F, L) float32
    peak: np.ndarray  # (F, L) int64: row (in the block given) of the window where each class peaks
    fired: np.ndarray  # (F, L) bool


def aggregate_files(result: PolicyResult, file_ids: np.ndarray) -> FileScores:
    """The file aggregation of `classify --by file` and `classify-file`: a class's file score is its best window's.

    Ties go to the earlier window. Vectorised over the block (one reduce per segment of a file's windows).
    """
    file_ids = np.asarray(file_ids, dtype=np.int64)
    n, width = result.scores.shape
    if n == 0:
        return FileScores(
            np.zeros(0, np.int64),
            np.zeros((0, width), np.float32),
            np.zeros((0, width), np.int64),
            np.zeros((0, width), bool),
        )
    order = np.argsort(file_ids, kind="stable")
    ids = file_ids[order]
    scores = np.asarray(result.scores, dtype=np.float32)[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    peak = np.maximum.reduceat(scores, starts, axis=0)
    segment = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    rows = np.where(scores == peak[segment], order[:, None], n)  # the first window (in block order) at the max
    arg = np.minimum.reduceat(rows, starts, axis=0)
    fired = np.logical_or.reduceat(np.asarray(result.fired, dtype=bool)[order], starts, axis=0)
    return FileScores(ids[starts], peak, arg.astype(np.int64), fired)


class ProbeScorer:
    """A stored probe as a scorer of window vectors: ``classes`` and ``logits(vectors) -> (n, len(classes))``."""

    def __init__(self, record: "ProbeRecord"):
        self.record = record
        self.name = record.name
        self.classes: list[str] = list(record.classes)
        self.weights = np.ascontiguousarray(record.weights, np.float32)
        self.bias = np.ascontiguousarray(record.bias, np.float32)
        self.labels = [LabelTexts(c, (f"probe {record.name}",)) for c in self.classes]
        self.logit_scale = 1.0  # the logits are the classifier's own; no cosine scale applies
        self._products = HalfProducts()

    @property
    def key(self) -> str:
        """A short key for this probe's weights (archive statistics are cached by it)."""
        digest = hashlib.sha256(self.weights.tobytes())
        digest.update(self.bias.tobytes())
        return digest.hexdigest()

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        """(n, classes) float32 logits of a chunk of vectors (float16 or float32): one matrix product, no torch."""
        return self._products(vectors, self.weights) + self.bias

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """softmax of the logits: the classifier's predict_proba."""
        z = self.logits(vectors)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def class_index(self, cls: str) -> int:
        """The column of ``cls`` (case-insensitive); BadInput naming the probe's classes otherwise."""
        from indexer.errors import BadInput

        for i, c in enumerate(self.classes):
            if c.lower() == cls.strip().lower():
                return i
        raise BadInput(f"probe {self.name} has no class {cls!r}; its classes: {', '.join(self.classes)}")
