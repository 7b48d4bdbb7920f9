"""Label sets and evaluation clip vectors in DuckDB.

``label_sets`` holds named label sets (their TOML text, as `soundsift eval --save-label-set` writes it), so
``POST /classify`` and the page can use one by name. ``clip_vectors`` caches the window vectors of a
labelled clip, keyed by the file's content hash, the clip's start and end and the model fingerprint, so a
second evaluation of the same sample embeds nothing (a moved or renamed file keeps its vectors).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from indexer.arrow_columns import column
from indexer.arrow_columns import table as arrow_table

LABEL_SET_TABLES = (  # the store's migration 7
    "CREATE TABLE IF NOT EXISTS label_sets (name VARCHAR PRIMARY KEY, body VARCHAR NOT NULL, "
    "updated_at TIMESTAMP DEFAULT current_timestamp)",
    "CREATE TABLE IF NOT EXISTS clip_vectors (fingerprint VARCHAR NOT NULL, hash VARCHAR NOT NULL, "
    'start DOUBLE NOT NULL, "end" DOUBLE NOT NULL, window_s DOUBLE NOT NULL, hop_s DOUBLE NOT NULL, '
    "position INTEGER NOT NULL, win_start DOUBLE NOT NULL, win_end DOUBLE NOT NULL, vector FLOAT[] NOT NULL)",
)
OPEN_END = -1.0  # the "end" of a clip that runs to the end of its file


@dataclass(frozen=True)
class StoredLabelSet:
    """One named label set: its TOML text."""

    name: str
    body: str


@dataclass(frozen=True)
class ClipKey:
    """What a clip's vectors depend on: the file's content, the clip's span, the model and the windowing."""

    fingerprint: str
    hash: str
    start: float
    end: float | None
    window_s: float
    hop_s: float


@dataclass
class ClipVectors:
    """A clip's windows: their spans (seconds in the file) and unit vectors."""

    spans: list[tuple[float, float]]
    vectors: np.ndarray  # (n, dim) float32


class LabelSetStore:
    """Typed access to the label-set and clip-vector tables of an open `IndexStore`."""

    def __init__(self, store) -> None:
        self.store = store

    # -- label sets ----------------------------------------------------------------------------
    def put(self, name: str, body: str) -> None:
        """Store (or replace) the label set ``name``."""
        with self.store.transaction() as cur:
            cur.execute("DELETE FROM label_sets WHERE name = ?", [name])
            cur.execute("INSERT INTO label_sets (name, body) VALUES (?, ?)", [name, body])

    def get(self, name: str) -> StoredLabelSet | None:
        """The label set ``name``, None when the index has none by that name."""
        try:
            row = self.store.cursor().execute("SELECT name, body FROM label_sets WHERE name = ?", [name]).fetchone()
        except duckdb.CatalogException:  # an index from before label sets, opened read-only
            return None
        return None if row is None else StoredLabelSet(row[0], row[1])

    def names(self) -> list[str]:
        """Names of the stored label sets, sorted."""
        try:
            rows = self.store.cursor().execute("SELECT name FROM label_sets ORDER BY name").fetchall()
        except duckdb.CatalogException:
            return []
        return [r[0] for r in rows]

    def remove(self, name: str) -> bool:
        """Drop the label set ``name``; False when there was none."""
        with self.store.transaction() as cur:
            found = cur.execute("SELECT count(*) FROM label_sets WHERE name = ?", [name]).fetchone()[0]
            cur.execute("DELETE FROM label_sets WHERE name = ?", [name])
        return bool(found)

    # -- clip vectors --------------------------------------------------------------------------
    def clip_vectors(self, keys: list[ClipKey]) -> dict[ClipKey, ClipVectors]:
        """The cached vectors of those ``keys`` the index holds."""
        if not keys:
            return {}
        wanted = arrow_table(
            {
                "fingerprint": column([k.fingerprint for k in keys], pa.string()),
                "hash": column([k.hash for k in keys], pa.string()),
                "start": column([float(k.start) for k in keys], pa.float64()),
                "end": column([OPEN_END if k.end is None else float(k.end) for k in keys], pa.float64()),
                "window_s": column([float(k.window_s) for k in keys], pa.float64()),
                "hop_s": column([float(k.hop_s) for k in keys], pa.float64()),
            }
        )
        cur = self.store.cursor()
        try:
            cur.register("wanted_clips", wanted)
            rows = cur.execute(
                'SELECT c.fingerprint, c.hash, c.start, c."end", c.window_s, c.hop_s, c.win_start, c.win_end, c.vector '
                'FROM clip_vectors c JOIN wanted_clips w USING (fingerprint, hash, start, "end", window_s, hop_s) '
                'ORDER BY c.fingerprint, c.hash, c.start, c."end", c.position'
            ).fetchall()
        except duckdb.CatalogException:
            return {}
        finally:
            cur.unregister("wanted_clips")
        grouped: dict[ClipKey, tuple[list, list]] = {}
        for fp, h, s, e, w, hop, ws, we, vec in rows:
            key = ClipKey(fp, h, s, None if e == OPEN_END else e, w, hop)
            spans, vectors = grouped.setdefault(key, ([], []))
            spans.append((float(ws), float(we)))
            vectors.append(vec)
        return {k: ClipVectors(sp, np.asarray(v, dtype=np.float32)) for k, (sp, v) in grouped.items()}

    def put_clip_vectors(self, items: list[tuple[ClipKey, ClipVectors]]) -> None:
        """Remember clips' window vectors (a clip already cached is replaced)."""
        if not items:
            return
        cols: dict[str, list] = {
            k: [] for k in ("fingerprint", "hash", "start", "end", "window_s", "hop_s", "position", "ws", "we", "v")
        }
        for key, clip in items:
            for i, ((ws, we), vec) in enumerate(zip(clip.spans, clip.vectors)):
                cols["fingerprint"].append(key.fingerprint)
                cols["hash"].append(key.hash)
                cols["start"].append(float(key.start))
                cols["end"].append(OPEN_END if key.end is None else float(key.end))
                cols["window_s"].append(float(key.window_s))
                cols["hop_s"].append(float(key.hop_s))
                cols["position"].append(i)
                cols["ws"].append(float(ws))
                cols["we"].append(float(we))
                cols["v"].append(np.asarray(vec, dtype=np.float32))
        types = {"fingerprint": pa.string(), "hash": pa.string(), "position": pa.int64(), "v": pa.list_(pa.float32())}
        table = arrow_table({k: column(v, types.get(k, pa.float64())) for k, v in cols.items()})
        with self.store.transaction() as cur:
            cur.register("new_clips", table)
            try:
                cur.execute(
                    'DELETE FROM clip_vectors c USING (SELECT DISTINCT fingerprint, hash, start, "end", window_s, '
                    "hop_s FROM new_clips) n WHERE c.fingerprint = n.fingerprint AND c.hash = n.hash "
                    'AND c.start = n.start AND c."end" = n."end" AND c.window_s = n.window_s AND c.hop_s = n.hop_s'
                )
                cur.execute(
                    'INSERT INTO clip_vectors SELECT fingerprint, hash, start, "end", window_s, hop_s, position, ws, we, v '
                    "FROM new_clips"
                )
            finally:
                cur.unregister("new_clips")
