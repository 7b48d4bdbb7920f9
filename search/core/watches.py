"""Standing queries: compile a watch (query, label set or probe) to plain numbers, and test it over the whole index.

The compiled rule is evaluated by the indexer on every commit's new windows (indexer/watch_eval.py), with
numpy only, so indexing never needs the text tower or search/ to fire a watch.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from indexer.errors import BadInput
from indexer.watch_eval import CompiledWatch, evaluate
from indexer.watch_store import WatchRecord, WatchStore

if TYPE_CHECKING:
    from search.filters import Filters
    from search.sound_index import SoundIndex

MAX_NAME = 100


@dataclass
class WatchSpec:
    """What the user asked for at `watch add`, exactly as given (stored with the watch as ``spec``)."""

    name: str
    query: str | None = None
    min_score: float | None = None
    labels: str | None = None
    label: str | None = None
    probe: str | None = None  # PROBE:CLASS
    threshold: float | None = None
    policy: str = "softmax"
    policy_options: dict = field(default_factory=dict)
    path_glob: str | None = None
    tags: list[str] = field(default_factory=list)
    said: str | None = None  # a transcript filter (words said in the window): reserved for the transcripts tagger
    webhook: str | None = None
    secret: str | None = None
    ndjson: str | None = None
    exec: str | None = None

    def kind(self) -> str:
        given = [k for k, v in (("query", self.query), ("labels", self.labels), ("probe", self.probe)) if v]
        if len(given) != 1:
            raise BadInput("give exactly one of --query, --labels or --probe")
        return given[0]

    def document(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (None, [], {}) and k != "secret"}
        if self.secret:
            out["secret"] = "(set)"
        return out


@dataclass
class WatchMatch:
    """A window a watch matches (what `watch test` prints)."""

    window_id: int
    path: str
    start: float
    end: float
    score: float


def check_targets(spec: WatchSpec) -> dict[str, Any]:
    """The delivery targets of a spec, checked: an http(s) webhook URL, an NDJSON path whose folder exists, a command."""
    targets: dict[str, Any] = {}
    if spec.webhook is not None:
        parts = urlsplit(spec.webhook)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(
                f"--webhook must be an http:// or https:// URL such as https://example.org/hook, not {spec.webhook!r}"
            )
        targets["webhook"] = {"url": spec.webhook, "secret": spec.secret}
    elif spec.secret:
        raise BadInput("--secret signs webhook deliveries: give it with --webhook URL")
    if spec.ndjson is not None:
        path = Path(spec.ndjson).expanduser().resolve()
        if not path.parent.is_dir():
            raise BadInput(f"--ndjson {spec.ndjson}: the folder {path.parent} does not exist")
        if path.is_dir():
            raise BadInput(f"--ndjson {spec.ndjson} is a directory; give a file name")
        targets["ndjson"] = str(path)
    if spec.exec is not None:
        try:
            argv = shlex.split(spec.exec)
        except ValueError as exc:
            raise BadInput(f"--exec {spec.exec!r} cannot be read as a command: {exc}") from None
        if not argv:
            raise BadInput("--exec needs a command, e.g. --exec 'notify-send soundsift'")
        targets["exec"] = spec.exec
    return targets


def _filters(spec: WatchSpec) -> "Filters":
    from search.filters import Filters, parse_tag_filter

    for text in spec.tags:
        parse_tag_filter(text)
    if spec.path_glob is not None and not spec.path_glob.strip():
        raise BadInput("--path-glob is empty; give a glob such as '*/line3/*.wav'")
    return Filters(path_glob=spec.path_glob, **({"tags": list(spec.tags)} if spec.tags else {}))


def compile_watch(sx: "SoundIndex", spec: WatchSpec) -> WatchRecord:
    """The stored form of ``spec``: its rule compiled over the index's model, its filter as SQL, its targets checked.

    One clear BadInput for an unknown label, probe, class or policy, a bad threshold, filter or target."""
    name = (spec.name or "").strip()
    if not name or len(name) > MAX_NAME or any(c in name for c in "/\\\n\t"):
        raise BadInput(f"a watch needs a name of 1 to {MAX_NAME} characters without slashes, not {spec.name!r}")
    kind = spec.kind()
    targets = check_targets(spec)
    filters = _filters(spec)
    if kind == "query":
        rule = _compile_query(sx, spec)
    elif kind == "labels":
        rule = _compile_labels(sx, spec)
    else:
        rule = _compile_probe(sx, spec)
    if not filters.is_empty():
        rule.filter_sql, rule.filter_params = filters.to_sql(sx.store.tag_models())
    return WatchRecord(id=0, name=name, kind=kind, spec=spec.document(), rule=rule, targets=targets)


def _probability(option: str, value: float | None) -> float:
    if value is None:
        raise BadInput(f"{option} is required: a probability between 0 and 1, e.g. {option} 0.8")
    if not 0.0 <= value <= 1.0:
        raise BadInput(f"{option} is a probability between 0 and 1, not {value:g}")
    return float(value)


def _compile_query(sx: "SoundIndex", spec: WatchSpec) -> CompiledWatch:
    from search.core.prompts import combined_vectors
    from search.sound_index import prepare_all

    if spec.min_score is None:
        raise BadInput("--query needs --min-score: a cosine on search's scale (-1..1), e.g. --min-score 0.3")
    if not -1.0 <= spec.min_score <= 1.0:
        raise BadInput(f"--min-score is a cosine between -1 and 1 (search's scores), not {spec.min_score:g}")
    assert spec.query is not None
    prepared = prepare_all([spec.query], sx.plugins, sx.settings, None)
    vector = combined_vectors(sx.encoder, [prepared[0].texts])
    return CompiledWatch(
        kind="query", matrix=np.ascontiguousarray(vector, np.float32), threshold=float(spec.min_score), label=spec.query
    )


def _compile_labels(sx: "SoundIndex", spec: WatchSpec) -> CompiledWatch:
    from search.core.classify import ClassifyOptions, check_policy_options, label_matrix, policy_named
    from search.core.prompts import parse_labels, prepare_all
    from search.core.scorers import as_numpy

    assert spec.labels is not None
    names = parse_labels(spec.labels)
    if not spec.label:
        raise BadInput(f"--labels needs --label: the one that fires the watch, one of {', '.join(names)}")
    if spec.label not in names:
        raise BadInput(f"--label {spec.label!r} is not in --labels; the labels are: {', '.join(names)}")
    threshold = _probability("--threshold", spec.threshold)
    scoring = policy_named(sx.plugins.policies, spec.policy)
    matrix = label_matrix(prepare_all(names, sx.plugins, sx.settings, None), sx.encoder)
    check_policy_options(scoring, matrix, ClassifyOptions(policy_options=spec.policy_options))
    positive = as_numpy(matrix.positive)
    negative = as_numpy(matrix.negative)
    rule = CompiledWatch(
        kind="labels",
        matrix=np.ascontiguousarray(np.concatenate([positive, negative.reshape(-1, positive.shape[1])]), np.float32),
        threshold=threshold,
        label_index=names.index(spec.label),
        label=spec.label,
        logit_scale=float(matrix.logit_scale),
        policy=spec.policy,
        policy_options=dict(spec.policy_options),
        labels=[[lt.label, list(lt.texts), list(lt.negatives)] for lt in matrix.labels],
        negative_owner=[int(i) for i in matrix.negative_owner],
    )
    if scoring.needs_archive_stats:  # the label set's distribution over the archive as it is now
        stats = sx.label_stats(matrix)
        rule.stats_mean = [float(x) for x in stats.mean]
        rule.stats_std = [float(x) for x in stats.std]
        rule.stats_count = int(stats.count)
    return rule


def stored_probe(sx: "SoundIndex", name: str):
    """The stored probe called ``name`` (an object with ``W``, ``b`` and ``classes``), or BadInput.

    Probes are trained and stored by `soundsift probe`; the store answers ``probe(name)`` once that exists."""
    lookup = getattr(sx.store, "probe", None)
    probe = lookup(name) if callable(lookup) else None
    if probe is None:
        raise BadInput(f"no probe named {name!r} in the index; train one first (`soundsift probe train`)")
    return probe


def _compile_probe(sx: "SoundIndex", spec: WatchSpec) -> CompiledWatch:
    assert spec.probe is not None
    name, colon, cls = spec.probe.partition(":")
    if not colon or not name.strip() or not cls.strip():
        raise BadInput(f"--probe takes PROBE:CLASS, e.g. --probe bearings:fault, not {spec.probe!r}")
    threshold = _probability("--threshold", spec.threshold)
    probe = stored_probe(sx, name.strip())
    classes = [str(c) for c in probe.classes]
    if cls.strip() not in classes:
        raise BadInput(f"probe {name.strip()!r} has no class {cls.strip()!r}; its classes are: {', '.join(classes)}")
    W = np.asarray(probe.W, np.float32).reshape(-1, sx.store.embedding_dim)
    return CompiledWatch(
        kind="probe",
        matrix=np.ascontiguousarray(W),
        bias=np.asarray(probe.b, np.float32).reshape(-1),
        threshold=threshold,
        label_index=classes.index(cls.strip()) if len(W) > 1 else 0,
        label=cls.strip(),
    )


def add_watch(sx: "SoundIndex", spec: WatchSpec) -> WatchRecord:
    """Compile and store a watch; a taken name is refused. It fires on windows committed from now on."""
    watches = WatchStore(sx.store)
    if watches.named(spec.name.strip()) is not None:
        raise BadInput(
            f"a watch named {spec.name.strip()!r} exists; `soundsift watch remove {spec.name.strip()}` first"
        )
    record = compile_watch(sx, spec)
    record.id = watches.add(record)
    return record


def get_watch(store, name: str) -> WatchRecord:
    """The stored watch called ``name``, or BadInput naming the ones there are."""
    ws = WatchStore(store)
    found = ws.named(name)
    if found is None:
        names = ", ".join(w.name for w in ws.all()) or "none yet: add one with `soundsift watch add`"
        raise BadInput(f"no watch named {name!r}; watches: {names}")
    return found


def matches_of(sx: "SoundIndex", watch: WatchRecord, chunk: int = 65_536, keep_vectors: bool = False):
    """Every indexed window ``watch`` matches, in id order: (matches, chunks of (ids, file ids, starts, ends, vectors)
    when ``keep_vectors``)."""
    paths = sx.file_paths(sx.store.commit_seq())
    where = "f.status = 'indexed'" + (f" AND ({watch.rule.filter_sql})" if watch.rule.filter_sql else "")
    matches: list[WatchMatch] = []
    kept = []
    for c in sx.store.iter_vectors(chunk, where, watch.rule.filter_params):
        hit, scores = evaluate(watch.rule, c.vectors, sx.plugins.policies)
        idx = np.flatnonzero(hit)
        matches += [
            WatchMatch(int(c.ids[i]), paths[int(c.file_ids[i])], float(c.starts[i]), float(c.ends[i]), float(scores[i]))
            for i in idx
        ]
        if keep_vectors and len(idx):
            kept.append((c.ids[idx], c.file_ids[idx], c.starts[idx], c.ends[idx], np.array(c.vectors[idx])))
    return matches, kept


def run_watch_test(sx: "SoundIndex", name: str, fire: bool = False) -> tuple[list[WatchMatch], int]:
    """Every window of the index the watch matches, best first, and how many alerts ``fire`` wrote
    (alerts only for windows it has not alerted on; nothing is written without ``fire``)."""
    watch = get_watch(sx.store, name)
    matches, kept = matches_of(sx, watch, keep_vectors=fire)
    ws = WatchStore(sx.store)
    fired = sum(ws.fire(watch, *block) for block in kept)  # after the reader is done with its cursor
    matches.sort(key=lambda m: (-m.score, m.window_id))
    return matches, fired
