"""Output writers for classification rows: CSV, JSON Lines and Parquet, streamed (memory stays flat)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from indexer.errors import BadInput
from search.results import ClassifyResponse, ClassifyRow


FIRED_SEPARATOR = ";"  # CSV: the fired labels of a row in one cell, e.g. "dog barking;glass breaking"


def write_rows(path: Path, header: ClassifyResponse, rows: Iterable[ClassifyRow]) -> int:
    """Stream classification rows to ``path`` by its suffix (.csv, .jsonl or .parquet); returns the count.

    After the label columns come ``confidence`` (the policy's, e.g. margin's best-minus-second; empty/null
    when it gives none) and ``fired`` (every label the policy fired: ';'-joined in CSV, a list in Parquet).
    """
    suffix = path.suffix.lower()
    names = header.labels
    count = 0
    if suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row.model_dump(mode="json"), ensure_ascii=False) + "\n")
                count += 1
    elif suffix == ".csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "start", "end", "label", *names, "confidence", "fired"])
            for row in rows:
                confidence = row.extras.get("confidence")
                writer.writerow([row.path, row.start, row.end, row.label or "", *(row.scores[n] for n in names),
                                 "" if confidence is None else confidence, FIRED_SEPARATOR.join(row.fired)])
                count += 1
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("path", pa.string()), ("start", pa.float64()), ("end", pa.float64()), ("label", pa.string()),
                            *[(n, pa.float32()) for n in names], ("confidence", pa.float32()), ("fired", pa.list_(pa.string()))])
        with pq.ParquetWriter(path, schema) as writer:
            buffer: list = []

            def flush():
                cols = {"path": [r.path for r in buffer], "start": [r.start for r in buffer], "end": [r.end for r in buffer],
                        "label": [r.label for r in buffer], **{n: [r.scores[n] for r in buffer] for n in names},
                        "confidence": [r.extras.get("confidence") for r in buffer], "fired": [list(r.fired) for r in buffer]}
                writer.write_table(pa.table(cols, schema=schema))
                buffer.clear()

            for row in rows:
                buffer.append(row)
                count += 1
                if len(buffer) >= 65536:
                    flush()
            if buffer:
                flush()
    else:
        raise BadInput(f"--out must end in .csv, .jsonl or .parquet, not {path.name}")
    return count
