"""The Python API: open or create an index, index paths, search, classify, classify one file or array.

The CLI and the HTTP API are thin layers over this module (``search.sound_index`` is its older name, kept as an alias).
The top-k algorithm itself lives in ``search.core.topk``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.audio_onnx import pick_onnx_audio, remember_checkpoint
from indexer.errors import BadInput
from indexer.index_encoder import IndexEncoder, identity_from_meta
from indexer.matrix import WindowMatrix
from indexer.model import ClapEncoder, load_clap, load_clap_text
from indexer.ownership import IndexOwnership
from indexer.queries import stored_meta_rows, stored_model_id
from indexer.settings import DEFAULT_MODEL, Settings, load_settings
from indexer.store import DB_NAME, IndexStore
from indexer.tiny_clap import is_tiny
from indexer.vectors import VectorIndex
from plugins.contract import ArchiveStats
from plugins.manager import PluginHost, default_plugins
from search.core.options import DEFAULT_POLICY, with_prompt_template
from search.core.prompts import combined_vectors, named_labels, parse_labels, prepare_all
from search.core.requests import ClassifyArchiveOptions, ClassifyFileOptions, SearchOptions
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
    from search.core.like import LikeQuery

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
    # Remembered by the checkpoint's files, so that an owner that finds this model's ONNX exports later loads nothing.
    remember_checkpoint(model, settings.model_revision, encoder.identity)
    return encoder


def write_model_exports(settings: Settings) -> tuple[str, str]:
    """Load the model settings name and write its ONNX text and audio towers unless sound ones are there; says which
    of each (the audio line says why when there is none: exports off, or a model not on the CPU)."""
    from indexer.audio_onnx import audio_mode, check_or_write_audio_export, rates_line
    from indexer.text_onnx import check_or_write_export

    encoder = load_encoder(settings)
    where, written = check_or_write_export(encoder, encoder.identity)
    text = f"{where} ({'written' if written else 'already there, checked'}) for {encoder.identity.describe()}"
    if audio_mode() == "off":
        return text, "not written (SOUNDSIFT_AUDIO_ONNX=0)"
    if encoder.device.type != "cpu":
        return text, f"not written (the model is on {encoder.device}; the audio export serves CPU indexing)"
    audio_where, audio_written = check_or_write_audio_export(encoder)
    state = "written" if audio_written else "already there, checked"
    return text, f"{audio_where} ({state}; {rates_line(audio_where)})"


def _model_source(model: str) -> str:
    target = Path(model).expanduser()
    return str(target.resolve()) if target.is_dir() else model


def _other_model(settings: Settings, index_dir: Path) -> bool:
    """True when the settings name a model other than the one the index records (checked by loading it at once)."""
    if not settings.model:
        return False
    return _model_source(settings.model) != stored_model_id(index_dir)


def _owner_identity(settings: Settings, index_dir: Path):
    """The identity an owner's model will have, known without loading it: the index's record of it (with these
    settings' window and hop), or the record of the checkpoint's last full load; None when neither is at hand."""
    from indexer.audio_onnx import remembered_identity

    meta = stored_meta_rows(index_dir)  # one read: empty for a new index
    if meta and not (settings.model and _model_source(settings.model) != meta.get("model_id")):
        known = identity_from_meta(meta) if meta.get("model_fingerprint") else None
    else:
        known = remembered_identity(settings.model or DEFAULT_MODEL, settings.model_revision)
    if known is None:
        return None
    features = {**known.feature_config, "window_s": float(settings.window_s), "hop_s": float(settings.hop_s)}
    return dataclasses.replace(known, feature_config=features)


def reader_encoder(settings: Settings, store: IndexStore, long_lived: bool = False) -> IndexEncoder:
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
        long_lived=long_lived,
    )


def _label_key(matrix: "LabelMatrix") -> str:
    """A short key for a label set's vectors (archive statistics are cached per label set and filter)."""
    import hashlib

    from search.core.scorers import as_numpy

    digest = hashlib.sha256(as_numpy(matrix.positive).tobytes())
    digest.update(as_numpy(matrix.negative).tobytes())
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
        vectors: VectorIndex | None,
        plugins: PluginHost,
        ownership: IndexOwnership,
    ):
        self.settings = settings
        self.encoder = encoder
        self.store = store
        self._vectors = vectors  # None: a reader's FAISS index, read on first use (classify never needs it)
        # The writers' lock: an owner's is its FAISS index's; a reader's guards the first read of FAISS.
        self._lock = vectors.lock if vectors is not None else threading.RLock()
        self.plugins = plugins
        self._ownership = ownership
        self._matrix: WindowMatrix | None = None
        self._paths: tuple[int, FilePaths] | None = None

    @property
    def vectors(self) -> VectorIndex:
        """The FAISS index, brought up to the store's last commit; a reader reads it on first use."""
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    self._vectors = VectorIndex.open(self.store)
        return self._vectors

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
        audio = None
        try:
            if encoder is None and ownership.shared and not _other_model(settings, index_dir):
                # A reader: no model yet. The text tower loads on the first text the index does not remember,
                # the audio tower only if audio is embedded.
                store = IndexStore.open(index_dir, None, create=False, read_only=True)
                wrapped = reader_encoder(settings, store, long_lived=role == "serve")
            else:
                # An owner on a CPU with the model's ONNX exports embeds without torch (indexer/audio_onnx.py).
                if encoder is None:
                    audio = pick_onnx_audio(settings, lambda: _owner_identity(settings, index_dir))
                full = encoder or (None if audio is not None else load_encoder(settings, index_dir))
                loaded = full or audio
                assert loaded is not None
                if audio is not None:
                    warn_if_tiny(audio)
                if create:  # before the index is created with a window the model cannot take
                    from indexer.runner import check_window

                    check_window(settings.window_s, loaded)
                store = IndexStore.open(index_dir, loaded.identity, create=create, read_only=ownership.shared)
                wrapped = IndexEncoder(
                    store,
                    identity_from_meta(store.identity_meta() or {}),
                    full=full,
                    load_full=lambda: load_encoder(settings, index_dir),
                    cache_size=settings.text_cache_size,
                    warm=not ownership.shared,
                    text_onnx=encoder is None,  # an encoder given by the caller embeds its own texts
                    audio=audio,
                    long_lived=role == "serve",
                )
                if audio is not None:
                    audio.allow_hand_over(wrapped.full)
            # An owner brings FAISS up to date now (its crash recovery); a reader reads it when it first searches.
            vectors = None if ownership.shared else VectorIndex.open(store)
        except BaseException:
            if store is not None:
                store.close()
            ownership.release()
            raise
        plugins = plugins or default_plugins()
        store.policies = plugins.policies  # label-set watches score new windows with these at commit
        return cls(settings, wrapped, store, vectors, plugins, ownership)

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

        embedder = self.encoder.audio_encoder()
        runner = IndexRunner(
            self.store,
            self.vectors,
            embedder,
            self.settings,
            self.plugins,
            progress,
            on_progress,
            cluster=cluster_for(self.settings, embedder, self.plugins),
        )
        report = runner.run(
            [str(p) for p in paths],
            retry_failed=retry_failed,
            verify_content=verify_content,
            allow_empty_root=allow_empty_root,
        )
        if self.encoder.audio_tower_loaded:  # torch and the model are loaded anyway: readers after this need neither
            self.write_exports()
        return report

    def write_exports(self, force: bool = False) -> Path | None:
        """Write the model's ONNX text tower and, on a CPU, its audio tower (once per model and machine) when absent or
        damaged; the text export's directory. Loads the whole CLAP if it is not loaded. None when exports are off or
        the text export could not be written (a warning)."""
        from indexer.audio_onnx import ensure_audio_export
        from indexer.text_onnx import ensure_text_export

        full = self.encoder.full()
        where = ensure_text_export(full, full.identity, force=force)
        if where is not None:
            self.encoder.retry_text_onnx()
            if full.device.type == "cpu" and full.identity.model_id:
                ensure_audio_export(full, force=force)  # the next owner on this CPU indexes without torch
        return where

    write_text_export = write_exports  # the name before the audio export existed

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
        like: "LikeQuery | None" = None,
        probe: str | None = None,
        fuse: str | None = None,
        said: str | None = None,
        *,
        options: SearchOptions | None = None,
    ) -> SearchResponse:
        """Top-k windows per query by cosine between the query's text vector and the window vectors.

        ``prompt_template`` replaces the configured one for this search; ``localize`` adds to every hit where
        inside its window the sound is (`search.core.localize`). ``like`` (a `search.core.like.LikeQuery`) mixes
        the texts with examples into one query (Rocchio); ``probe`` (``PROBE:CLASS``) ranks by a probe's probability.
        ``filters.said`` keeps the windows whose transcript says it (no queries: ranked by what is said alone;
        ``fuse="rrf"``: both rankings fused); ``said`` is the same as ``filters.said``. ``options`` (a
        `SearchOptions`, as the CLI and the server client pass it) replaces the keyword arguments.
        """
        o = options or SearchOptions(k, filters, strict, prompt_template, localize, like, probe, fuse)
        k, filters, strict, prompt_template, localize = o.k, o.filters, o.strict, o.prompt_template, o.localize
        like, probe, fuse = o.like, o.probe, o.fuse
        if said:
            filters = (filters or Filters()).model_copy(update={"said": said})
        by_example = like is not None and not like.is_empty()
        if ((filters is not None and filters.said) or fuse) and not by_example and not probe:
            from search.core.said import said_search

            handled = said_search(self, queries, k, filters, fuse, strict, prompt_template, localize)
            if handled is not None:
                return handled
        if not queries and not by_example and not probe:
            raise BadInput("no query given")
        if k < 1:
            raise BadInput("k must be at least 1")
        # A query with no English gets no hits (and its untranslated parts); the others still run.
        prepared = prepare_all(
            queries, self.plugins, with_prompt_template(self.settings, prompt_template), strict, keep_untranslated=True
        )
        allowed = self.allowed_ids(filters)
        if probe:
            from search.core.probes import search_probe

            return SearchResponse(results=[search_probe(self, probe, k, allowed)])
        qv = (
            combined_vectors(self.encoder, [p.texts for p in prepared if p.texts])
            if any(p.texts for p in prepared)
            else None
        )
        if by_example:
            from search.core.like import search_like

            results = [search_like(self, prepared, qv, like, k, allowed)]  # type: ignore[arg-type]
            if localize:
                from search.core.localize import localize_hits

                localize_hits(self, results, prompt_template=prompt_template, strict=strict)
            return SearchResponse(results=results)
        qv = combined_vectors(self.encoder, [p.texts for p in prepared])
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
        policy: str = DEFAULT_POLICY,
        by: str = "window",
        top: int | None = None,
        threshold: float | None = None,
        filters: Filters | None = None,
        policy_options: dict | None = None,
        strict: bool | None = None,
        after: int | None = None,
        prompt_template: str | None = None,
        probe: str | None = None,
        label_names: list[str] | None = None,
        said: str | None = None,
        *,
        options: ClassifyArchiveOptions | None = None,
    ) -> tuple[ClassifyResponse, Iterator[ClassifyRow]]:
        """The response header (labels, texts, policy) and a stream of rows, chunk by chunk (memory stays flat).

        ``after`` resumes a paged listing: only windows with a larger id (``by="window"``) or files with a
        larger id (``by="file"``) are scored; archive statistics always cover the whole index.
        ``label_names`` names the rows' labels (a label set's classes) when ``labels`` are the texts to embed.
        ``options`` (a `ClassifyArchiveOptions`, as the CLI and the server client pass it) replaces the keyword
        arguments.
        """
        o = options or ClassifyArchiveOptions(
            policy,
            by,
            top,
            threshold,
            filters,
            policy_options or {},
            strict,
            prompt_template,
            after,
            probe,
            label_names,
        )
        policy, by, top, threshold, filters = o.policy, o.by, o.top, o.threshold, o.filters
        policy_options, strict, after, prompt_template = o.policy_options, o.strict, o.after, o.prompt_template
        probe, label_names = o.probe, o.label_names
        from search.core.classify import (
            ClassifyOptions,
            check_policy_options,
            chunk_rows,
            label_matrix,
            policy_named,
            score_chunks,
        )

        if said:  # the same as filters.said: only windows whose transcript says it
            filters = (filters or Filters()).model_copy(update={"said": said})
        if by not in ("window", "file"):
            raise BadInput(f"--by must be window or file, not {by!r}")
        scoring = policy_named(self.plugins.policies, policy)
        if probe is not None:  # a stored probe scores the windows in place of a label set
            from search.core.probes import load_scorer

            matrix: Any = load_scorer(self.store, probe)
            names, prepared, width = list(matrix.classes), [], len(matrix.classes)
        else:
            names = parse_labels(labels)
            prepared = prepare_all(names, self.plugins, with_prompt_template(self.settings, prompt_template), strict)
            names = named_labels(names, prepared, label_names)
            matrix = label_matrix(prepared, self.encoder)
            width = len(matrix.positive) + len(matrix.negative_owner)
        # Chunks come from the memory-mapped window matrix; DuckDB only names the allowed ids and the paths.
        wm = self.window_matrix()
        chunk = chunk_rows(width, self.settings.classify_chunk)
        allowed = self.allowed_ids(filters)
        after = None if after is None else int(after)
        scope = wm.select(
            allowed, after_id=after if by == "window" else None, after_file_id=after if by == "file" else None
        )
        scoring_options = ClassifyOptions(by=by, top=top, threshold=threshold, policy_options=policy_options or {})
        check_policy_options(scoring, matrix, scoring_options)
        stats = self.label_stats(matrix) if scoring.needs_archive_stats else None
        paths = self.file_paths(wm.seq)
        chunks = wm.chunks(chunk, scope)
        rows = score_chunks(chunks, paths, matrix, scoring, stats, scoring_options)
        header = ClassifyResponse(
            labels=names,
            texts=[p.texts for p in prepared] if probe is None else [[f"probe {probe}"] for _ in names],
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
        label_set = hasattr(matrix, "positive")  # else a probe: its own weights key the statistics
        width = len(matrix.positive) + len(matrix.negative_owner) if label_set else len(matrix.labels)
        key = _label_key(matrix) if label_set else matrix.key  # type: ignore[attr-defined]
        return wm.cached(key, lambda: archive_stats(matrix, wm.chunks(chunk_rows(width, self.settings.classify_chunk))))

    def window_matrix(self) -> WindowMatrix:
        """The memory-mapped window matrix of the last commit (written here when missing or stale)."""
        m = self._matrix
        if m is None or m.seq != self.store.commit_seq():
            m = self._matrix = WindowMatrix.current(self.store, self._lock)
        return m

    def vectors_exact(self) -> bool:
        """True while FAISS is an exact (flat) index."""
        return vectors_exact(self.vectors)

    def _allowed_ids(self, where: str, params: dict) -> np.ndarray:
        return self.store.window_ids_where(where, params)

    def allowed_ids(self, filters: Filters | None) -> np.ndarray | None:
        """Window ids the filters allow (None: no filter); ``probe:PROBE:CLASS>=p`` tags score the probe here and
        ``said`` asks the transcripts' full-text index."""
        from search.core.probes import probe_allowed_ids, split_probe_filters

        rest, conditions = split_probe_filters(filters)
        allowed = None
        if rest is not None and not rest.is_empty():
            where, params = rest.to_sql(self.store.tag_models())
            allowed = self._allowed_ids(where, params)
        if conditions:
            by_probe = probe_allowed_ids(self.store, self.window_matrix(), conditions)
            allowed = by_probe if allowed is None else np.intersect1d(allowed, by_probe)
        if filters is not None and filters.said:
            from search.core.said import said_allowed

            allowed = said_allowed(self, allowed, filters.said)
        return allowed

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
# Public here, defined with their concept; imported on first use because they pull in torch.
_LAZY = {
    "label_matrix": "search.core.classify",
    "classify_windows": "search.core.one_file",
    "classify_array": "search.core.one_file",
    "classify_file": "search.core.one_file",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_ENCODERS: dict[tuple, ClapEncoder] = {}  # model key -> encoder, loaded once per process
_ENCODERS_LOCK = threading.Lock()


def classify_audio_result(
    path: str | Path,
    labels: list[str] | str,
    *,
    policy: str = DEFAULT_POLICY,
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
    from search.core.one_file import classify_file

    settings = settings or load_settings(model=model, device=device)
    if encoder is None:
        key = (settings.model or DEFAULT_MODEL, settings.model_revision, settings.device, settings.precision)
        with _ENCODERS_LOCK:  # threads asking for the same model at once load it once
            encoder = _ENCODERS.get(key) or _ENCODERS.setdefault(key, load_encoder(settings))
    options = ClassifyFileOptions(
        policy, policy_options or {}, threshold, prompt_template, start, duration, envelope_points
    )
    return classify_file(path, labels, encoder, settings, options=options)


class LocalFiles:
    """Classifies files in this process with the configured model, loaded on first use (`classify-file` without a
    server); the same call as `search.cli.client.RemoteIndex.classify_file`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._encoder: ClapEncoder | None = None

    def classify_file(self, path: Path, labels: str, options: ClassifyFileOptions) -> FileClassification:
        """One file scored per window and as a whole (decoded in a worker process)."""
        from search.core.one_file import classify_file

        if self._encoder is None:
            self._encoder = load_encoder(self.settings)
        return classify_file(path, labels, self._encoder, self.settings, options=options)


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
