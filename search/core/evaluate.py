"""Evaluate scorers on a labelled sample: accuracy, F1, AP, the confusion matrix, calibration, thresholds from
data, variants side by side and the retrieval view. Every metric comes from scikit-learn.

A clip is scored the way `classify-file` scores a file: its windows through the scorer's logits and the policy,
then the file aggregation (each class's best window, `search.core.scorers.aggregate_files`). Clips are embedded
once (`search.core.eval_clips`); every variant and policy re-scores the same vectors. Any scorer works
(`search.core.scorers.Scorer`): a label set, or a trained probe.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

from indexer.errors import BadInput
from plugins.contract import ScoringPolicy
from search.core.eval_clips import EmbeddedSample
from search.core.scorers import Scorer, aggregate_files, policy_options_for, score_vectors, scorer_logits

CALIBRATION_BINS = 10
CHUNK_WINDOWS = 65_536
RECALL_AT = (1, 5, 10)


# -- the report (the JSON contract) ----------------------------------------------------------------
class PerLabel(BaseModel):
    label: str
    text: str
    precision: float
    recall: float
    f1: float
    ap: float | None = Field(description="average precision of the label's score; None without examples")
    support: int
    threshold: float | None = Field(
        description="the score threshold that maximises F1 (or reaches --target-precision with the highest recall)"
    )


class Confusion(BaseModel):
    labels: list[str]
    matrix: list[list[int]] = Field(description="labels x labels: rows true, columns predicted")


class CalibrationBin(BaseModel):
    lo: float
    hi: float
    count: int
    confidence: float | None
    accuracy: float | None


class Calibration(BaseModel):
    bins: list[CalibrationBin]
    ece: float | None = Field(description="expected calibration error: the count-weighted |accuracy - confidence|")


class Misclassified(BaseModel):
    path: str
    start: float
    end: float | None = Field(description="where the clip's audio ends, seconds")
    label: str = Field(description="the true label (labels joined with ';' for a multi-label clip)")
    predicted: str | None
    score: float


class VariantResult(BaseModel):
    name: str
    template: str
    policy: str
    texts: dict[str, str]
    accuracy: float
    top5_accuracy: float
    macro_f1: float
    micro_f1: float
    map: float | None
    rank: int = 0


class RetrievalLabel(BaseModel):
    label: str
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    ap: float


class Retrieval(BaseModel):
    recall_at_1: float | None
    recall_at_5: float | None
    recall_at_10: float | None
    map: float | None
    per_label: list[RetrievalLabel]


class Skipped(BaseModel):
    where: str
    reason: str


class EvalReport(BaseModel):
    """What `soundsift eval` reports (its --json document; the HTML report and the Evaluate tab draw it)."""

    sample: str
    layout: str
    multilabel: bool
    clips: int = Field(description="clips scored")
    labels: list[str]
    texts: list[str] = Field(default_factory=list, description="the text embedded for each label (before the template)")
    template: str | None = None
    policy: str
    variant: str = Field("", description="the variant the metrics are of (the best-ranked)")
    accuracy: float
    top5_accuracy: float
    macro_f1: float
    micro_f1: float
    map: float | None
    per_label: list[PerLabel]
    confusion: Confusion
    calibration: Calibration
    variants: list[VariantResult]
    misclassified: list[Misclassified]
    retrieval: Retrieval | None = None
    pr_curves: dict[str, list[list[float]]] = Field(
        default_factory=dict, description="per label: [[recall, precision], ...] points of its precision-recall curve"
    )
    classes_without_label: list[str] = Field(default_factory=list)
    labels_without_examples: list[str] = Field(default_factory=list)
    unlabelled_clips: int = Field(0, description="clips whose classes have no label (not scored)")
    skipped: list[Skipped] = Field(default_factory=list)
    embedded_windows: int = 0
    cached_clips: int = 0


# -- variants -----------------------------------------------------------------------------------------
@dataclass
class Variant:
    """One way of scoring: a scorer (its classes are the report's labels, in order) and a policy."""

    name: str
    scorer: Scorer
    policy: ScoringPolicy
    policy_name: str
    policy_options: dict = field(default_factory=dict)
    template: str = ""
    texts: dict[str, str] = field(default_factory=dict)


@dataclass
class Truth:
    """The sample's answers in the labels' column order: ``rows`` of the embedded clips that are scored."""

    labels: list[str]
    rows: np.ndarray  # (n,) index into the embedded clips
    matrix: np.ndarray  # (n, L) bool
    multilabel: bool
    classes_without_label: list[str]
    labels_without_examples: list[str]

    @property
    def single(self) -> np.ndarray:
        """(n,) the true label index of each clip (single-label samples)."""
        return self.matrix.argmax(axis=1)


def check_label_map(labels: list[str], classes: list[str]) -> None:
    """BadInput when no label names a class of the sample (a label set that maps nothing)."""
    if not set(labels) & set(classes):
        raise BadInput(
            f"the labels ({', '.join(labels[:8])}) map none of the sample's classes ({', '.join(classes[:8])}); "
            "name the classes, or map them: --labels 'dog=\"dog barking\", bearing=轴承异响'"
        )


def truth_for(embedded: EmbeddedSample, labels: list[str]) -> Truth:
    """Which clip carries which label; a sample class without a label and a label without examples are listed."""
    index = {name: j for j, name in enumerate(labels)}
    classes = sorted({c for clip in embedded.clips for c in clip.labels})
    rows, marks = [], []
    for i, clip in enumerate(embedded.clips):
        hit = [index[c] for c in clip.labels if c in index]
        if hit:
            rows.append(i)
            marks.append(hit)
    if not rows:
        check_label_map(labels, classes)
    matrix = np.zeros((len(rows), len(labels)), bool)
    for r, hit in enumerate(marks):
        matrix[r, hit] = True
    return Truth(
        labels=list(labels),
        rows=np.asarray(rows, np.int64),
        matrix=matrix,
        multilabel=any(len(clip.labels) > 1 for clip in embedded.clips),
        classes_without_label=[c for c in classes if c not in index],
        labels_without_examples=[name for j, name in enumerate(labels) if not matrix[:, j].any()],
    )


def clip_scores(embedded: EmbeddedSample, variant: Variant) -> tuple[np.ndarray, np.ndarray]:
    """(scores, fired), both (clips, L): each clip's file row as `classify-file` gives it (best window per label)."""
    n_clips, width = len(embedded.clips), len(variant.scorer.classes)
    scores = np.full((n_clips, width), -np.inf, np.float32)
    fired = np.zeros((n_clips, width), bool)
    options = policy_options_for(variant.scorer, variant.policy_options.get("threshold"), variant.policy_options)
    for lo in range(0, len(embedded.vectors), CHUNK_WINDOWS):  # a clip's windows may straddle chunks: max again
        hi = min(lo + CHUNK_WINDOWS, len(embedded.vectors))
        result = score_vectors(variant.scorer, embedded.vectors[lo:hi], variant.policy, options)
        files = aggregate_files(result, embedded.clip_of_window[lo:hi])
        scores[files.file_ids] = np.maximum(scores[files.file_ids], files.scores)
        fired[files.file_ids] |= files.fired
    return scores, fired


def clip_cosines(embedded: EmbeddedSample, scorer: Scorer) -> np.ndarray:
    """(clips, L): each clip's best window logit per label, before any policy (how `search` ranks windows)."""
    n_clips, width = len(embedded.clips), len(scorer.classes)
    out = np.full((n_clips, width), -np.inf, np.float32)
    logits, _ = scorer_logits(scorer, embedded.vectors)
    np.maximum.at(out, embedded.clip_of_window, logits)
    return out


# -- metrics -------------------------------------------------------------------------------------------
def best_threshold(y: np.ndarray, score: np.ndarray, target_precision: float | None = None) -> float | None:
    """The score threshold that maximises F1 for one label, or with ``target_precision`` the one reaching that
    precision with the highest recall (None when no threshold reaches it, or the label has no examples)."""
    from sklearn.metrics import precision_recall_curve

    if not y.any():
        return None
    precision, recall, cuts = precision_recall_curve(y, score)
    return threshold_on_curve(precision, recall, cuts, target_precision)


def threshold_on_curve(
    precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray, target_precision: float | None = None
) -> float | None:
    """`best_threshold` read off a precision_recall_curve (its three arrays)."""
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    if target_precision is not None:
        ok = np.flatnonzero(precision >= target_precision)
        if not len(ok):
            return None
        best = ok[np.lexsort((-thresholds[ok], -recall[ok]))[0]]  # highest recall, then the higher threshold
        return float(thresholds[best])
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(thresholds[int(np.argmax(f1))])


def label_curves(
    truth: Truth, scores: np.ndarray, target_precision: float | None, points: int = 200
) -> tuple[list[float | None], dict[str, list[list[float]]]]:
    """Per label, from one precision_recall_curve each: the threshold (`best_threshold`) and up to ``points``
    [recall, precision] points of the curve (none for a label without examples)."""
    from sklearn.metrics import precision_recall_curve

    thresholds: list[float | None] = []
    curves: dict[str, list[list[float]]] = {}
    for j, name in enumerate(truth.labels):
        y = truth.matrix[:, j]
        if not y.any():
            thresholds.append(None)
            curves[name] = []
            continue
        precision, recall, cuts = precision_recall_curve(y, scores[:, j])
        thresholds.append(threshold_on_curve(precision, recall, cuts, target_precision))
        pick = np.unique(np.linspace(0, len(recall) - 1, min(points, len(recall))).round().astype(int))
        curves[name] = [[round(float(recall[i]), 6), round(float(precision[i]), 6)] for i in pick]
    return thresholds, curves


def _top_k(truth: Truth, scores: np.ndarray, k: int) -> float:
    """Share of clips with a true label among their ``k`` best-scored labels (top_k_accuracy_score when single-label)."""
    from sklearn.metrics import top_k_accuracy_score

    width = scores.shape[1]
    if k >= width:
        return 1.0
    if not truth.multilabel and width > 2:
        return float(top_k_accuracy_score(truth.single, scores, k=k, labels=np.arange(width)))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([truth.matrix[i, top[i]].any() for i in range(len(top))]))


def summary_metrics(truth: Truth, scores: np.ndarray, predicted: np.ndarray) -> dict:
    """accuracy, top5_accuracy, macro_f1, micro_f1, map (and ``ap`` per label) of one variant. ``predicted``: (n,) top-1 label
    indexes (single-label) or (n, L) decisions at the thresholds (multi-label). Macro averages run over the labels
    that have examples."""
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score

    supported = np.flatnonzero(truth.matrix.any(axis=0))
    top1 = scores.argmax(axis=1)
    if truth.multilabel:
        accuracy = float(np.mean(truth.matrix[np.arange(len(top1)), top1]))
        macro = f1_score(truth.matrix[:, supported], predicted[:, supported], average="macro", zero_division=0)
        micro = f1_score(truth.matrix, predicted, average="micro", zero_division=0)
    else:
        y = truth.single
        accuracy = float(accuracy_score(y, top1))
        macro = f1_score(y, top1, labels=supported, average="macro", zero_division=0)
        micro = f1_score(y, top1, labels=np.arange(scores.shape[1]), average="micro", zero_division=0)
    ap = np.atleast_1d(average_precision_score(truth.matrix[:, supported], scores[:, supported], average=None))
    per_label: list[float | None] = [None] * scores.shape[1]
    for j, value in zip(supported.tolist(), ap):
        per_label[j] = float(value)
    return {
        "accuracy": accuracy,
        "top5_accuracy": _top_k(truth, scores, 5),
        "macro_f1": float(macro),
        "micro_f1": float(micro),
        "map": float(np.mean(ap)) if len(supported) else None,
        "ap": per_label,
    }


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Calibration:
    """Reliability bins (sklearn's calibration_curve, uniform bins) and the expected calibration error. Scores
    outside [0, 1] (a policy whose scores are not probabilities) have no calibration."""
    from sklearn.calibration import calibration_curve

    confidence = np.asarray(confidence, np.float64).ravel()
    correct = np.asarray(correct, bool).ravel()
    if not len(confidence) or confidence.min() < 0.0 or confidence.max() > 1.0:
        return Calibration(bins=[], ece=None)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence)  # the binning calibration_curve uses
    counts = np.bincount(which, minlength=bins)
    if correct.all() or not correct.any():  # calibration_curve needs both classes; the curve is then plain
        prob_true = np.full(int((counts > 0).sum()), float(correct.all()))
        prob_pred = (np.bincount(which, weights=confidence, minlength=bins)[counts > 0]) / counts[counts > 0]
    else:
        prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    out, k = [], 0
    ece = 0.0
    for b in range(bins):
        if counts[b]:
            acc, conf = float(prob_true[k]), float(prob_pred[k])
            ece += counts[b] / len(confidence) * abs(acc - conf)
            k += 1
            out.append(
                CalibrationBin(lo=edges[b], hi=edges[b + 1], count=int(counts[b]), confidence=conf, accuracy=acc)
            )
        else:
            out.append(CalibrationBin(lo=edges[b], hi=edges[b + 1], count=0, confidence=None, accuracy=None))
    return Calibration(bins=out, ece=float(ece))


def retrieval_view(truth: Truth, cosines: np.ndarray) -> Retrieval:
    """Each label as a query over the sample's clips (ranked by their best window, as `search` ranks): recall at
    1, 5 and 10 and average precision (scikit-learn), averaged over the labels with examples."""
    from sklearn.metrics import average_precision_score

    supported = np.flatnonzero(truth.matrix.any(axis=0))
    ap = np.atleast_1d(average_precision_score(truth.matrix[:, supported], cosines[:, supported], average=None))
    per = []
    for j, value in zip(supported.tolist(), ap):
        y = truth.matrix[:, j]
        order = np.argsort(-cosines[:, j], kind="stable")
        hits = np.cumsum(y[order])
        at = {k: float(hits[min(k, len(hits)) - 1] / y.sum()) for k in RECALL_AT}
        per.append(
            RetrievalLabel(
                label=truth.labels[j], recall_at_1=at[1], recall_at_5=at[5], recall_at_10=at[10], ap=float(value)
            )
        )

    def mean(name: str) -> float | None:
        return float(np.mean([getattr(p, name) for p in per])) if per else None

    return Retrieval(
        recall_at_1=mean("recall_at_1"),
        recall_at_5=mean("recall_at_5"),
        recall_at_10=mean("recall_at_10"),
        map=mean("ap"),
        per_label=per,
    )


# -- the evaluation -------------------------------------------------------------------------------------
def evaluate(
    embedded: EmbeddedSample,
    variants: list[Variant],
    *,
    source: str = "",
    layout: str = "",
    target_precision: float | None = None,
) -> EvalReport:
    """Score every variant on the same clip vectors, rank them (macro-F1; mAP for multi-label), and report the
    best in full: per-label metrics and thresholds, confusion matrix, calibration, misclassified clips, the
    precision-recall curves and the retrieval view. All variants' scorers must have the same classes."""
    if not variants:
        raise BadInput("nothing to evaluate: no label set given")
    if not len(embedded.clips):
        why = "; ".join(f"{s.where}: {s.reason}" for s in embedded.skipped[:3])
        raise BadInput("no clip of the sample could be scored" + (f" ({why})" if why else ""))
    labels = list(variants[0].scorer.classes)
    truth = truth_for(embedded, labels)
    results = []
    scored: list[tuple[np.ndarray, list[float | None]]] = []  # (clip scores, AP per label) per variant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about labels without predictions; zero_division covers it
        for v in variants:
            if list(v.scorer.classes) != labels:
                raise BadInput(f"variant {v.name!r} has other labels than the first")
            scores = clip_scores(embedded, v)[0][truth.rows]
            # single-label decisions are the top-1 label: thresholds are needed for the reported variant only
            thresholds = _thresholds(truth, scores, target_precision) if truth.multilabel else []
            summary = summary_metrics(truth, scores, _decisions(truth, scores, thresholds))
            ap = summary.pop("ap")
            results.append(
                VariantResult(name=v.name, template=v.template, policy=v.policy_name, texts=dict(v.texts), **summary)
            )
            scored.append((scores, ap))
        key = "map" if truth.multilabel else "macro_f1"
        other = "macro_f1" if truth.multilabel else "map"  # ties: the other measure, then the order given
        ranking = sorted(
            range(len(results)),
            key=lambda i: (-(getattr(results[i], key) or 0.0), -(getattr(results[i], other) or 0.0), i),
        )
        for rank, i in enumerate(ranking, 1):
            results[i].rank = rank
        best = ranking[0]
        report = _full_report(embedded, truth, variants[best], *scored[best], results[best], target_precision)
        report.retrieval = retrieval_view(truth, clip_cosines(embedded, variants[best].scorer)[truth.rows])
    report.variants = [results[i] for i in ranking]
    report.sample, report.layout = source, layout
    report.skipped = [Skipped(where=s.where, reason=s.reason) for s in embedded.skipped]
    report.embedded_windows, report.cached_clips = embedded.embedded_windows, embedded.cached_clips
    report.unlabelled_clips = len(embedded.clips) - len(truth.rows)
    return report


def _thresholds(truth: Truth, scores: np.ndarray, target_precision: float | None) -> list[float | None]:
    return [best_threshold(truth.matrix[:, j], scores[:, j], target_precision) for j in range(scores.shape[1])]


def _decisions(truth: Truth, scores: np.ndarray, thresholds: list[float | None]) -> np.ndarray:
    """Single-label: the top-1 label of each clip. Multi-label: each label at its threshold (none without one)."""
    if not truth.multilabel:
        return scores.argmax(axis=1)
    t = np.array([np.inf if x is None else x for x in thresholds], np.float64)
    return scores >= t[None, :]


def _full_report(
    embedded: EmbeddedSample,
    truth: Truth,
    variant: Variant,
    scores: np.ndarray,
    ap: list[float | None],
    summary: VariantResult,
    target_precision: float | None,
) -> EvalReport:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels, width = truth.labels, len(truth.labels)
    thresholds, curves = label_curves(truth, scores, target_precision)
    predicted = _decisions(truth, scores, thresholds)
    top1 = scores.argmax(axis=1)
    if truth.multilabel:
        p, r, f, _ = precision_recall_fscore_support(truth.matrix, predicted, zero_division=0)
        matrix = np.zeros((width, width), np.int64)  # each true label of a clip against its top-1 label
        for i, j in zip(*np.nonzero(truth.matrix)):
            matrix[j, top1[i]] += 1
        cal = calibration(scores.ravel(), truth.matrix.ravel())
    else:
        p, r, f, _ = precision_recall_fscore_support(truth.single, top1, labels=np.arange(width), zero_division=0)
        matrix = confusion_matrix(truth.single, top1, labels=np.arange(width))
        cal = calibration(scores.max(axis=1), top1 == truth.single)
    support = truth.matrix.sum(axis=0)
    per_label = [
        PerLabel(
            label=name,
            text=variant.texts.get(name, name),
            precision=float(p[j]),
            recall=float(r[j]),
            f1=float(f[j]),
            ap=ap[j],
            support=int(support[j]),
            threshold=thresholds[j],
        )
        for j, name in enumerate(labels)
    ]
    return EvalReport(
        sample="",
        layout="",
        multilabel=truth.multilabel,
        clips=len(truth.rows),
        labels=labels,
        texts=[variant.texts.get(name, name) for name in labels],
        template=variant.template or None,
        policy=variant.policy_name,
        variant=variant.name,
        accuracy=summary.accuracy,
        top5_accuracy=summary.top5_accuracy,
        macro_f1=summary.macro_f1,
        micro_f1=summary.micro_f1,
        map=summary.map,
        per_label=per_label,
        confusion=Confusion(labels=labels, matrix=matrix.astype(int).tolist()),
        calibration=cal,
        variants=[],
        misclassified=_misclassified(embedded, truth, scores, predicted),
        pr_curves=curves,
        classes_without_label=truth.classes_without_label,
        labels_without_examples=truth.labels_without_examples,
    )


def _misclassified(embedded: EmbeddedSample, truth: Truth, scores: np.ndarray, predicted: np.ndarray) -> list:
    """Clips whose top-1 label is wrong (multi-label: whose decided set differs), most confident first."""
    labels = truth.labels
    out = []
    for r, row in enumerate(truth.rows.tolist()):
        clip = embedded.clips[row]
        if truth.multilabel:
            chosen = [labels[j] for j in np.flatnonzero(predicted[r])]
            if np.array_equal(predicted[r], truth.matrix[r]):
                continue
            score = float(scores[r, predicted[r]].max()) if predicted[r].any() else float(scores[r].max())
            name = ";".join(chosen) or None
        else:
            j = int(predicted[r])
            if truth.matrix[r, j]:
                continue
            name, score = labels[j], float(scores[r, j])
        true = ";".join(labels[j] for j in np.flatnonzero(truth.matrix[r]))
        end = embedded.clip_ends[row] if row < len(embedded.clip_ends) else clip.end
        out.append(
            Misclassified(path=str(clip.path), start=clip.start, end=end, label=true, predicted=name, score=score)
        )
    out.sort(key=lambda m: -m.score)
    return out
