"""Files and windows of an open index as the HTTP API lists them (a file's windows optionally scored)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from indexer.errors import BadInput
from indexer.store import WindowChunk
from indexer.tag_store import tags_of_windows
from search.core.classify import ClassifyOptions, label_matrix, policy_named, score_chunks
from search.core.options import DEFAULT_POLICY
from search.core.prompts import combined_vectors, parse_labels, prepare_all
from search.http.models import FileDetail, FileInfo, FilesPage, TranscriptSegment, TranscriptWord, WindowInfo

if TYPE_CHECKING:
    from search.sound_index import SoundIndex

_FILE_COLUMNS = "f.id, f.path, f.status, f.error, f.size, f.mtime, f.duration, f.sample_rate, f.channels, f.codec"


def _file_info(row) -> FileInfo:
    names = [
        "id",
        "path",
        "status",
        "error",
        "size",
        "mtime",
        "duration",
        "sample_rate",
        "channels",
        "codec",
        "window_count",
    ]
    return FileInfo(**dict(zip(names, row)))


def list_files(sx: SoundIndex, limit: int, offset: int, path_glob: str | None, status: str | None) -> FilesPage:
    """A page of files ordered by path, with their window counts."""
    where, params = ["TRUE"], {}
    if path_glob:
        where.append("f.path GLOB $glob")
        params["glob"] = path_glob
    if status:
        where.append("f.status = $status")
        params["status"] = status
    total, rows = sx.store.file_rows(_FILE_COLUMNS, " AND ".join(where), params, limit=limit, offset=offset)
    return FilesPage(total=total, offset=offset, files=[_file_info(r) for r in rows])


def file_detail(
    sx: SoundIndex, file_id: int, query: str | None = None, labels: str | None = None, policy: str = DEFAULT_POLICY
) -> FileDetail | None:
    """One file with its windows (tags = acoustic stats), optionally scored against a query or a label set."""
    _, found = sx.store.file_rows(_FILE_COLUMNS, "f.id = $id", {"id": int(file_id)}, with_window_count=False)
    if not found:
        return None
    row = found[0]
    stored = sx.store.windows_of_file(file_id)
    labelled = tags_of_windows(sx.store.cursor(), stored.ids)
    windows = [
        WindowInfo(id=i, start=s, end=e, tags=t, model_tags=labelled.get(i, {}))
        for i, s, e, t in zip(stored.ids, stored.starts, stored.ends, stored.tags)
    ]
    detail = FileDetail(
        **_file_info(row).model_dump(exclude={"window_count"}),
        window_count=len(windows),
        windows=windows,
        transcript=transcript_of_file(sx, file_id),
    )
    if not windows or not (query or labels):
        return detail
    vectors = stored.vectors
    if query:
        prepared = prepare_all([query], sx.plugins, sx.settings, None)
        qv = combined_vectors(sx.encoder, [prepared[0].texts])[0]
        for w, score in zip(windows, vectors @ qv):
            w.score = float(score)
        detail.query_texts = prepared[0].texts
    else:
        _score_labels(sx, windows, vectors, labels or "", policy)
    return detail


def _score_labels(sx: SoundIndex, windows: list[WindowInfo], vectors: np.ndarray, labels: str, policy: str) -> None:
    names = parse_labels(labels)
    scoring = policy_named(sx.plugins.policies, policy)
    matrix = label_matrix(prepare_all(names, sx.plugins, sx.settings, None), sx.encoder)
    stats = sx.label_stats(matrix) if scoring.needs_archive_stats else None
    chunk = WindowChunk(
        ids=np.array([w.id for w in windows], np.int64),
        file_ids=np.zeros(len(windows), np.int64),
        starts=np.array([w.start for w in windows]),
        ends=np.array([w.end for w in windows]),
        vectors=vectors,
    )
    rows = {
        r.window_id: r
        for r in score_chunks(iter([chunk]), {0: ""}, matrix, scoring, stats, ClassifyOptions(by="window"))
    }
    for w in windows:
        r = rows[w.id]
        w.scores, w.label = r.scores, r.label
        w.score = r.scores[r.label] if r.label else max(r.scores.values())


def check_labels(labels, limit: int) -> list[str]:
    """Parsed labels, refusing more than ``limit``."""
    names = parse_labels(labels)
    if len(names) > limit:
        raise BadInput(f"at most {limit} labels")
    return names


def transcript_of_file(sx: SoundIndex, file_id: int) -> list[TranscriptSegment]:
    """The file's transcript segments with speech, in time order (every model's)."""
    from indexer.transcript_store import segments_of_file

    return [
        TranscriptSegment(
            window_id=seg.window_id,
            start=seg.start,
            end=seg.end,
            text=seg.text,
            model=seg.alias,
            language=seg.language,
            words=[TranscriptWord(text=w[0], start=w[1], end=w[2]) for w in seg.words],
        )
        for _, _, seg in segments_of_file(sx.store.cursor(), int(file_id))
        if seg.text.strip()
    ]
