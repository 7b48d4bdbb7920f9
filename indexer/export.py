"""Export an index's windows and vectors as partitioned Parquet, for classification beyond one machine.

Each part (``part-00000.parquet``...) holds whole files' windows in id order: window id, file id, path,
start and end seconds, tags (JSON) and the vector, exactly as local classification reads it (the window
matrix, widened to float32). ``_soundsift.json`` names the model that wrote the vectors and lists the parts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from indexer.errors import BadInput, IndexMissing
from indexer.matrix import INDEXED, WindowMatrix
from indexer.ownership import IndexOwnership
from indexer.store import DB_NAME, IndexStore

EXPORT_META = "_soundsift.json"
EXPORT_FORMAT = "soundsift-windows/1"
ROWS_PER_PART = 1_000_000


def export_schema(dim: int):
    """The Parquet schema of an export part."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.int64()),
            ("file_id", pa.int64()),
            ("path", pa.string()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("tags", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def read_export_meta(directory: Path) -> dict:
    """The ``_soundsift.json`` of an export, or a one-line error saying how to make one."""
    path = Path(directory) / EXPORT_META
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        raise BadInput(
            f"{directory} is not a soundsift export (no readable {EXPORT_META}): "
            f"make one with `soundsift export INDEX --out {directory}`"
        ) from None
    if meta.get("format") != EXPORT_FORMAT:
        raise BadInput(f"{path} is format {meta.get('format')!r}; this soundsift reads {EXPORT_FORMAT!r}")
    return meta


def _clear(out_dir: Path) -> None:
    """Drop an earlier export's own files from ``out_dir`` (nothing else)."""
    for old in [*out_dir.glob("part-*.parquet"), out_dir / EXPORT_META]:
        old.unlink(missing_ok=True)


def export_index(index_dir: Path, out_dir: Path, rows_per_part: int = ROWS_PER_PART) -> dict:
    """Write every indexed window of ``index_dir`` to ``out_dir`` as Parquet parts; returns the metadata written.

    A reader of the index like search: it shares the index with other readers, not with a running owner.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    index_dir, out_dir = Path(index_dir), Path(out_dir)
    if rows_per_part < 1:
        raise BadInput("--rows-per-part must be at least 1")
    if not (index_dir / DB_NAME).exists():
        raise IndexMissing(f"no index at {index_dir}: build one with `soundsift index PATH --index {index_dir}`")
    if out_dir.resolve() == index_dir.resolve():
        raise BadInput("--out must not be the index directory")
    ownership = IndexOwnership(index_dir, role="export", shared=True)
    try:
        store = IndexStore.open(index_dir, None, create=False, read_only=True)
        try:
            meta_in = store.identity_meta() or {}
            wm = WindowMatrix.current(store)
            paths = dict(store.cursor().execute("SELECT id, path FROM files WHERE status = 'indexed'").fetchall())
            tag_reader = (
                store.cursor()
                .sql(
                    f"SELECT w.id, w.tags FROM windows w JOIN files f ON f.id = w.file_id WHERE {INDEXED} ORDER BY w.id"
                )
                .to_arrow_reader(65_536)
            )
            tags_left: list = []

            def tags_for(ids: np.ndarray) -> list[str | None]:
                nonlocal tags_left
                while len(tags_left) < len(ids):
                    batch = tag_reader.read_next_batch()
                    tags_left += list(zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()))
                taken, tags_left = tags_left[: len(ids)], tags_left[len(ids) :]
                if [t[0] for t in taken] != ids.tolist():  # both are "indexed windows in id order" of one commit
                    raise RuntimeError("window rows and tags disagree; run `soundsift check`")
                return [t[1] if isinstance(t[1], str) or t[1] is None else json.dumps(t[1]) for t in taken]

            out_dir.mkdir(parents=True, exist_ok=True)
            _clear(out_dir)
            dim = int(wm.vectors.shape[1]) if wm.vectors.ndim == 2 else store.embedding_dim
            schema = export_schema(dim)
            file_ids = np.asarray(wm.rows["file_id"])
            # Cut only where the file changes, so each file's windows sit in one part (per-file scores stay local).
            cuts = [0]
            while cuts[-1] < len(file_ids):
                at = min(cuts[-1] + rows_per_part, len(file_ids))
                while 0 < at < len(file_ids) and file_ids[at] == file_ids[at - 1]:
                    at += 1
                cuts.append(at)
            parts = []
            for k, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
                rows = wm.rows[lo:hi]
                ids = np.asarray(rows["id"])
                vectors = np.asarray(wm.vectors[lo:hi], dtype=np.float32)
                table = pa.table(
                    {
                        "id": ids,
                        "file_id": np.asarray(rows["file_id"]),
                        "path": [paths.get(int(f), f"<file {int(f)}>") for f in rows["file_id"]],
                        "start": np.asarray(rows["start"]),
                        "end": np.asarray(rows["end"]),
                        "tags": tags_for(ids),
                        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
                    },
                    schema=schema,
                )
                name = f"part-{k:05d}.parquet"
                tmp = out_dir / f".{name}.tmp{os.getpid()}"
                pq.write_table(table, tmp)
                os.replace(tmp, out_dir / name)
                parts.append({"file": name, "rows": int(hi - lo), "first_id": int(ids[0]), "last_id": int(ids[-1])})
            meta = {
                "format": EXPORT_FORMAT,
                "commit": int(wm.seq),
                "windows": int(len(wm.rows)),
                "files": int(len(np.unique(file_ids))),
                "vector_dtype": str(wm.vectors.dtype),
                "model": {
                    "id": meta_in.get("model_id"),
                    "revision": meta_in.get("model_revision"),
                    "fingerprint": meta_in.get("model_fingerprint"),
                    "embedding_dim": dim,
                },
                "index": str(index_dir.resolve()),
                "parts": parts,
            }
            (out_dir / EXPORT_META).write_text(json.dumps(meta, indent=1))
            return meta
        finally:
            store.close()
    finally:
        ownership.release()
