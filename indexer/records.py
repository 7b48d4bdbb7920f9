"""The store's records: a file row, a batch of windows to insert, a chunk read back, one atomic commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from indexer.tag_store import TagRows


@dataclass
class FileRecord:
    """One file row: what the scan saw and what decoding found (also what change detection compares a scan with)."""

    id: int
    path: str
    root: str
    size: int
    mtime: float
    hash: str | None
    status: str  # indexed | failed
    error: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    codec: str | None = None
    decoder: str | None = None
    notes: str | None = None  # what the decoder left out of an indexed file


@dataclass
class WindowBatch:
    """Windows of committed files, ready to insert: parallel arrays plus their unit vectors."""

    ids: np.ndarray  # int64
    file_ids: np.ndarray  # int64
    starts: np.ndarray  # float64 seconds
    ends: np.ndarray  # float64 seconds
    tags: list[str]  # JSON per window
    vectors: np.ndarray  # float32 (n, dim), finite, unit length

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class WindowChunk:
    """A chunk of stored windows read back for scoring."""

    ids: np.ndarray
    file_ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    vectors: np.ndarray


@dataclass
class CommitPlan:
    """One atomic change to the index: readers see all of it or none of it.

    ``files`` are inserted (replacing any other row with the same path, windows included);
    ``relinks`` update an existing row in place, keeping its id and windows (a rename, a touch,
    a re-hash); ``remove_file_ids`` drop rows whose files left the archive, windows included.
    """

    files: list[FileRecord]
    windows: WindowBatch | None = None
    relinks: list[FileRecord] = None  # type: ignore[assignment]
    remove_file_ids: list[int] = None  # type: ignore[assignment]
    model_tags: list[TagRows] = None  # type: ignore[assignment]  # classifier tags of the new windows
    copied_tags: list[tuple] = None  # type: ignore[assignment]  # (window id, model, revision, label, score) as stored

    def __post_init__(self) -> None:
        self.relinks = list(self.relinks or [])
        self.remove_file_ids = list(self.remove_file_ids or [])
        self.model_tags = list(self.model_tags or [])
        self.copied_tags = list(self.copied_tags or [])
