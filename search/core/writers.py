"""Output writers for classification rows: CSV, JSON Lines and Parquet, streamed (memory stays flat)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from indexer.errors import BadInput
from search.core.results import ClassifyResponse, ClassifyRow

FIRED_SEPARATOR = ";"  # CSV: the fired labels of a row in one cell, e.g. "dog barking;glass breaking"


def write_rows(
    path: Path, header: ClassifyResponse, rows: Iterable[ClassifyRow], extra_columns: Sequence[str] = ()
) -> int:
    """Stream classification rows to ``path`` by its suffix (.csv, .jsonl or .parquet); returns the count.

    After the label columns come ``confidence`` (the policy's, e.g. margin's best-minus-second; empty/null
    when it gives none) and ``fired`` (every label the policy fired: ';'-joined in CSV, a list in Parquet).
    With ``extra_columns`` (classifier tags: ``tag:<alias>``, ``tag:<alias>:score``), ``rows`` yields
    (row, {column: value}) pairs and those columns come last.
    """
    suffix = path.suffix.lower()
    names = header.labels
    count = 0
    extra_columns = list(extra_columns)
    # with extra columns the rows already come as (row, {column: value}) pairs
    pairs: Iterable[tuple[ClassifyRow, dict[str, Any]]] = rows if extra_columns else ((r, {}) for r in rows)  # type: ignore[assignment]
    if suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for row, extra in pairs:
                fh.write(json.dumps({**row.model_dump(mode="json"), **extra}, ensure_ascii=False) + "\n")
                count += 1
    elif suffix == ".csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "start", "end", "label", *names, "confidence", "fired", *extra_columns])
            for row, extra in pairs:
                confidence = row.extras.get("confidence")
                writer.writerow(
                    [
                        row.path,
                        row.start,
                        row.end,
                        row.label or "",
                        *(row.scores[n] for n in names),
                        "" if confidence is None else confidence,
                        FIRED_SEPARATOR.join(row.fired),
                        *("" if extra.get(c) is None else extra[c] for c in extra_columns),
                    ]
                )
                count += 1
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("path", pa.string()),
                ("start", pa.float64()),
                ("end", pa.float64()),
                ("label", pa.string()),
                *[(n, pa.float32()) for n in names],
                ("confidence", pa.float32()),
                ("fired", pa.list_(pa.string())),
                *[(c, pa.float32() if c.endswith(":score") else pa.string()) for c in extra_columns],
            ]
        )
        with pq.ParquetWriter(path, schema) as writer:
            buffer: list = []

            def flush():
                rows_ = [r for r, _ in buffer]
                cols = {
                    "path": [r.path for r in rows_],
                    "start": [r.start for r in rows_],
                    "end": [r.end for r in rows_],
                    "label": [r.label for r in rows_],
                    **{n: [r.scores[n] for r in rows_] for n in names},
                    "confidence": [r.extras.get("confidence") for r in rows_],
                    "fired": [list(r.fired) for r in rows_],
                    **{c: [e.get(c) for _, e in buffer] for c in extra_columns},
                }
                writer.write_table(pa.table(cols, schema=schema))
                buffer.clear()

            for row, extra in pairs:
                buffer.append((row, extra))
                count += 1
                if len(buffer) >= 65536:
                    flush()
            if buffer:
                flush()
    else:
        raise BadInput(f"--out must end in .csv, .jsonl or .parquet, not {path.name}")
    return count
