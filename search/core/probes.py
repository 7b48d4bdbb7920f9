"""Few-shot probes: a linear classifier trained on marked windows' stored unit vectors, scored like a label set.

Training is scikit-learn's LogisticRegression (class_weight="balanced") on the examples' vectors, with
random unlabelled windows as an extra "other" class when ``background`` is given (on by default for a
one-class probe); cross-validated accuracy and per-class F1 come from the examples. Counter-examples
(marked with ✗ / ``--negative``) join the "other" class. A probe's logits are ``W v + b``: their softmax
is the classifier's ``predict_proba``, so it runs through the same policies, writers and filters as labels.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.errors import BadInput, ModelMismatch
from indexer.teach_store import ExampleRecord, ProbeRecord, TeachStore
from search.core.scorers import ProbeScorer

OTHER = "other"
DEFAULT_BACKGROUND = 200  # random unlabelled windows for a one-class probe when --background is not given
EXPORT_FORMAT = "soundsift-probe"
EXPORT_VERSION = 1
MIN_PER_CLASS = 2  # fewer cannot be cross-validated (and one example is not a class)


# -- identity --------------------------------------------------------------------------------
def index_model(store) -> tuple[str | None, str]:
    """(model id, fingerprint) the index was built with."""
    meta = store.identity_meta() or {}
    return meta.get("model_id"), meta.get("model_fingerprint") or ""


def _check_model(store, name: str, model_id: str | None, fingerprint: str) -> None:
    here_id, here_fp = index_model(store)
    if fingerprint != here_fp:
        raise ModelMismatch(
            f"probe {name} was trained with {model_id} ({fingerprint[:12]}), but this index uses {here_id} "
            f"({here_fp[:12]}); train it again here with `soundsift train {name} --classes ...`"
        )


def load_scorer(store, name: str) -> ProbeScorer:
    """The stored probe ``name`` as a Scorer (BadInput naming the stored probes when there is none)."""
    record = TeachStore(store).probe(name)
    if record is None:
        known = (
            ", ".join(TeachStore(store).probe_names())
            or "none yet: train one with `soundsift train NAME --classes ...`"
        )
        raise BadInput(f"no probe named {name!r}; probes: {known}")
    _check_model(store, name, record.model_id, record.model_fingerprint)
    return ProbeScorer(record)


def parse_probe_class(text: str) -> tuple[str, str]:
    """``'PROBE:CLASS'`` -> (probe, class); BadInput says the syntax."""
    name, colon, cls = str(text).partition(":")
    if not colon or not name.strip() or not cls.strip():
        raise BadInput(f"--probe takes PROBE:CLASS here, e.g. 'line3:bearing_fault', not {text!r}")
    return name.strip(), cls.strip()


# -- training --------------------------------------------------------------------------------
@dataclass
class TrainingSet:
    """Vectors and labels to fit, plus what they came from (for the example-set hash)."""

    vectors: np.ndarray
    labels: list[str]
    classes: list[str]
    counts: dict[str, int]
    stale: int
    example_hash: str
    background: int = 0


def parse_classes(text: str | Sequence[str]) -> list[str]:
    """``"bearing_fault, normal"`` -> classes; an empty name or a repeat is refused."""
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
    if not parts or any(not p for p in parts):
        raise BadInput(f"--classes has an empty class name in {text!r}: write e.g. --classes 'bearing_fault, normal'")
    if len({p.lower() for p in parts}) != len(parts):
        raise BadInput(f"--classes names a class twice: {text!r}")
    if any(p.lower() == OTHER for p in parts):
        raise BadInput(f"{OTHER!r} is the probe's own class for background and counter-examples; name yours otherwise")
    return parts


def example_set_hash(examples: Sequence[ExampleRecord], background: int, seed: int) -> str:
    """A hash of what a probe is trained on: each example's class, content, start and sign, and the background draw."""
    lines = sorted(f"{e.cls}\t{e.hash}\t{e.start:.3f}\t{int(e.positive)}" for e in examples)
    lines.append(f"background\t{background}\t{seed}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def training_set(store, wm, classes: list[str], background: int | None, seed: int = 0) -> TrainingSet:
    """The vectors of each class's current examples (plus background / counter-examples as "other")."""
    teach = TeachStore(store)
    known = {c.lower(): c for c in teach.classes()}
    used: list[ExampleRecord] = []
    vectors: list[np.ndarray] = []
    labels: list[str] = []
    stale = 0
    negatives: list[int] = []
    for cls in classes:
        if cls.lower() not in known:
            raise BadInput(
                f"class {cls!r} has no examples: mark some with `soundsift examples add {cls} TARGET...` "
                f"(classes with examples: {', '.join(sorted(known.values())) or 'none'})"
            )
        rows = teach.examples(known[cls.lower()])
        live = [e for e in rows if e.window_id is not None]
        stale += len(rows) - len(live)
        pos = [e for e in live if e.positive]
        negatives += [e.window_id for e in live if not e.positive]  # type: ignore[misc]
        if len(pos) < MIN_PER_CLASS:
            extra = f" ({len(rows) - len(live)} stale: their files changed)" if len(rows) != len(live) else ""
            raise BadInput(
                f"class {cls!r} has {len(pos)} usable example{'s' if len(pos) != 1 else ''}{extra}; a probe needs at "
                f"least {MIN_PER_CLASS} per class: mark more with `soundsift examples add {cls} TARGET...`"
            )
        ids, vecs = wm.vectors_of(np.array([e.window_id for e in pos], np.int64))
        vectors.append(np.asarray(vecs, np.float32))
        labels += [cls] * len(ids)
        used += live
    if background is None:
        background = DEFAULT_BACKGROUND if len(classes) == 1 else 0
    if background < 0:
        raise BadInput("--background takes a number of windows, 0 or more")
    if len(classes) == 1 and background == 0 and not negatives:
        raise BadInput(
            f"a one-class probe needs something to tell {classes[0]!r} from: give --background N (random windows) "
            "or counter-examples (`examples add CLASS TARGET --negative`)"
        )
    others: list[int] = list(dict.fromkeys(negatives))
    if background:
        taken = [e.window_id for e in used if e.window_id is not None]
        others += [int(i) for i in teach.random_window_ids(background, taken + others, seed)]
    if others:
        ids, vecs = wm.vectors_of(np.array(others, np.int64))
        if len(ids) < MIN_PER_CLASS:
            raise BadInput(
                f"the {OTHER!r} class got {len(ids)} windows; the index has too few unlabelled windows for --background"
            )
        vectors.append(np.asarray(vecs, np.float32))
        labels += [OTHER] * len(ids)
    names = list(classes) + ([OTHER] if others else [])
    counts = {c: labels.count(c) for c in names}
    return TrainingSet(
        np.concatenate(vectors), labels, names, counts, stale, example_set_hash(used, background, seed), background
    )


def fit(vectors: np.ndarray, labels: list[str], classes: list[str], c: float = 1.0, seed: int = 0):
    """(weights (classes, dim), bias (classes,), metrics): logistic regression, class-balanced, cross-validated."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    y = np.array([classes.index(lab) for lab in labels])

    def model():
        return LogisticRegression(C=c, class_weight="balanced", max_iter=2000)

    with threadpool_limits(
        1
    ):  # a few thousand small products: BLAS/OpenMP threads only contend (30x slower on a busy box)
        return _fit(vectors, y, classes, model, seed)


def _fit(vectors, y, classes, model, seed):
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = int(min(5, np.bincount(y, minlength=len(classes)).min()))
    metrics: dict = {"examples": len(y), "folds": folds}
    if folds >= 2:
        predicted = cross_val_predict(model(), vectors, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        metrics["cv_accuracy"] = round(float(accuracy_score(y, predicted)), 4)
        f1 = f1_score(y, predicted, average=None, labels=list(range(len(classes))), zero_division=0)
        metrics["f1"] = {cls: round(float(f), 4) for cls, f in zip(classes, f1)}
    clf = model().fit(vectors, y)
    coef, intercept = np.asarray(clf.coef_, np.float64), np.asarray(clf.intercept_, np.float64)
    if len(classes) == 2:  # binary: one decision z; softmax([-z/2, z/2]) is exactly [1 - sigmoid(z), sigmoid(z)]
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef.astype(np.float32), intercept.astype(np.float32), metrics


def train(
    store, wm, name: str, classes: str | Sequence[str], background: int | None = None, c: float = 1.0, seed: int = 0
) -> ProbeRecord:
    """Fit probe ``name`` on the examples of ``classes`` and store it (replacing an older version in one transaction)."""
    name = check_name(name)
    names = parse_classes(classes)
    started = time.perf_counter()
    data = training_set(store, wm, names, background, seed)
    weights, bias, metrics = fit(data.vectors, data.labels, data.classes, c, seed)
    metrics.update(
        {
            "background": data.background,
            "counts": data.counts,
            "stale_examples": data.stale,
            "train_s": round(time.perf_counter() - started, 4),
        }
    )
    teach = TeachStore(store)
    old = teach.probe(name)
    model_id, fingerprint = index_model(store)
    record = ProbeRecord(
        name,
        (old.version + 1) if old else 1,
        tuple(data.classes),
        weights,
        bias,
        model_id,
        fingerprint,
        data.example_hash,
        metrics,
        "",
    )
    teach.save_probe(record)
    return teach.probe(name)  # type: ignore[return-value]


def check_name(name: str) -> str:
    """A probe name: letters, digits, '_', '-', '.'; no ':' (it separates PROBE:CLASS)."""
    import re

    name = str(name).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
        raise BadInput(f"a probe name is 1-64 letters, digits, '_', '-' or '.', not {name!r}")
    return name


def probe_summary(store, record: ProbeRecord) -> dict:
    """What `probes list` shows: classes, version, model, metrics, and whether its examples changed since."""
    current = None
    try:
        teach = TeachStore(store)
        wanted = [c for c in record.classes if c != OTHER]
        used = [e for c in wanted for e in teach.examples(c) if e.window_id is not None]
        current = example_set_hash(used, int(record.metrics.get("background", 0)), 0)
    except BadInput:
        pass
    return {
        "name": record.name,
        "version": record.version,
        "classes": list(record.classes),
        "model_id": record.model_id,
        "model_fingerprint": record.model_fingerprint,
        "example_hash": record.example_hash,
        "examples_changed": current is not None and current != record.example_hash,
        "cv_accuracy": record.metrics.get("cv_accuracy"),  # cross-validated on the examples (also in metrics)
        "f1": record.metrics.get("f1"),  # per class
        "metrics": record.metrics,
        "created_at": record.created_at,
    }


# -- export / import -------------------------------------------------------------------------
def export_probe(store, name: str, path: Path) -> dict:
    """Write probe ``name`` as a small JSON file another index built with the same model can import."""
    record = load_scorer(store, name).record
    doc = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "name": record.name,
        "version": record.version,
        "classes": list(record.classes),
        "weights": [[float(x) for x in row] for row in record.weights],
        "bias": [float(x) for x in record.bias],
        "model_id": record.model_id,
        "model_fingerprint": record.model_fingerprint,
        "example_hash": record.example_hash,
        "metrics": record.metrics,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)
    return {"name": record.name, "out": str(path), "bytes": path.stat().st_size}


def import_probe(store, path: Path, name: str | None = None) -> ProbeRecord:
    """Store the probe in ``path`` (as ``name``, default its own); a probe of another model is refused naming both."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"no such file: {path}") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path} is not a probe file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise BadInput(f"{path} is not a probe file written by `soundsift probes export`")
    try:
        classes = tuple(str(c) for c in doc["classes"])
        weights = np.asarray(doc["weights"], np.float32)
        bias = np.asarray(doc["bias"], np.float32)
        fingerprint, model_id = str(doc["model_fingerprint"]), doc.get("model_id")
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{path} is a damaged probe file ({exc})") from None
    name = check_name(name or doc.get("name", ""))
    dim = store.embedding_dim
    if weights.shape != (len(classes), dim) or bias.shape != (len(classes),) or not np.isfinite(weights).all():
        raise BadInput(f"{path} holds weights of shape {weights.shape}, not ({len(classes)}, {dim}) for this index")
    _check_model(store, name, model_id, fingerprint)
    teach = TeachStore(store)
    old = teach.probe(name)
    record = ProbeRecord(
        name,
        (old.version + 1) if old else int(doc.get("version", 1)),
        classes,
        weights,
        bias,
        model_id,
        fingerprint,
        str(doc.get("example_hash", "")),
        dict(doc.get("metrics") or {}, imported_from=str(path)),
        "",
    )
    teach.save_probe(record)
    return teach.probe(name)  # type: ignore[return-value]


# -- probes in search and filters ------------------------------------------------------------
PROBE_TAG = "probe"  # --tag probe:PROBE:CLASS>=0.8 filters on a probe's probability of CLASS


@dataclass(frozen=True)
class ProbeCondition:
    """One ``probe:PROBE:CLASS[op value]`` filter; without a comparison, CLASS is the probe's best class."""

    probe: str
    cls: str
    op: str | None
    value: float | bool | None


def split_probe_filters(filters):
    """(the filters without probe conditions, the probe conditions), from a `Filters` (list or dict form)."""
    from search.filters import parse_tag_filter

    if filters is None:
        return None, []
    conditions: list[ProbeCondition] = []

    def condition(t) -> ProbeCondition:
        probe, colon, cls = t.label.partition(":")
        if not colon or not probe.strip() or not cls.strip():
            raise BadInput(f"a probe filter reads probe:PROBE:CLASS>=0.8, not probe:{t.label}")
        return ProbeCondition(probe.strip(), cls.strip(), t.op, t.value)

    if isinstance(filters.tags, list):
        kept = []
        for text in filters.tags:
            t = parse_tag_filter(text)
            if t.model == PROBE_TAG:
                conditions.append(condition(t))
            else:
                kept.append(text)
        rest = filters.model_copy(update={"tags": kept})
    else:
        kept_d = {}
        for key, value in filters.tags.items():
            if key.startswith(PROBE_TAG + ":"):
                parsed = [t for t in filters.model_copy(update={"tags": {key: value}}).tag_filters()]
                conditions.append(condition(parsed[0]))
            else:
                kept_d[key] = value
        rest = filters.model_copy(update={"tags": kept_d})
    return rest, conditions


_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "=": np.equal}


def probe_allowed_ids(store, wm, conditions: list[ProbeCondition], chunk: int = 65_536) -> np.ndarray:
    """Window ids meeting every probe condition (each probe scores every window once: chunked matrix products)."""
    keep = np.ones(len(wm), dtype=bool)
    for cond in conditions:
        scorer = load_scorer(store, cond.probe)
        j = scorer.class_index(cond.cls)
        for at in range(0, len(wm), chunk):
            p = scorer.probabilities(wm.vectors[at : at + chunk])
            if cond.op is None:
                hit = p.argmax(axis=1) == j
                keep[at : at + chunk] &= ~hit if cond.value is False else hit
            else:
                keep[at : at + chunk] &= _OPS[cond.op](p[:, j], float(cond.value))  # type: ignore[arg-type]
    return np.asarray(wm.ids[keep], np.int64)


def probe_top(scorer: ProbeScorer, cls: str, wm, k: int, positions: np.ndarray | None, chunk: int = 65_536):
    """(probabilities, window ids) of the ``k`` windows most likely ``cls``, best first (ties: the smaller id)."""
    j = scorer.class_index(cls)
    best_p = np.zeros(0, np.float32)
    best_i = np.zeros(0, np.int64)
    for c in wm.chunks(chunk, positions):
        p = scorer.probabilities(c.vectors)[:, j].astype(np.float32)
        ids = np.asarray(c.ids, np.int64)
        if len(p) > k:
            top = np.argpartition(-p, k - 1)[:k]
            p, ids = p[top], ids[top]
        best_p, best_i = np.concatenate([best_p, p]), np.concatenate([best_i, ids])
        if len(best_p) > k:
            order = np.lexsort((best_i, -best_p))[:k]
            best_p, best_i = best_p[order], best_i[order]
    order = np.lexsort((best_i, -best_p))
    return best_p[order], best_i[order]


def search_probe(sx, probe_class: str, k: int, allowed):
    """One QueryResult: the k windows ranked by the probability a probe gives one of its classes."""
    from search.core.results import QueryResult, SearchHit

    name, cls = parse_probe_class(probe_class)
    scorer = load_scorer(sx.store, name)
    scorer.class_index(cls)
    wm = sx.window_matrix()
    positions = None if allowed is None else wm.select(allowed)
    probs, ids = probe_top(scorer, cls, wm, k, positions)
    rows = sx.store.window_rows([int(i) for i in ids])
    hits = [
        SearchHit(
            path=rows[i][0], start=rows[i][1], end=rows[i][2], score=float(p), window_id=int(i), file_id=rows[i][3]
        )
        for p, i in zip(probs, ids)
        if int(i) in rows
    ]
    return QueryResult(query=f"probe:{name}:{cls}", texts=[], hits=hits)


def check_class_name(cls: str) -> str:
    """A class name as given (stripped); BadInput for an empty one, one with ',' or ':', or 'other'."""
    cls = cls.strip()
    if not cls or "," in cls or ":" in cls:
        raise BadInput(f"a class name is a non-empty word without ',' or ':', not {cls!r}")
    if cls.lower() == OTHER:
        raise BadInput(f"{OTHER!r} is the probes' own class for background windows; name yours otherwise")
    return cls


def example_document(e) -> dict:
    """One example as JSON (`examples list --json`, GET /examples)."""
    return {
        "class": e.cls,
        "positive": e.positive,
        "window_id": e.window_id,
        "path": e.current_path or e.path,
        "marked_path": e.path,
        "start": e.start,
        "end": e.end,
        "hash": e.hash,
        "source": e.source,
        "created_at": e.created_at,
        "stale": e.stale,
    }
