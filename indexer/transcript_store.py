"""Transcripts in DuckDB: what speech models heard in each window, keyed by model id and revision.

``transcript_models`` holds one row per model id (revision, alias, language asked for, sample rate);
``window_transcripts`` one row per window and model: the window's text, its language, the words with
their times (seconds from the start of the file) and the segment's own start and end inside the window.
``seq`` grows with every commit of transcripts, so the full-text index (indexer/fulltext.py) can catch up
with what it has not seen yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from indexer.arrow_columns import column, id_table
from indexer.arrow_columns import table as arrow_table

TRANSCRIPT_TABLES = (  # the store's migration 10
    "CREATE TABLE IF NOT EXISTS transcript_models (model VARCHAR NOT NULL, revision VARCHAR NOT NULL, "
    "alias VARCHAR NOT NULL, language VARCHAR, sample_rate INTEGER, updated_at TIMESTAMP DEFAULT current_timestamp)",
    "CREATE TABLE IF NOT EXISTS window_transcripts (window_id BIGINT NOT NULL, model VARCHAR NOT NULL, "
    "revision VARCHAR NOT NULL, language VARCHAR, text VARCHAR NOT NULL, words JSON NOT NULL, "
    "seg_start DOUBLE NOT NULL, seg_end DOUBLE NOT NULL, seq BIGINT NOT NULL)",
)


@dataclass(frozen=True)
class TranscriptModel:
    """What the index records about one speech model."""

    model: str
    revision: str
    alias: str
    language: str | None = None
    sample_rate: int | None = None

    @classmethod
    def of(cls, transcriber, stored: "TranscriptModel | None" = None) -> "TranscriptModel":
        """The record of a loaded `SpeechTranscriber` (keeping the ``stored`` alias unless it was given one)."""
        alias = transcriber.alias
        if stored is not None and not getattr(transcriber, "alias_explicit", True):
            alias = stored.alias
        return cls(
            transcriber.model_id,
            transcriber.revision,
            alias,
            getattr(transcriber, "language", None),
            int(transcriber.sample_rate),
        )

    def describe(self) -> str:
        return f"{self.model}@{self.revision[:23]}"


@dataclass(frozen=True)
class Segment:
    """One stored transcript: a window's text as one model heard it, with its words' times (file seconds)."""

    window_id: int
    model: str
    alias: str
    language: str | None
    text: str
    words: list[tuple[str, float, float]]
    start: float  # the segment's own start and end inside the window (its first and last word)
    end: float


@dataclass
class TranscriptRows:
    """Transcripts of one model and revision, ready to insert (one per window)."""

    model: TranscriptModel
    window_ids: list[int] = field(default_factory=list)
    languages: list[str | None] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)  # JSON [[text, start, end], ...]
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)

    @classmethod
    def empty(cls, model: TranscriptModel) -> "TranscriptRows":
        return cls(model)

    def add(self, window_id: int, window_start: float, window_end: float, transcript) -> None:
        """One window's `WindowTranscript` (word times from the window start) as file-time rows.

        A window's text is the words whose times fall inside it: a word starting past the window's end
        is left out and one running past it ends there. Without word times the segment spans the window.
        """
        span = max(0.0, float(window_end) - float(window_start))
        words: list[tuple[str, float, float]] = []
        for w in getattr(transcript, "words", None) or []:
            start = min(max(0.0, float(w.start)), span)
            if float(w.start) >= span and span > 0:
                continue
            end = min(max(start, float(w.end)), span)
            words.append((str(w.text), round(window_start + start, 4), round(window_start + end, 4)))
        self.window_ids.append(int(window_id))
        self.languages.append(getattr(transcript, "language", None) or self.model.language)
        self.texts.append(str(transcript.text))
        self.words.append(json.dumps(words, ensure_ascii=False))
        has_text = bool(str(transcript.text).strip())
        self.starts.append(words[0][1] if words else float(window_start))
        self.ends.append(words[-1][2] if words else (float(window_end) if has_text else float(window_start)))

    def __len__(self) -> int:
        return len(self.window_ids)


def has_transcript_tables(cur) -> bool:
    """False for an index written before transcripts existed and opened read-only."""
    rows = cur.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('transcript_models', 'window_transcripts') "
        "AND database_name = current_database()"
    ).fetchall()
    return int(rows[0][0]) == 2


def stored_models(cur) -> dict[str, TranscriptModel]:
    """model id -> its record, for every speech model that has transcribed this index."""
    if not has_transcript_tables(cur):
        return {}
    rows = cur.execute(
        "SELECT model, revision, alias, language, sample_rate FROM transcript_models ORDER BY model"
    ).fetchall()
    return {r[0]: TranscriptModel(r[0], r[1], r[2], r[3], r[4]) for r in rows}


def drop_model(cur, model_id: str) -> None:
    """Every transcript of ``model_id`` (all revisions) and its record: the start of a re-transcription."""
    cur.execute("DELETE FROM window_transcripts WHERE model = ?", [model_id])
    cur.execute("DELETE FROM transcript_models WHERE model = ?", [model_id])


def upsert_model(cur, model: TranscriptModel) -> None:
    cur.execute("DELETE FROM transcript_models WHERE model = ?", [model.model])
    cur.execute(
        "INSERT INTO transcript_models (model, revision, alias, language, sample_rate) VALUES (?, ?, ?, ?, ?)",
        [model.model, model.revision, model.alias, model.language, model.sample_rate],
    )


def insert_rows(cur, rows: TranscriptRows) -> None:
    """Replace what ``rows.model`` holds for these windows (an older revision's too) with ``rows``."""
    if not len(rows):
        return
    seq = int(cur.execute("SELECT coalesce(max(seq), 0) + 1 FROM window_transcripts").fetchall()[0][0])
    table = arrow_table(
        {
            "window_id": column(rows.window_ids, pa.int64()),
            "language": column(rows.languages, pa.string()),
            "text": column(rows.texts, pa.string()),
            "words": column(rows.words, pa.string()),
            "seg_start": column(rows.starts, pa.float64()),
            "seg_end": column(rows.ends, pa.float64()),
        }
    )
    cur.register("new_window_transcripts", table)
    try:
        cur.execute(
            "DELETE FROM window_transcripts WHERE model = ? AND window_id IN "
            "(SELECT DISTINCT window_id FROM new_window_transcripts)",
            [rows.model.model],
        )
        cur.execute(
            "INSERT INTO window_transcripts SELECT window_id, ?, ?, language, text, words::JSON, seg_start, seg_end, ? "
            "FROM new_window_transcripts",
            [rows.model.model, rows.model.revision, seq],
        )
    finally:
        cur.unregister("new_window_transcripts")


def delete_for_windows(cur, window_ids: np.ndarray) -> None:
    """Drop the transcripts of windows leaving the index (same transaction as the windows)."""
    if not len(window_ids) or not has_transcript_tables(cur):
        return
    cur.register("gone_transcript_ids", id_table("wid", window_ids))
    try:
        cur.execute("DELETE FROM window_transcripts WHERE window_id IN (SELECT wid FROM gone_transcript_ids)")
    finally:
        cur.unregister("gone_transcript_ids")


def pending_windows(cur, model: TranscriptModel, everything: bool = False) -> tuple[list[tuple], int]:
    """(file id, path, size, mtime, window id, start, end) rows still to transcribe, by file and start; and how many are done."""
    base = (
        'SELECT f.id, f.path, f.size, f.mtime, w.id, w.start, w."end" FROM windows w JOIN files f ON f.id = w.file_id '
        "WHERE f.status = 'indexed'"
    )
    if everything:
        return cur.execute(base + " ORDER BY f.id, w.start, w.id").fetchall(), 0
    rows = cur.execute(
        base + " AND NOT EXISTS (SELECT 1 FROM window_transcripts t WHERE t.window_id = w.id AND t.model = ? "
        "AND t.revision = ?) ORDER BY f.id, w.start, w.id",
        [model.model, model.revision],
    ).fetchall()
    total = cur.execute(
        "SELECT count(*) FROM windows w JOIN files f ON f.id = w.file_id WHERE f.status = 'indexed'"
    ).fetchall()[0][0]
    return rows, int(total) - len(rows)


def _segments(rows) -> list[Segment]:
    return [
        Segment(int(r[0]), r[1], r[2], r[3], r[4], [tuple(x) for x in json.loads(r[5])], float(r[6]), float(r[7]))
        for r in rows
    ]


_SEGMENT_COLUMNS = (
    "t.window_id, t.model, coalesce(m.alias, t.model), t.language, t.text, CAST(t.words AS VARCHAR), "
    "t.seg_start, t.seg_end FROM window_transcripts t LEFT JOIN transcript_models m ON m.model = t.model"
)


def segments_of_windows(cur, window_ids: Sequence[int]) -> list[Segment]:
    """The stored transcripts of these windows (every model), by window and model."""
    if not len(window_ids) or not has_transcript_tables(cur):
        return []
    cur.register("said_window_ids", id_table("wid", window_ids))
    try:
        rows = cur.execute(
            f"SELECT {_SEGMENT_COLUMNS} WHERE t.window_id IN (SELECT wid FROM said_window_ids) "
            "ORDER BY t.window_id, t.model"
        ).fetchall()
    finally:
        cur.unregister("said_window_ids")
    return _segments(rows)


def segments_of_file(cur, file_id: int) -> list[tuple[float, float, Segment]]:
    """(window start, window end, segment) for every transcript of one file's windows, in time order."""
    if not has_transcript_tables(cur):
        return []
    rows = cur.execute(
        f'SELECT w.start, w."end", {_SEGMENT_COLUMNS} JOIN windows w ON w.id = t.window_id '
        "WHERE w.file_id = ? ORDER BY w.start, t.model",
        [int(file_id)],
    ).fetchall()
    return [(float(r[0]), float(r[1]), s) for r, s in zip(rows, _segments([r[2:] for r in rows]))]


def rows_since(cur, seq: int) -> list[tuple[int, str, str]]:
    """(window id, model, text) of transcripts committed after ``seq``, oldest first, for the full-text index."""
    if not has_transcript_tables(cur):
        return []
    return cur.execute(
        "SELECT window_id, model, text FROM window_transcripts WHERE seq > ? ORDER BY seq", [int(seq)]
    ).fetchall()


def version(cur) -> tuple[int, int]:
    """(highest seq, row count) of the stored transcripts: what the full-text index compares itself with."""
    if not has_transcript_tables(cur):
        return 0, 0
    row = cur.execute("SELECT coalesce(max(seq), 0), count(*) FROM window_transcripts").fetchall()[0]
    return int(row[0]), int(row[1])


def summary(cur) -> list[dict]:
    """Each speech model with its revision, alias, language, windows transcribed and windows with any speech."""
    if not has_transcript_tables(cur):
        return []
    counts = {
        r[0]: (int(r[1]), int(r[2]))
        for r in cur.execute(
            "SELECT model, count(*), count(*) FILTER (WHERE trim(text) <> '') FROM window_transcripts GROUP BY model"
        ).fetchall()
    }
    return [
        {
            "model": m.model,
            "revision": m.revision,
            "alias": m.alias,
            "language": m.language,
            "windows_transcribed": counts.get(m.model, (0, 0))[0],
            "windows_with_speech": counts.get(m.model, (0, 0))[1],
        }
        for m in stored_models(cur).values()
    ]


def window_texts(cur, window_ids: Sequence[int]) -> dict[int, str]:
    """window id -> its transcript text (models joined by ' | ' in id order), for export columns."""
    out: dict[int, str] = {}
    for s in segments_of_windows(cur, window_ids):
        out[s.window_id] = f"{out[s.window_id]} | {s.text}" if s.window_id in out else s.text
    return out
