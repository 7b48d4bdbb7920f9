"""The Python API: open or create an index, index paths, search, classify, classify one file or array.

The CLI and the HTTP API are thin layers over this module (``search.sound_index`` is its older name, kept as an alias).
The top-k algorithm itself lives in ``search.core.topk``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.decode import TARGET_RATE
from indexer.errors import BadInput
from indexer.index_encoder import IndexEncoder, identity_from_meta
from indexer.matrix import WindowMatrix
from indexer.model import ClapEncoder, load_clap, load_clap_text
from indexer.ownership import IndexOwnership
from indexer.queries import stored_model_id
from indexer.settings import DEFAULT_MODEL, Settings, load_settings
from indexer.store import DB_NAME, IndexStore
from indexer.tiny_clap import is_tiny
from indexer.vectors import VectorIndex
from plugins.contract import ArchiveStats
from plugins.manager import PluginHost, default_plugins
from search.core.options import with_prompt_template
from search.core.prompts import PreparedQuery, combined_vectors, parse_labels, prepare_query
from search.core.results import (
    ClassifyResponse,
    ClassifyRow,
    FileClassification,
    QueryResult,
    SearchResponse,
)
from search.core.topk import top_k_hits, vectors_exact
from search.filters import Filters

if TYPE_CHECKING:  # torch lives behind these: imported where they are used
    from indexer.runner import IndexReport
    from search.core.classify import LabelMatrix

_TINY_WARNED = False


def warn_if_tiny(encoder) -> None:
    """Say once per process, on stderr, that the tiny random CLAP's scores mean nothing."""
    global _TINY_WARNED
    if os.environ.get("SOUNDSIFT_TINY_NOTED"):  # a parent (the demo) has said it already
        _TINY_WARNED = True
    if not _TINY_WARNED and is_tiny(Path(encoder.identity.model_id)):
        _TINY_WARNED = True
        print(
            "note: using the tiny random CLAP (no real weights here) - scores are meaningless. "
            "Get real weights with `huggingface-cli download laion/clap-htsat-fused` and pass --model.",
            file=sys.stderr,
        )


def load_encoder(settings: Settings, index_dir: Path | None = None) -> ClapEncoder:
    """The CLAP named by settings, else the one the index was built with, else the default checkpoint."""
    model = settings.model or (stored_model_id(index_dir) if index_dir else None) or DEFAULT_MODEL
    encoder = load_clap(
        model,
        settings.model_revision,
        settings.device,
        settings.precision,
        settings.window_s,
        settings.hop_s,
        settings.text_cache_size,
    )
    warn_if_tiny(encoder)
    return encoder


def _model_source(model: str) -> str:
    target = Path(model).expanduser()
    return str(target.resolve()) if target.is_dir() else model


def _other_model(settings: Settings, index_dir: Path) -> bool:
    """True when the settings name a model other than the one the index records (checked by loading it at once)."""
    if not settings.model:
        return False
    return _model_source(settings.model) != stored_model_id(index_dir)


def reader_encoder(settings: Settings, store: IndexStore) -> IndexEncoder:
    """The encoder of a read-only open: nothing loaded until a text the index does not remember is asked for."""
    identity = identity_from_meta(store.identity_meta() or {})
    model = settings.model or identity.model_id or DEFAULT_MODEL

    def load_text():
        text = load_clap_text(
            model,
            settings.model_revision,
            settings.device,
            settings.text_cache_size,
            feature_config=identity.feature_config,
        )
        warn_if_tiny(text)
        return text

    def load_full():
        return load_encoder(settings, store.index_dir)

    return IndexEncoder(
        store,
        identity,
        load_full=load_full,
        load_text=load_text,
        device=settings.device,
        cache_size=settings.text_cache_size,
    )


def prepare_all(
    texts: list[str], plugins: PluginHost, settings: Settings, strict: bool | None, keep_untranslated: bool = False
) -> list[PreparedQuery]:
    strict = settings.strict_translation if strict is None else strict
    return [
        prepare_query(t, plugins, settings.prompt_template, settings.plugin_view(), strict, keep_untranslated)
        for t in texts
    ]


def label_matrix(prepared: list[PreparedQuery], encoder) -> "LabelMatrix":
    import torch

    from search.core.classify import LabelMatrix

    positive = combined_vectors(encoder, [p.texts for p in prepared])
    negatives = [(i, t) for i, p in enumerate(prepared) for t in p.negatives]
    negative = (
        encoder.embed_texts([t for _, t in negatives]) if negatives else np.zeros((0, positive.shape[1]), np.float32)
    )
    return LabelMatrix(
        labels=[p.as_label() for p in prepared],
        positive=torch.from_numpy(positive).to(encoder.device),
        negative=torch.from_numpy(negative).to(encoder.device),
        negative_owner=np.array([i for i, _ in negatives], dtype=np.int64),
        logit_scale=encoder.logit_scale,
    )


def _label_key(matrix: "LabelMatrix") -> str:
    """A short key for a label set's vectors (archive statistics are cached per label set and filter)."""
    import hashlib

    digest = hashlib.sha256(matrix.positive.detach().cpu().numpy().tobytes())
    digest.update(matrix.negative.detach().cpu().numpy().tobytes())
    digest.update(np.asarray(matrix.negative_owner).tobytes())
    return digest.hexdigest()


class FilePaths(dict):
    """file id -> path, preloaded; a file committed after the preload (a job running meanwhile) is looked up on demand."""

    def __init__(self, store: IndexStore):
        super().__init__(store.indexed_paths())
        self._store = store

    def __missing__(self, file_id: int) -> str:
        stored = self._store.path_of(file_id)
        self[file_id] = path = stored if stored is not None else f"<file {file_id} removed>"
        return path


class SoundIndex:
    """An open index: the DuckDB store, its FAISS index, the CLAP encoder and the plugins. One owner per index."""

    def __init__(
        self,
        settings: Settings,
        encoder: IndexEncoder,
        store: IndexStore,
        vectors: VectorIndex,
        plugins: PluginHost,
        ownership: IndexOwnership,
    ):
        self.settings = settings
        self.encoder = encoder
        self.store = store
        self.vectors = vectors
        self.plugins = plugins
        self._ownership = ownership
        self._matrix: WindowMatrix | None = None
        self._paths: tuple[int, FilePaths] | None = None

    @classmethod
    def open(
        cls,
        index_dir: str | Path | None = None,
        *,
        settings: Settings | None = None,
        create: bool = False,
        encoder: ClapEncoder | None = None,
        plugins: PluginHost | None = None,
        role: str = "cli",
        url: str | None = None,
        read_only: bool = False,
    ) -> "SoundIndex":
        """Open the index at ``index_dir`` (created when ``create``); raises IndexLocked, ModelMismatch, ModelNotFound...

        ``read_only`` opens it as one of possibly several readers (search, classify, stats); only an
        exclusive owner (the default) may index.
        """
        settings = settings or load_settings()
        index_dir = Path(index_dir or settings.index)
        if not create and not (index_dir / DB_NAME).exists():
            from indexer.errors import IndexMissing

            raise IndexMissing(f"no index at {index_dir}: build one with `soundsift index PATH --index {index_dir}`")
        ownership = IndexOwnership(index_dir, role=role, url=url, shared=read_only and not create)
        store = None
        try:
            if encoder is None and ownership.shared and not _other_model(settings, index_dir):
                # A reader: no model yet. The text tower loads on the first text the index does not remember,
                # the audio tower only if audio is embedded.
                store = IndexStore.open(index_dir, None, create=False, read_only=True)
                wrapped = reader_encoder(settings, store)
            else:
                full = encoder or load_encoder(settings, index_dir)
                if create:  # before the index is created with a window the model cannot take
                    from indexer.runner import check_window

                    check_window(settings.window_s, full)
                store = IndexStore.open(index_dir, full.identity, create=create, read_only=ownership.shared)
                wrapped = IndexEncoder(
                    store,
                    identity_from_meta(store.identity_meta() or {}),
                    full=full,
                    cache_size=settings.text_cache_size,
                    warm=not ownership.shared,
                )
            vectors = VectorIndex.open(store)
        except BaseException:
            if store is not None:
                store.close()
            ownership.release()
            raise
        return cls(settings, wrapped, store, vectors, plugins or default_plugins(), ownership)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self._ownership.release()
        if self.store.wrote_side_texts:  # a reader embedded new texts: into DuckDB now, if the index is free
            from indexer.index_encoder import fold_side_texts

            fold_side_texts(self.store.index_dir)

    def __enter__(self) -> "SoundIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- indexing ----------------------------------------------------------------------------
    def index(
        self,
        paths: Sequence[str | Path],
        retry_failed: bool = False,
        progress: bool | None = None,
        on_progress=None,
        verify_content: bool = False,
        allow_empty_root: bool = False,
    ) -> IndexReport:
        """Index new and changed audio files under ``paths``."""
        from indexer.ray_pipeline import cluster_for
        from indexer.runner import IndexRunner

        full = self.encoder.full()
        runner = IndexRunner(
            self.store,
            self.vectors,
            full,
            self.settings,
            self.plugins,
            progress,
            on_progress,
            cluster=cluster_for(self.settings, full, self.plugins),
        )
        return runner.run(
            [str(p) for p in paths],
            retry_failed=retry_failed,
            verify_content=verify_content,
            allow_empty_root=allow_empty_root,
        )

    def tag(
        self,
        model: str,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        retag: bool = False,
        progress: bool | None = None,
        on_progress=None,
    ):
        """Tag the windows without tags from ``model`` (hub id, directory or ``alias=id``) on CLAP's device (a TagReport)."""
        from indexer.tag_pass import run_tag_pass

        return run_tag_pass(
            self.store,
            self.plugins,
            self.settings,
            model,
            top_k=top_k,
            function_to_apply=function_to_apply,
            retag=retag,
            device=str(self.encoder.device),
            progress=progress,
            on_progress=on_progress,
        )

    def transcribe(
        self,
        model: str,
        language: str | None = None,
        retranscribe: bool = False,
        progress: bool | None = None,
        on_progress=None,
        alias: str | None = None,
    ):
        """Transcribe the windows without a transcript from ``model`` (hub id, directory, ``alias=id`` or a plugin's
        transcriber name) on CLAP's device (a TranscribeReport)."""
        from indexer.transcribe_pass import run_transcribe_pass

        return run_transcribe_pass(
            self.store,
            self.plugins,
            self.settings,
            f"{alias}={model}" if alias else model,
            language=language,
            retranscribe=retranscribe,
            device=str(self.encoder.device),
            progress=progress,
            on_progress=on_progress,
        )

    # -- search ------------------------------------------------------------------------------
    def search(
        self,
        queries: list[str],
        k: int = 10,
        filters: Filters | None = None,
        strict: bool | None = None,
        prompt_template: str | None = None,
        localize: bool = False,
        fuse: str | None = None,
        said: str | None = None,
    ) -> SearchResponse:
        """Top-k windows per query by cosine between the query's text vector and the window vectors.

        ``prompt_template`` replaces the configured one for this search; ``localize`` adds to every hit where
        inside its window the sound is (`search.core.localize`). ``filters.said`` keeps the windows whose
        transcript says it (no queries: ranked by what is said alone; ``fuse="rrf"``: both rankings fused);
        ``said`` is the same as ``filters.said``.
        """
        if said:
            filters = (filters or Filters()).model_copy(update={"said": said})
        if (filters is not None and filters.said) or fuse:
            from search.core.said import said_search

            handled = said_search(self, queries, k, filters, fuse, strict, prompt_template, localize)
            if handled is not None:
                return handled
        if not queries:
            raise BadInput("no query given")
        if k < 1:
            raise BadInput("k must be at least 1")
        # A query with no English gets no hits (and its untranslated parts); the others still run.
        prepared = prepare_all(
            queries, self.plugins, with_prompt_template(self.settings, prompt_template), strict, keep_untranslated=True
        )
        qv = combined_vectors(self.encoder, [p.texts for p in prepared])
        allowed = None
        if filters is not None and not filters.is_empty():
            where, params = filters.to_sql(self.store.tag_models())
            allowed = self.store.window_ids_where(where, params)
            if filters.said:
                from search.core.said import said_allowed

                allowed = said_allowed(self, allowed, filters.said)
        results = []
        if self.vectors.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            hits_per_query: list[list] = [[] for _ in prepared]
        else:
            hits_per_query = top_k_hits(self.store, self.vectors, qv, k, allowed, self.window_matrix)
        for p, hits in zip(prepared, hits_per_query):
            results.append(
                QueryResult(
                    query=p.query,
                    texts=p.texts,
                    negatives=p.negatives,
                    untranslated=p.untranslated,
                    hits=hits if p.texts else [],
                )
            )
        if localize:
            from search.core.localize import localize_hits

            localize_hits(self, results, prompt_template=prompt_template, strict=strict)
        if filters is not None and filters.said:
            from search.core.said import attach_said

            attach_said(self, results, filters.said)
        return SearchResponse(results=results)

    # -- classification ----------------------------------------------------------------------
    def iter_classify(
        self,
        labels: list[str] | str,
        policy: str = "softmax",
        by: str = "window",
        top: int | None = None,
        threshold: float | None = None,
        filters: Filters | None = None,
        policy_options: dict | None = None,
        strict: bool | None = None,
        after: int | None = None,
        prompt_template: str | None = None,
        said: str | None = None,
    ) -> tuple[ClassifyResponse, Iterator[ClassifyRow]]:
        """The response header (labels, texts, policy) and a stream of rows, chunk by chunk (memory stays flat).

        ``after`` resumes a paged listing: only windows with a larger id (``by="window"``) or files with a
        larger id (``by="file"``) are scored; archive statistics always cover the whole index.
        """
        from search.core.classify import ClassifyOptions, check_policy_options, chunk_rows, policy_named, score_chunks

        if said:  # the same as filters.said: only windows whose transcript says it
            filters = (filters or Filters()).model_copy(update={"said": said})
        if by not in ("window", "file"):
            raise BadInput(f"--by must be window or file, not {by!r}")
        names = parse_labels(labels)
        scoring = policy_named(self.plugins.policies, policy)
        prepared = prepare_all(names, self.plugins, with_prompt_template(self.settings, prompt_template), strict)
        matrix = label_matrix(prepared, self.encoder)
        where, params = (filters or Filters()).to_sql(self.store.tag_models())
        # Chunks come from the memory-mapped window matrix; DuckDB only names the allowed ids and the paths.
        wm = self.window_matrix()
        chunk = chunk_rows(len(matrix.positive) + len(matrix.negative_owner), self.settings.classify_chunk)
        allowed = None if filters is None or filters.is_empty() else self._allowed_ids(where, params)
        if filters is not None and filters.said:
            from search.core.said import said_allowed

            allowed = said_allowed(self, allowed, filters.said)
        after = None if after is None else int(after)
        scope = wm.select(
            allowed, after_id=after if by == "window" else None, after_file_id=after if by == "file" else None
        )
        options = ClassifyOptions(by=by, top=top, threshold=threshold, policy_options=policy_options or {})
        check_policy_options(scoring, matrix, options)
        stats = self.label_stats(matrix) if scoring.needs_archive_stats else None
        paths = self.file_paths(wm.seq)
        chunks = wm.chunks(chunk, scope)
        rows = score_chunks(chunks, paths, matrix, scoring, stats, options)
        header = ClassifyResponse(
            labels=names,
            texts=[p.texts for p in prepared],
            policy=policy,
            by=by,
            rows=[],
            untranslated=[u for p in prepared for u in p.untranslated],
        )
        return header, rows

    def file_paths(self, seq: int) -> "FilePaths":
        """file id -> path, read once per commit (a file committed later is looked up on a miss)."""
        held = self._paths
        if held is None or held[0] != seq:
            held = self._paths = (seq, FilePaths(self.store))
        return held[1]

    def label_stats(self, matrix: "LabelMatrix") -> ArchiveStats:
        """Each label's logit distribution over the whole index (the archive policy), cached per label set and commit."""
        from search.core.classify import archive_stats, chunk_rows

        wm = self.window_matrix()
        chunk = chunk_rows(len(matrix.positive) + len(matrix.negative_owner), self.settings.classify_chunk)
        return wm.cached(_label_key(matrix), lambda: archive_stats(matrix, wm.chunks(chunk)))

    def window_matrix(self) -> WindowMatrix:
        """The memory-mapped window matrix of the last commit (written here when missing or stale)."""
        m = self._matrix
        if m is None or m.seq != self.store.commit_seq():
            m = self._matrix = WindowMatrix.current(self.store, self.vectors.lock)
        return m

    def vectors_exact(self) -> bool:
        """True while FAISS is an exact (flat) index."""
        return vectors_exact(self.vectors)

    def _allowed_ids(self, where: str, params: dict) -> np.ndarray:
        return self.store.window_ids_where(where, params)

    def classify(self, labels: list[str] | str, **kwargs) -> ClassifyResponse:
        """Every window (or file) scored against ``labels``; see `iter_classify` for the options."""
        header, rows = self.iter_classify(labels, **kwargs)
        header.rows = list(rows)
        return header

    def stats(self) -> dict:
        """Files (indexed, failed, skipped), windows, hours of audio, model and settings."""
        out = self.store.stats()
        out["faiss_vectors"] = self.vectors.ntotal
        return out


# -- one file, no index ----------------------------------------------------------------------
def classify_windows(
    audio_windows: list[np.ndarray],
    spans: list[tuple[float, float]],
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings,
    plugins: PluginHost,
    policy: str = "softmax",
    path: str | None = None,
    strict: bool | None = None,
    policy_options: dict | None = None,
    vectors: np.ndarray | None = None,
) -> FileClassification:
    """Score windows held in memory against ``labels``: per-window rows and the file row (max per label).

    ``vectors``: the windows' embeddings when already computed (then ``audio_windows`` is not read).
    """
    from search.core.classify import ClassifyOptions, check_policy_options, in_memory_chunks, policy_named, score_chunks

    names = parse_labels(labels)
    scoring = policy_named(plugins.policies, policy)
    if scoring.needs_archive_stats:
        raise BadInput(f"the {policy} policy needs an index (archive statistics); use it with `soundsift classify`")
    prepared = prepare_all(names, plugins, settings, strict)
    matrix = label_matrix(prepared, encoder)
    if vectors is None:
        vectors = (
            encoder.embed_windows(audio_windows) if audio_windows else np.zeros((0, encoder.embedding_dim), np.float32)
        )
    options = ClassifyOptions(by="window", policy_options=policy_options or {})
    check_policy_options(scoring, matrix, options)
    rows = list(
        score_chunks(iter(in_memory_chunks(vectors, spans)), {0: path or "<array>"}, matrix, scoring, None, options)
    )
    file_options = ClassifyOptions(by="file", policy_options=policy_options or {})
    file_row = next(
        score_chunks(
            iter(in_memory_chunks(vectors, spans)), {0: path or "<array>"}, matrix, scoring, None, file_options
        ),
        None,
    )
    if file_row is None:
        raise BadInput("no audio to classify")
    peak = next((i for i, (a, b) in enumerate(spans) if (a, b) == (file_row.start, file_row.end)), None)
    file_row.peak_window, file_row.peak_start, file_row.peak_end = peak, file_row.start, file_row.end
    if peak is not None and not file_row.extras:
        file_row.extras = dict(rows[peak].extras)  # the file's confidence is its peak window's
    for row in rows + [file_row]:
        row.window_id = None
        row.file_id = None
    return FileClassification(
        path=path, labels=names, texts=[p.texts for p in prepared], policy=policy, windows=rows, file=file_row
    )


def classify_array(
    audio: np.ndarray,
    sample_rate: int,
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings | None = None,
    plugins: PluginHost | None = None,
    policy: str = "softmax",
    policy_options: dict | None = None,
) -> FileClassification:
    """Classify an in-memory mono (or (frames, channels)) array at ``sample_rate``, window by window."""
    import soxr

    from indexer.windows import WindowCutter

    settings = settings or load_settings()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if not np.isfinite(audio).all():
        raise BadInput("the audio has non-finite samples")
    if sample_rate != TARGET_RATE:
        audio = soxr.resample(audio, sample_rate, TARGET_RATE, quality="HQ").astype(np.float32)
    window, hop = int(round(settings.window_s * TARGET_RATE)), int(round(settings.hop_s * TARGET_RATE))
    cutter = WindowCutter(window, hop)
    pieces = list(cutter.feed(audio)) + list(cutter.finish())
    return classify_windows(
        [w for _, w in pieces],
        [(s.start / TARGET_RATE, (s.start + s.length) / TARGET_RATE) for s, _ in pieces],
        labels,
        encoder,
        settings,
        plugins or default_plugins(),
        policy,
        policy_options=policy_options,
    )


def classify_file(
    path: str | Path,
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings | None = None,
    plugins: PluginHost | None = None,
    policy: str = "softmax",
    timeout_s: float | None = None,
    policy_options: dict | None = None,
    **options,
) -> FileClassification:
    """Classify one file without an index; decoding runs in a worker process under a time limit.

    ``options``: threshold, prompt_template, start, duration (seconds), envelope_points, mel_width, strict
    (see `search.core.one_file.classify_file`).
    """
    from search.core.one_file import classify_file as classify_one

    return classify_one(path, labels, encoder, settings, plugins, policy, timeout_s, policy_options, **options)


_ENCODERS: dict[tuple, ClapEncoder] = {}


def classify_audio_result(
    path: str | Path,
    labels: list[str] | str,
    *,
    policy: str = "softmax",
    policy_options: dict | None = None,
    threshold: float | dict | None = None,
    prompt_template: str | None = None,
    start: float | None = None,
    duration: float | None = None,
    model: str | None = None,
    device: str | None = None,
    encoder: ClapEncoder | None = None,
    settings: Settings | None = None,
    envelope_points: int = 0,
) -> FileClassification:
    """One audio file classified against ``labels``: the whole `FileClassification` (windows, file row, info, warnings).

    The model is ``encoder``, else ``model`` (loaded once per process and kept), else the configured one.
    """
    settings = settings or load_settings(model=model, device=device)
    if encoder is None:
        key = (settings.model or DEFAULT_MODEL, settings.model_revision, settings.device, settings.precision)
        encoder = _ENCODERS.get(key) or _ENCODERS.setdefault(key, load_encoder(settings))
    return classify_file(
        path,
        labels,
        encoder,
        settings,
        policy=policy,
        policy_options=policy_options,
        threshold=threshold,
        prompt_template=prompt_template,
        start=start,
        duration=duration,
        envelope_points=envelope_points,
    )


def classify_audio(path: str | Path, labels: list[str] | str, *, detailed: bool = False, **options):
    """``{label: score}`` for one audio file, as the transformers pipeline's users expect (the file row: each
    label's best window). ``detailed=True`` returns the whole `FileClassification` instead. ``options`` are
    those of `classify_audio_result` (policy, policy_options, threshold, prompt_template, start, duration, model...).
    """
    result = classify_audio_result(path, labels, **options)
    return result if detailed else dict(result.file.scores)


def dumps(model) -> str:
    """One JSON document for a result model (the --json output)."""
    return json.dumps(model.model_dump(mode="json") if hasattr(model, "model_dump") else model, ensure_ascii=False)
