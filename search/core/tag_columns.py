"""Classifier tags as columns of classification exports: each tagging model's best label and its score per row."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from indexer.store import IndexStore
from indexer.tag_store import best_tags, stored_models
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
    best = best_tags(store.cursor(), [i for i in ids if i is not None], by)
    for row, rid in zip(batch, ids):
        extra: dict[str, str | float | None] = {}
        for model, label_col, score_col in columns:
            found = best.get((int(rid), model)) if rid is not None else None
            extra[label_col], extra[score_col] = found if found is not None else (None, None)
        yield row, extra
