"""Arrow columns built from buffers equal pyarrow's own, and building them never imports pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from conftest import REPO

from indexer.arrow_columns import column, id_table, numpy_column, numpy_of, table, vector_column

CASES = [
    (np.array([3, -1, 2**40], dtype=np.int64), pa.int64()),
    ([1, None, 7], pa.int64()),
    (np.array([0.5, -2.25]), pa.float64()),
    ([0.5, None], pa.float64()),
    (np.array([1.5, 2.0], dtype=np.float32), pa.float32()),
    (np.array([4, 5], dtype=np.int32), pa.int32()),
    ([True, False, True, None], pa.bool_()),
    (["", "glass breaking", "轴承异响", None, "x" * 300], pa.string()),
    ([None, None], pa.string()),
    ([], pa.string()),
    ([b"\xff\xfe", None, b""], pa.binary()),
    ([np.array([1.0, 2.0], np.float32), np.zeros(0, np.float32), [3.5]], pa.list_(pa.float32())),
]


@pytest.mark.parametrize("values,type", CASES, ids=[f"{t}-{i}" for i, (_, t) in enumerate(CASES)])
def test_a_built_column_equals_pyarrows(values, type):
    built = column(values, type)
    expected = pa.array(list(values) if isinstance(values, np.ndarray) else values, type)
    assert built.type == expected.type
    assert built.equals(expected), (built, expected)
    built.validate(full=True)


def test_numpy_columns_keep_their_type_and_vectors_their_width():
    assert numpy_column(np.array([1, 2], np.int32)).type == pa.int32()
    assert numpy_column(np.array([1.0], np.float32)).type == pa.float32()
    with pytest.raises(TypeError):
        numpy_column(np.array(["a"]))
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    vectors = vector_column(matrix)
    assert vectors.type == pa.list_(pa.float32(), 4)
    assert vectors.to_pylist() == matrix.tolist()
    t = table({"id": id_table("wid", [5, 6, 7]).column(0), "v": vectors})
    assert t.column_names == ["id", "v"] and t.num_rows == 3
    with pytest.raises(TypeError):
        column([1], pa.date32())


def test_numpy_of_reads_the_values_arrow_holds():
    ids = pa.array(np.arange(10, dtype=np.int64))
    np.testing.assert_array_equal(numpy_of(ids.slice(3, 4)), [3, 4, 5, 6])  # a slice keeps its offset
    np.testing.assert_array_equal(numpy_of(pa.chunked_array([ids[:2], ids[2:4]])), [0, 1, 2, 3])
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype=np.float32)), 2)
    np.testing.assert_array_equal(numpy_of(vectors.slice(1, 2)).reshape(-1, 2), [[2, 3], [4, 5]])
    with_null = numpy_of(pa.array([1.5, None]))
    assert with_null[0] == 1.5 and np.isnan(with_null[1])


def test_building_tables_and_reading_them_in_duckdb_never_imports_pandas():
    code = (
        "import sys, duckdb, numpy as np, pyarrow as pa\n"
        "from indexer.arrow_columns import column, id_table, table, vector_column\n"
        "t = table({'id': column(np.arange(3), pa.int64()), 'p': column(['a', None, 'c'], pa.string()),\n"
        "           'v': vector_column(np.ones((3, 2), np.float32))})\n"
        "cur = duckdb.connect().cursor(); cur.register('t', t); cur.register('ids', id_table('wid', [1, 2]))\n"
        "rows = cur.execute('SELECT t.id, p, v FROM t JOIN ids ON t.id = ids.wid ORDER BY t.id').fetchall()\n"
        "from indexer.arrow_columns import numpy_of\n"
        "back = numpy_of(cur.execute('SELECT v FROM t').to_arrow_table().column(0)).tolist()\n"
        "print(rows, back, 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[(1, None, (1.0, 1.0)), (2, 'c', (1.0, 1.0))] [1.0, 1.0, 1.0, 1.0, 1.0, 1.0] False"
