"""Arrow columns and tables for DuckDB, built from their buffers: the same arrays as ``pa.array`` and ``pa.table``.

pyarrow's ``pa.array`` (and so ``pa.table``) asks on first use whether its input is a pandas object, which
imports pandas: 0.2 s of a cold `index`'s first commit, where the columns are plain numpy arrays and Python
strings. Building an array from its validity, offsets and data buffers never asks. The types are those the
store writes: fixed-width numbers, strings, binaries (each may hold None), lists of float32 and fixed-size
float32 vectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

# Arrow type names (str(pa.float64()) is "double") -> numpy dtypes
_NUMPY = {"int64": np.int64, "int32": np.int32, "double": np.float64, "float": np.float32, "bool": np.bool_}


def _validity(values: Sequence[Any]) -> tuple[Any, int]:
    import pyarrow as pa

    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    nulls = int(len(values) - valid.sum())
    return (pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None), nulls


def column(values: Iterable[Any] | np.ndarray, type: "pa.DataType") -> "pa.Array":
    """``pa.array(values, type)`` for a number, ``string``, ``binary`` or ``list_(float32)`` type."""
    import pyarrow as pa

    name = str(type)
    if name in _NUMPY:
        data: np.ndarray
        if isinstance(values, np.ndarray):
            data = np.ascontiguousarray(values, dtype=_NUMPY[name])
            validity, nulls = None, 0
        else:
            items = list(values)
            validity, nulls = _validity(items)
            data = np.array([0 if v is None else v for v in items], dtype=_NUMPY[name])
        if name == "bool":  # Arrow packs booleans into bits
            return pa.Array.from_buffers(
                type, len(data), [validity, pa.py_buffer(np.packbits(data, bitorder="little"))], nulls
            )
        return pa.Array.from_buffers(type, len(data), [validity, pa.py_buffer(data)], nulls)
    if name in ("string", "binary", "large_string", "large_binary"):
        items = [v.encode() if isinstance(v, str) else v for v in values]
        validity, nulls = _validity(items)
        lengths = np.fromiter((0 if b is None else len(b) for b in items), dtype=np.int64, count=len(items))
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] < 2**31 and not name.startswith("large_"):
            offsets = offsets.astype(np.int32)
        elif not name.startswith("large_"):  # more than 2 GB of text in one column: 64-bit offsets
            type = pa.large_string() if name == "string" else pa.large_binary()
        text = b"".join(b for b in items if b is not None)
        return pa.Array.from_buffers(type, len(items), [validity, pa.py_buffer(offsets), pa.py_buffer(text)], nulls)
    if pa.types.is_list(type) and str(type.value_type) == "float":
        rows = [np.asarray(v, dtype=np.float32).ravel() for v in values]
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        flat = np.concatenate(rows) if rows else np.zeros(0, np.float32)
        return pa.ListArray.from_arrays(
            pa.Array.from_buffers(pa.int32(), len(offsets), [None, pa.py_buffer(offsets)]), column(flat, pa.float32())
        )
    raise TypeError(f"no buffer-built Arrow column for {type}")


def numpy_column(values: np.ndarray) -> "pa.Array":
    """A numpy array of numbers as a column of its own type (int64 stays int64, float32 stays float32)."""
    import pyarrow as pa

    name = next((k for k, v in _NUMPY.items() if np.dtype(v) == values.dtype), None)
    if name is None:
        raise TypeError(f"no buffer-built Arrow column for numpy {values.dtype}")
    return column(values, pa.type_for_alias(name))


def numpy_of(array: "pa.Array") -> np.ndarray:
    """A read-only numpy view of a numeric Arrow column's values (a copy where it holds nulls or chunks), without
    ``to_numpy``, which imports pandas too. Fixed-size lists give their flattened values."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type):
        array = array.flatten()
    dtype = _NUMPY.get(str(array.type))
    if dtype is None or dtype is np.bool_ or array.null_count:
        return array.to_numpy(zero_copy_only=False)  # nulls or bits: pyarrow's own conversion
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * np.dtype(dtype).itemsize
    )


def vector_column(matrix: np.ndarray) -> "pa.FixedSizeListArray":
    """(n, dim) float32 vectors as a column of fixed-size float32 lists (DuckDB's FLOAT[dim])."""
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    dim = matrix.shape[1] if matrix.ndim == 2 else 0
    return pa.FixedSizeListArray.from_arrays(column(matrix.reshape(-1), pa.float32()), dim)


def table(columns: dict[str, "pa.Array"]) -> "pa.Table":
    """A table of built columns, in the order given (``pa.table`` of a dict of arrays)."""
    import pyarrow as pa

    return pa.Table.from_arrays(list(columns.values()), names=list(columns))


def id_table(name: str, ids: Iterable[int] | np.ndarray) -> "pa.Table":
    """A one-column int64 table of ids (what a ``... IN (SELECT name FROM registered)`` reads)."""
    import pyarrow as pa

    values = ids if isinstance(ids, np.ndarray) else np.fromiter((int(i) for i in ids), dtype=np.int64)
    return table({name: column(values, pa.int64())})
