"""Synthetic window vectors for the scale benchmarks: unit vectors in clusters, like embeddings of an archive.

Uniform random unit vectors have no neighbourhoods (every cosine is ~0), which no embedding model
produces and which makes any approximate index look hopeless; real archives repeat a few hundred kinds
of sound with variation. Each vector is a cluster centre plus noise as large as the centre (cosine to
its centre about 0.7), written to a memory-mapped float16 matrix with rows, exactly as
indexer/matrix.py stores an index's vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.matrix import ROW_DTYPE, WindowMatrix, matrix_paths

WINDOWS_PER_FILE = 360  # one hour of 10 s windows


def clustered_unit_vectors(
    n: int, dim: int = 512, clusters: int = 2000, noise: float = 1.0, seed: int = 0, chunk: int = 131_072
):
    """Yield (start, float32 (m, dim) unit vectors) chunks of ``n`` clustered vectors (memory stays flat)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for at in range(0, n, chunk):
        m = min(chunk, n - at)
        x = centres[rng.integers(0, clusters, m)]
        x += (noise / np.sqrt(dim)) * rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield at, x


def write_matrix(
    index_dir: Path, n: int, dim: int = 512, seq: int = 1, dtype=np.float16, seed: int = 0
) -> WindowMatrix:
    """A window matrix of ``n`` synthetic windows (ids 1..n, 360 per file, 10 s apart), memory-mapped."""
    index_dir.mkdir(parents=True, exist_ok=True)
    vec_path, row_path = matrix_paths(index_dir, seq)
    vectors = np.lib.format.open_memmap(vec_path, mode="w+", dtype=dtype, shape=(n, dim))
    rows = np.lib.format.open_memmap(row_path, mode="w+", dtype=ROW_DTYPE, shape=(n,))
    for at, x in clustered_unit_vectors(n, dim, seed=seed):
        vectors[at : at + len(x)] = x
    ids = np.arange(1, n + 1, dtype=np.int64)
    rows["id"] = ids
    rows["file_id"] = (ids - 1) // WINDOWS_PER_FILE + 1
    rows["start"] = ((ids - 1) % WINDOWS_PER_FILE) * 10.0
    rows["end"] = rows["start"] + 10.0
    vectors.flush()
    rows.flush()
    del vectors, rows
    return WindowMatrix.load(index_dir, seq)


def unit_vectors(n: int, dim: int = 512, seed: int = 1) -> np.ndarray:
    """``n`` random unit vectors (label or query vectors)."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
