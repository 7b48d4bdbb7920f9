"""Model tags in DuckDB: per-window (label, score) rows from fixed-label classifiers, keyed by model id and revision.

``tag_models`` holds one row per model id: the revision, alias, whole label set and the settings its tags
were computed with (``top_k``, ``function_to_apply``); ``window_tags`` holds each window's top-k labels.
A model id holds one label set at a time: a different one is refused unless the caller re-tags.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from indexer.arrow_columns import column, id_table
from indexer.arrow_columns import table as arrow_table

TAG_TABLES = (  # the store's migration 3
    "CREATE TABLE IF NOT EXISTS tag_models (model VARCHAR NOT NULL, revision VARCHAR NOT NULL, alias VARCHAR NOT NULL, "
    "labels JSON NOT NULL, top_k INTEGER NOT NULL, function_to_apply VARCHAR NOT NULL, sample_rate INTEGER, "
    "updated_at TIMESTAMP DEFAULT current_timestamp)",
    "CREATE TABLE IF NOT EXISTS window_tags (window_id BIGINT NOT NULL, model VARCHAR NOT NULL, revision VARCHAR NOT NULL, "
    "label VARCHAR NOT NULL, score FLOAT NOT NULL)",
)


@dataclass(frozen=True)
class TagModel:
    """What the index records about one tagging model."""

    model: str
    revision: str
    alias: str
    labels: tuple[str, ...]
    top_k: int
    function_to_apply: str
    sample_rate: int | None = None

    @classmethod
    def of(cls, classifier, stored: "TagModel | None" = None) -> "TagModel":
        """The record of a loaded `AudioClassifier` (keeping the ``stored`` alias unless the classifier was given one)."""
        alias = classifier.alias
        if stored is not None and not getattr(classifier, "alias_explicit", True):
            alias = stored.alias
        return cls(
            classifier.model_id,
            classifier.revision,
            alias,
            tuple(classifier.labels),
            int(classifier.top_k),
            classifier.function_to_apply,
            int(classifier.sample_rate),
        )

    def describe(self) -> str:
        return f"{self.model}@{self.revision[:23]}"


@dataclass
class TagRows:
    """(window id, label, score) rows of one model and revision, ready to insert."""

    model: TagModel
    window_ids: list[int]
    labels: list[str]
    scores: list[float]

    @classmethod
    def empty(cls, model: TagModel) -> "TagRows":
        return cls(model, [], [], [])

    def add(self, window_id: int, pairs: Sequence[tuple[str, float]]) -> None:
        for label, score in pairs:
            self.window_ids.append(int(window_id))
            self.labels.append(str(label))
            self.scores.append(float(score))

    def __len__(self) -> int:
        return len(self.window_ids)


def has_tag_tables(cur) -> bool:
    """False for an index written before model tags existed and opened read-only (nothing to migrate then)."""
    rows = cur.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('tag_models', 'window_tags') "
        "AND database_name = current_database()"
    ).fetchall()  # fetched whole: the cursor is used again
    return int(rows[0][0]) == 2


def stored_models(cur) -> dict[str, TagModel]:
    """model id -> its record, for every model that has tagged this index."""
    if not has_tag_tables(cur):
        return {}
    rows = cur.execute(
        "SELECT model, revision, alias, CAST(labels AS VARCHAR), top_k, function_to_apply, sample_rate "
        "FROM tag_models ORDER BY model"
    ).fetchall()
    return {r[0]: TagModel(r[0], r[1], r[2], tuple(json.loads(r[3])), int(r[4]), r[5], r[6]) for r in rows}


def upsert_model(cur, model: TagModel) -> None:
    cur.execute("DELETE FROM tag_models WHERE model = ?", [model.model])
    cur.execute(
        "INSERT INTO tag_models (model, revision, alias, labels, top_k, function_to_apply, sample_rate) "
        "VALUES (?, ?, ?, ?::JSON, ?, ?, ?)",
        [
            model.model,
            model.revision,
            model.alias,
            json.dumps(list(model.labels)),
            model.top_k,
            model.function_to_apply,
            model.sample_rate,
        ],
    )


def drop_model(cur, model_id: str) -> None:
    """Every tag of ``model_id`` (all revisions) and its record: the start of a re-tag."""
    cur.execute("DELETE FROM window_tags WHERE model = ?", [model_id])
    cur.execute("DELETE FROM tag_models WHERE model = ?", [model_id])


def insert_rows(cur, rows: TagRows) -> None:
    """Replace the tags ``rows.model`` holds for these windows (any older revision's too) with ``rows``."""
    if not len(rows):
        return
    table = arrow_table(
        {
            "window_id": column(rows.window_ids, pa.int64()),
            "label": column(rows.labels, pa.string()),
            "score": column(rows.scores, pa.float32()),
        }
    )
    cur.register("new_window_tags", table)
    try:
        cur.execute(
            "DELETE FROM window_tags WHERE model = ? AND window_id IN (SELECT DISTINCT window_id FROM new_window_tags)",
            [rows.model.model],
        )
        cur.execute(
            "INSERT INTO window_tags SELECT window_id, ?, ?, label, score FROM new_window_tags",
            [rows.model.model, rows.model.revision],
        )
    finally:
        cur.unregister("new_window_tags")


def delete_for_windows(cur, window_ids: np.ndarray) -> None:
    """Drop the tags of windows leaving the index (same transaction as the windows)."""
    if not len(window_ids):
        return
    cur.register("gone_window_ids", id_table("wid", window_ids))
    try:
        cur.execute("DELETE FROM window_tags WHERE window_id IN (SELECT wid FROM gone_window_ids)")
    finally:
        cur.unregister("gone_window_ids")


def rows_of_windows(cur, window_ids: np.ndarray) -> list[tuple[int, str, str, str, float]]:
    """(window id, model, revision, label, score) stored for these windows (to copy onto identical content)."""
    if not len(window_ids) or not has_tag_tables(cur):
        return []
    cur.register("wanted_window_ids", id_table("wid", window_ids))
    try:
        return cur.execute(
            "SELECT window_id, model, revision, label, score FROM window_tags "
            "WHERE window_id IN (SELECT wid FROM wanted_window_ids) ORDER BY window_id, model, score DESC"
        ).fetchall()
    finally:
        cur.unregister("wanted_window_ids")


def insert_raw(cur, rows: Sequence[tuple[int, str, str, str, float]]) -> None:
    """Insert (window id, model, revision, label, score) rows as they are (copies of stored rows)."""
    if rows:
        cur.executemany("INSERT INTO window_tags VALUES (?, ?, ?, ?, ?)", [tuple(r) for r in rows])


def summary(cur) -> list[dict]:
    """Each tagging model with its revision, alias, label count, settings and how many windows it has tagged."""
    out = []
    counts = (
        dict(cur.execute("SELECT model, count(DISTINCT window_id) FROM window_tags GROUP BY model").fetchall())
        if has_tag_tables(cur)
        else {}
    )
    for model in stored_models(cur).values():
        out.append(
            {
                "model": model.model,
                "revision": model.revision,
                "alias": model.alias,
                "labels": len(model.labels),
                "top_k": model.top_k,
                "function_to_apply": model.function_to_apply,
                "windows_tagged": int(counts.get(model.model, 0)),
            }
        )
    return out


def tags_of_windows(cur, window_ids: Sequence[int]) -> dict[int, dict[str, list[dict]]]:
    """window id -> {alias: [{label, score}, ...] best first}, for the file view and the API."""
    if not len(window_ids) or not has_tag_tables(cur):
        return {}
    cur.register("shown_window_ids", id_table("wid", window_ids))
    try:
        rows = cur.execute(
            "SELECT t.window_id, coalesce(m.alias, t.model), t.label, t.score FROM window_tags t "
            "LEFT JOIN tag_models m ON m.model = t.model WHERE t.window_id IN (SELECT wid FROM shown_window_ids) "
            "ORDER BY t.window_id, t.model, t.score DESC, t.label"
        ).fetchall()
    finally:
        cur.unregister("shown_window_ids")
    out: dict[int, dict[str, list[dict]]] = {}
    for wid, alias, label, score in rows:
        out.setdefault(int(wid), {}).setdefault(alias, []).append({"label": label, "score": round(float(score), 6)})
    return out


def best_tags(cur, ids: Sequence[int], by: str) -> dict[tuple[int, str], tuple[str, float]]:
    """(window or file id, model id) -> the best stored (label, score): per window, or per file over its windows.

    ``by`` is "window" or "file"; the ids are window ids or file ids accordingly.
    """
    cur.register("export_ids", id_table("id", ids))
    try:
        if by == "window":
            sql = (
                "SELECT t.window_id, t.model, arg_max(t.label, t.score), max(t.score) FROM window_tags t "
                "WHERE t.window_id IN (SELECT id FROM export_ids) GROUP BY t.window_id, t.model"
            )
        else:
            sql = (
                "SELECT w.file_id, t.model, arg_max(t.label, t.score), max(t.score) FROM window_tags t "
                "JOIN windows w ON w.id = t.window_id WHERE w.file_id IN (SELECT id FROM export_ids) GROUP BY w.file_id, t.model"
            )
        return {(int(i), m): (label, float(score)) for i, m, label, score in cur.execute(sql).fetchall()}
    finally:
        cur.unregister("export_ids")
