"""The validated AED rows of one snapshot as a file: written page by page, read back in batches.

Why a file and not a frame: a full snapshot is ~81k devices today and must scale to ten times that
without the memory scaling with it. Validation appends each archived page's valid rows as one
Parquet row group; the sync streams the row groups into PostgreSQL's ``COPY``. No step ever holds
the whole snapshot, and what passes from ``aed_validated`` to ``aed_data`` is a small reference.

The file is named after its validation key (archived pages, reference, code: ``aed_validation``)
and written under a temporary name, then renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.files import AtomicFile
from aed_pipeline.lib.egen_aed import SOURCE_NAME
from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS, SUNDAY_WEEK_COLUMNS

_FLOAT_COLUMNS = ("latitude", "longitude")
ROWS_SCHEMA = pyarrow.schema(
    [
        (
            column,
            pyarrow.float64()
            if column in _FLOAT_COLUMNS
            else pyarrow.bool_()
            if column in SUNDAY_WEEK_COLUMNS
            else pyarrow.binary()
            if column == "row_hash"
            else pyarrow.string(),
        )
        for column in DEVICE_COLUMNS
    ]
)
# PostgreSQL's CSV: an unquoted empty field is NULL, a quoted one ("") an empty string; Arrow
# quotes every string and leaves nulls empty, which is exactly that.
_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


def validated_rows_path(partition: str, key: str) -> Path:
    """Where the validated rows of a partition live (under AED_PIPELINE_HOME), for one validation key."""
    return settings.pipeline_home() / "validated" / SOURCE_NAME / f"{partition}-{key[:16]}.parquet"


class DeviceRowsWriter:
    """Appends typed ``aed_data`` rows (a frame per page) to a Parquet file; ``close`` publishes it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = AtomicFile(self.path)
        self._writer = pq.ParquetWriter(self._file.temporary, ROWS_SCHEMA, compression="snappy")
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if len(frame):
            table = pyarrow.Table.from_pandas(frame[list(DEVICE_COLUMNS)], schema=ROWS_SCHEMA, preserve_index=False)
            self._writer.write_table(table)
            self.rows += len(frame)

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        self._writer.close()
        self._file.publish()

    def abort(self) -> None:
        self._writer.close()
        self._file.discard()

    def __enter__(self) -> DeviceRowsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


#: Rows per batch read back (one COPY write, one page's worth): what memory holds of the file at a time.
READ_BATCH_ROWS = 5_000


def iter_row_batches(path: str | os.PathLike[str]) -> Iterator[pyarrow.RecordBatch]:
    """The file's rows in batches of at most ``READ_BATCH_ROWS``, whatever its row groups."""
    yield from pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH_ROWS)


def csv_chunks(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The rows as PostgreSQL CSV (``DEVICE_COLUMNS`` order, bytea as ``\\x`` hex), a batch at a time: what the
    sync streams into COPY (``copy_into`` with ``CsvChunks``), written by Arrow's C++ writer in one pass per batch."""
    for batch in iter_row_batches(path):
        hashes = batch.column("row_hash").to_pylist()
        hex_hashes = pyarrow.array([None if h is None else "\\x" + h.hex() for h in hashes], pyarrow.string())
        batch = batch.set_column(batch.schema.get_field_index("row_hash"), "row_hash", hex_hashes)
        buffer = io.BytesIO()
        pa_csv.write_csv(batch, buffer, _CSV_OPTIONS)
        yield buffer.getvalue()


def read_device_rows(path: str | os.PathLike[str]) -> Iterator[tuple[Any, ...]]:
    """The rows as tuples in ``DEVICE_COLUMNS`` order (None for null)."""
    for batch in iter_row_batches(path):
        yield from zip(*(column.to_pylist() for column in batch.columns))
