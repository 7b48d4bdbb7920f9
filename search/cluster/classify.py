"""Classification on a Ray cluster: score exported Parquet parts (`soundsift export`) in tasks, write Parquet results.

The same policies and the same code score each part as a local `classify` scores the index: label vectors
are embedded once here, archive statistics (the archive policy) are summed over every part first, then each
task scores one part and writes ``part-NNNNN.parquet`` with the columns of `classify --out x.parquet`.
With ``top``, each part keeps its best rows and the best of those are written as one part.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.errors import BadInput, ModelMismatch
from indexer.export import export_index, read_export_meta
from indexer.ray_pipeline import ClusterError, _unwrap, connect, node_name, require_ray
from plugins.contract import ArchiveStats, LabelTexts
from search.core.classify import ClassifyOptions, chunk_rows, score_chunks
from search.core.options import DEFAULT_POLICY
from search.core.scorers import as_numpy

RESULT_META = "_soundsift_classify.json"


@dataclass
class ScoreSpec:
    """What a scoring task needs: the label vectors, the policy by name, the options."""

    labels: list[LabelTexts]
    positive: np.ndarray
    negative: np.ndarray
    negative_owner: np.ndarray
    logit_scale: float
    policy: str
    options: ClassifyOptions
    chunk: int
    probe: object = None  # a stored probe (indexer.teach_store.ProbeRecord) scoring in place of the label vectors


def _matrix(spec: ScoreSpec):

    if spec.probe is not None:
        from search.core.probes import ProbeScorer

        return ProbeScorer(spec.probe)  # type: ignore[arg-type]

    from search.core.classify import LabelMatrix

    return LabelMatrix(
        labels=spec.labels,
        positive=spec.positive,
        negative=spec.negative,
        negative_owner=spec.negative_owner,
        logit_scale=spec.logit_scale,
    )


def _policy(name: str):
    from indexer.ray_pipeline import worker_plugins

    policies = worker_plugins().policies
    if name not in policies:
        raise ClusterError(
            f"scoring policy {name!r} is registered on the driver but missing on Ray worker {node_name()}: "
            "install the plugin that provides it on every node"
        )
    return policies[name]


def _chunks(part: str, chunk: int):
    """A part as WindowChunks plus its file id -> path map."""
    import pyarrow.parquet as pq

    from indexer.store import WindowChunk

    table = pq.read_table(part, columns=["id", "file_id", "path", "start", "end", "vector"])
    dim = table.schema.field("vector").type.list_size
    ids, file_ids = table["id"].to_numpy(), table["file_id"].to_numpy()
    paths = dict(zip(file_ids.tolist(), table["path"].to_pylist()))
    vectors = table["vector"].combine_chunks().flatten().to_numpy().reshape(-1, dim)
    starts, ends = table["start"].to_numpy(), table["end"].to_numpy()
    chunks = [
        WindowChunk(
            ids=ids[a : a + chunk],
            file_ids=file_ids[a : a + chunk],
            starts=starts[a : a + chunk],
            ends=ends[a : a + chunk],
            vectors=vectors[a : a + chunk],
        )
        for a in range(0, len(ids), chunk)
    ]
    return chunks, paths


def part_stats(spec: ScoreSpec, part: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Ray task: per-label sum and sum of squares of logits over one part, and its window count."""
    from search.core.classify import chunk_logits

    matrix = _matrix(spec)
    chunks, _ = _chunks(part, spec.chunk)
    total = np.zeros(len(spec.labels), np.float64)
    total_sq = np.zeros(len(spec.labels), np.float64)
    n = 0
    for c in chunks:  # as search.core.classify.archive_stats, chunk by chunk
        logits, _ = chunk_logits(matrix, c.vectors)
        total += logits.sum(axis=0)
        total_sq += np.square(logits, dtype=np.float64).sum(axis=0)
        n += len(logits)
    return total, total_sq, n


def score_part(spec: ScoreSpec, part: str, stats: ArchiveStats | None, out: str | None) -> dict:
    """Ray task: score one part; write its rows to ``out`` (Parquet), or return them when ranking a top N."""
    from search.core.results import ClassifyResponse
    from search.core.writers import write_rows

    chunks, paths = _chunks(part, spec.chunk)
    rows = score_chunks(iter(chunks), paths, _matrix(spec), _policy(spec.policy), stats, spec.options)
    names = [lt.label for lt in spec.labels]
    if out is None:
        return {"rows": [r.model_dump(mode="json") for r in rows], "node": node_name()}
    header = ClassifyResponse(
        labels=names, texts=[lt.texts for lt in spec.labels], policy=spec.policy, by=spec.options.by, rows=[]
    )
    tmp = Path(out).with_name(f".tmp{os.getpid()}-{Path(out).name}")  # hidden from Parquet readers until renamed
    count = write_rows(tmp, header, rows)
    os.replace(tmp, out)
    return {"rows_written": count, "node": node_name()}


def _rank_key(row: dict) -> float:
    label = row.get("label")
    return row["scores"].get(label, -np.inf) if label else max(row["scores"].values(), default=-np.inf)


def _pooled_stats(sums: list[tuple[np.ndarray, np.ndarray, int]], n_labels: int) -> ArchiveStats:
    """Archive statistics of every part together, from each part's (sum, sum of squares, count)."""
    n = sum(s[2] for s in sums)
    total = np.sum([s[0] for s in sums], axis=0) if sums else np.zeros(n_labels)
    total_sq = np.sum([s[1] for s in sums], axis=0) if sums else np.zeros(n_labels)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(total_sq / max(n, 1) - mean**2, 0.0))
    return ArchiveStats(mean=mean.astype(np.float32), std=std.astype(np.float32), count=n)


def classify_on_cluster(
    address: str | None,
    settings,
    labels: str | list[str],
    *,
    out_dir: Path,
    shards: Path | None = None,
    index_dir: Path | None = None,
    policy: str = DEFAULT_POLICY,
    by: str = "window",
    top: int | None = None,
    threshold: float | None = None,
    policy_options: dict | None = None,
    strict: bool | None = None,
    probe: str | None = None,
) -> dict:
    """Classify exported windows (``shards``, or an export of ``index_dir`` made here first) on a Ray cluster.

    Returns a summary: labels, texts, policy, rows written, parts, where each part was scored.
    """
    from plugins.manager import default_plugins
    from search.core.classify import check_policy_options, policy_named
    from search.core.prompts import parse_labels

    if by not in ("window", "file"):
        raise BadInput(f"--by must be window or file, not {by!r}")
    require_ray()
    names = parse_labels(labels) if probe is None else []
    plugins = default_plugins()
    scoring = policy_named(plugins.policies, policy)
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() in (".parquet", ".csv", ".jsonl"):
        raise BadInput(f"with --ray, --out is a directory for Parquet parts, not {out_dir.name}")
    t0 = time.monotonic()
    scratch = None
    if shards is None:
        if index_dir is None:
            raise BadInput("--ray needs --shards DIR (from `soundsift export`) or --index")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-windows-", dir=out_dir.parent)
        shards = Path(scratch.name)
        export_index(index_dir, shards)
    try:
        meta = read_export_meta(shards)
        if probe is not None:  # the probe's weights travel to the tasks; no model loads
            matrix, prepared = _probe_matrix(index_dir or settings.index, probe, meta), []
            names = list(matrix.classes)
        else:
            matrix, prepared = _label_matrix(settings, meta, names, plugins, strict)
        options = ClassifyOptions(by=by, top=top, threshold=threshold, policy_options=policy_options or {})
        check_policy_options(scoring, matrix, options)
        spec = _spec(matrix, policy, options, settings)
        parts = [str((Path(shards) / p["file"]).resolve()) for p in meta["parts"]]
        address = connect(address)
        ray = require_ray()
        env = {k: os.environ[k] for k in ("SOUNDSIFT_PLUGINS", "SOUNDSIFT_EXTRA_PLUGINS") if k in os.environ}
        task = {"num_cpus": 1, **({"runtime_env": {"env_vars": env}} if env else {})}
        spec_ref = ray.put(spec)
        try:
            stats = None
            if scoring.needs_archive_stats:  # over every part first, as local classify covers the whole index
                sums = ray.get([ray.remote(**task)(part_stats).remote(spec_ref, p) for p in parts])
                stats = _pooled_stats(sums, len(names))
            out_dir.mkdir(parents=True, exist_ok=True)
            for old in [*out_dir.glob("part-*.parquet"), out_dir / RESULT_META]:
                old.unlink(missing_ok=True)
            score = ray.remote(**task)(score_part)
            if top is None:
                outs = [str(out_dir / f"part-{k:05d}.parquet") for k in range(len(parts))]
                results = ray.get([score.remote(spec_ref, p, stats, o) for p, o in zip(parts, outs)])
                written = sum(r["rows_written"] for r in results)
            else:
                results = ray.get([score.remote(spec_ref, p, stats, None) for p in parts])
                ranked = [
                    (-_rank_key(row), k, i, row) for k, r in enumerate(results) for i, row in enumerate(r["rows"])
                ]
                ranked.sort(key=lambda x: x[:3])  # best first; ties keep archive order, as the local ranking
                written = _write_top(
                    [x[3] for x in ranked[:top]],
                    names,
                    [lt.texts for lt in matrix.labels],
                    policy,
                    by,
                    out_dir / "part-00000.parquet",
                )
        except Exception as exc:
            found = _unwrap(exc)
            if found is not None:
                raise found from None
            raise
        doc = {
            "labels": names,
            "texts": [p.texts for p in prepared] if probe is None else [[f"probe {probe}"] for _ in names],
            "policy": policy,
            "by": by,
            "rows_written": written,
            "out": str(out_dir),
            "parts": len(list(out_dir.glob("part-*.parquet"))),
            "cluster": address,
            "scored_on": sorted({r["node"] for r in results}),
            "windows": meta["windows"],
            "seconds": round(time.monotonic() - t0, 3),
        }
        (out_dir / RESULT_META).write_text(json.dumps(doc, indent=1))
        return doc
    finally:
        if scratch is not None:
            scratch.cleanup()


def _write_top(rows: list[dict], names: list[str], texts, policy: str, by: str, out: Path) -> int:
    from search.core.results import ClassifyResponse, ClassifyRow
    from search.core.writers import write_rows

    header = ClassifyResponse(labels=names, texts=texts, policy=policy, by=by, rows=[])
    return write_rows(out, header, (ClassifyRow(**r) for r in rows))


def _spec(matrix, policy: str, options: ClassifyOptions, settings) -> ScoreSpec:
    """What the tasks need to score as ``matrix`` (a label matrix or a probe) does."""
    if not hasattr(matrix, "positive"):  # a probe
        zeros = np.zeros((0, matrix.weights.shape[1]), np.float32)
        return ScoreSpec(
            matrix.labels,
            zeros,
            zeros,
            np.zeros(0, np.int64),
            1.0,
            policy,
            options,
            chunk_rows(len(matrix.classes), settings.classify_chunk),
            probe=matrix.record,
        )
    return ScoreSpec(
        labels=matrix.labels,
        positive=as_numpy(matrix.positive),
        negative=as_numpy(matrix.negative),
        negative_owner=np.asarray(matrix.negative_owner),
        logit_scale=matrix.logit_scale,
        policy=policy,
        options=options,
        chunk=chunk_rows(len(matrix.positive) + len(matrix.negative_owner), settings.classify_chunk),
    )


def _probe_matrix(index_dir: Path, name: str, meta: dict):
    """The stored probe ``name`` (read from the index, shared), refused when the export's model is another."""
    from indexer.ownership import IndexOwnership
    from indexer.store import IndexStore
    from search.core.probes import load_scorer

    ownership = IndexOwnership(Path(index_dir), role="classify", shared=True)
    try:
        store = IndexStore.open(Path(index_dir), None, create=False, read_only=True)
        try:
            scorer = load_scorer(store, name)
        finally:
            store.close()
    finally:
        ownership.release()
    exported = meta["model"].get("fingerprint")
    if exported and exported != scorer.record.model_fingerprint:
        raise ModelMismatch(
            f"probe {name} was trained with {scorer.record.model_id} ({scorer.record.model_fingerprint[:12]}); "
            f"the export was written with {meta['model']['id']} ({exported[:12]})"
        )
    return scorer


def _label_matrix(settings, meta: dict, names: list[str], plugins, strict: bool | None):
    """(label vectors, prepared queries) embedded with the model that wrote the export (another one is refused)."""
    from search.sound_index import label_matrix, load_encoder, prepare_all

    encoder = load_encoder(settings.model_copy(update={"model": settings.model or meta["model"]["id"]}))
    if meta["model"]["fingerprint"] and encoder.identity.fingerprint != meta["model"]["fingerprint"]:
        raise ModelMismatch(
            f"the export was written with {meta['model']['id']} ({meta['model']['fingerprint'][:12]}); "
            f"--model gives {encoder.identity.describe()}: classify with the model that wrote it"
        )
    prepared = prepare_all(names, plugins, settings, strict)
    return label_matrix(prepared, encoder), prepared
