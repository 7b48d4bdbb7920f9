"""Transcripts as a column of classification exports: ``transcript``, the text said in each row's window."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from indexer.store import IndexStore
from indexer.transcript_store import version, window_texts
from search.core.results import ClassifyRow

COLUMN = "transcript"
BATCH = 4096


def has_transcripts(store: IndexStore) -> bool:
    """True when any window of the index has a stored transcript."""
    return version(store.cursor())[1] > 0


def with_transcript_column(store: IndexStore, rows: Iterable, by: str) -> Iterator[tuple[ClassifyRow, dict]]:
    """(row, extra columns) pairs with ``transcript`` added: a window row's text, a file row's peak window's.

    ``rows`` are ClassifyRow objects or already (row, extra) pairs (with tag columns)."""
    batch: list[tuple[ClassifyRow, dict]] = []
    for item in rows:
        batch.append(item if isinstance(item, tuple) else (item, {}))
        if len(batch) >= BATCH:
            yield from _attach(store, batch, by)
            batch = []
    if batch:
        yield from _attach(store, batch, by)


def _window_of(row: ClassifyRow, by: str) -> int | None:
    return row.window_id if by == "window" else row.peak_window


def _attach(store: IndexStore, batch: list[tuple[ClassifyRow, dict]], by: str) -> Iterator[tuple[ClassifyRow, dict]]:
    ids = [w for w in (_window_of(r, by) for r, _ in batch) if w is not None]
    texts = window_texts(store.cursor(), ids)
    for row, extra in batch:
        wid = _window_of(row, by)
        yield row, {**extra, COLUMN: texts.get(int(wid)) if wid is not None else None}


def export_columns(store: IndexStore | None, rows: Iterable[ClassifyRow], by: str) -> tuple[Iterable, list[str]]:
    """Rows for `write_rows` with their extra columns: each tagging model's best label and score
    (``tag:<alias>``, ``tag:<alias>:score``) and ``transcript``, when the index has them (none through a server)."""
    from search.core.tag_columns import tag_column_names, with_tag_columns

    if store is None:
        return rows, []
    tag_columns = tag_column_names(store)
    out: Iterable = with_tag_columns(store, rows, by, tag_columns) if tag_columns else rows
    extra = [c for _, *pair in tag_columns for c in pair]
    if has_transcripts(store):
        out = with_transcript_column(store, out, by)
        extra.append(COLUMN)
    return out, extra
