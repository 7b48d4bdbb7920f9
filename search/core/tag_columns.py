"""Classifier tags as columns of classification exports: each tagging model's best label and its score per row."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from indexer.store import IndexStore
from indexer.tag_store import stored_models
from search.core.results import ClassifyRow

BATCH = 4096


def tag_column_names(store: IndexStore) -> list[tuple[str, str, str]]:
    """(model id, label column, score column) for every model that tagged the index: ``tag:<alias>``, ``tag:<alias>:score``."""
    return [(m.model, f"tag:{m.alias}", f"tag:{m.alias}:score") for m in stored_models(store.cursor()).values()]


def with_tag_columns(
    store: IndexStore, rows: Iterable[ClassifyRow], by: str, columns: list[tuple[str, str, str]]
) -> Iterator[tuple[ClassifyRow, dict]]:
    """Each row with its tag columns: the window's best stored label per model (a file row: its best window's)."""
    batch: list[ClassifyRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield from _attach(store, batch, by, columns)
            batch = []
    if batch:
        yield from _attach(store, batch, by, columns)


def _attach(store: IndexStore, batch: list[ClassifyRow], by: str, columns) -> Iterator[tuple[ClassifyRow, dict]]:
    key = "window_id" if by == "window" else "file_id"
    ids = [getattr(r, key) for r in batch]
    cur = store.cursor()
    cur.register("export_ids", pa.table({"id": pa.array([int(i) for i in ids if i is not None], pa.int64())}))
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
        best = {(int(i), m): (label, float(score)) for i, m, label, score in cur.execute(sql).fetchall()}
    finally:
        cur.unregister("export_ids")
    for row, rid in zip(batch, ids):
        extra = {}
        for model, label_col, score_col in columns:
            label, score = best.get((int(rid), model), (None, None)) if rid is not None else (None, None)
            extra[label_col], extra[score_col] = label, score
        yield row, extra
