"""The validated rows of each sale date as a file: written by the validation, read back one date at a time.

Why a file per date and not the frames themselves: a single-run backfill of a year is ~200k rows,
and handing every date's frame from ``flower_auction_validated`` to the table write as one value
held the whole year in memory twice (the validation's output, the write's input). What passes
between the two steps now is a :class:`StoredFlowerDay` per date: its counts, the verdict of the
blocking checks and where its valid rows are; the write reads each date's rows when it writes it.

A file is named after its sale date and the sha256 of its bytes, and written under a temporary
name, then renamed: a reader never sees half a file, an unchanged re-validation writes the same
file again, and a stored day always reads the rows it was judged on (never a later validation's).
Files the validation of the same date replaced more than a day ago are removed when it stores the
date again: no run lasts that long, so no run can still need them.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow
import pyarrow.parquet as pq

from aed_pipeline.lib.at_flower import SOURCE_NAME
from aed_pipeline.lib.at_flower.records import AMOUNT_COLUMNS, NAME_COLUMNS, VALID_COLUMNS, ValidatedFlowerDay
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.files import write_atomically

__all__ = ["ROWS_SCHEMA", "StoredFlowerDay", "ValidatedRowsMissing", "ValidatedRowsStore"]

#: The Parquet schema of a date's valid rows (:data:`VALID_COLUMNS`, the plain dtypes of ``plain_valid_rows``).
ROWS_SCHEMA = pyarrow.schema(
    [
        ("sale_date", pyarrow.date32()),
        ("flower_gubn", pyarrow.int64()),
        *((column, pyarrow.string()) for column in NAME_COLUMNS),
        *((column, pyarrow.int64()) for column in AMOUNT_COLUMNS),
    ]
)
assert tuple(ROWS_SCHEMA.names) == VALID_COLUMNS

#: Replaced files of a date younger than this are kept: a run still working on them may need them.
_KEEP_REPLACED_SECONDS = 24 * 3600


class ValidatedRowsMissing(Exception):
    """A stored day's rows file is gone (removed by hand, or another machine's): validate the date again."""

    def __init__(self, sale_date: date, path: str):
        super().__init__(
            f"the validated rows of {sale_date.isoformat()} ({path}) are gone: "
            "re-materialise flower_auction_validated for this date"
        )


@dataclass(frozen=True)
class StoredFlowerDay:
    """One validated sale date as ``flower_auction_validated`` hands it on: its counts, the verdict
    of the blocking checks (the table write refuses the run when any date failed one), and the file
    of its valid rows, read by :meth:`load` when the date is written."""

    sale_date: date
    rows_file: str
    valid: int
    served: int
    rejected: int
    blocking_failures: tuple[str, ...] = ()
    #: Where the archived pages behind the rows came from: ``live`` or ``simulator``.
    source: str = "unknown"

    @property
    def writable(self) -> bool:
        return not self.blocking_failures

    def load(self) -> ValidatedFlowerDay:
        """The date with its valid rows read back (plain ``int64``/``str`` columns, as validated)."""
        try:
            table = pq.read_table(self.rows_file, schema=ROWS_SCHEMA)
        except FileNotFoundError:
            raise ValidatedRowsMissing(self.sale_date, self.rows_file) from None
        return ValidatedFlowerDay(
            sale_date=self.sale_date,
            rows=table.to_pandas(),
            served=self.served,
            rejected=self.rejected,
            blocking_failures=self.blocking_failures,
            source=self.source,
        )


class ValidatedRowsStore:
    """The files of validated rows, in ``folder`` (local: beside the embedded database)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def default(cls) -> ValidatedRowsStore:
        """The pipeline's own: ``{AED_PIPELINE_HOME}/validated/at_flower``."""
        return cls(settings.pipeline_home() / "validated" / SOURCE_NAME)

    def store(self, day: ValidatedFlowerDay) -> StoredFlowerDay:
        """Write ``day``'s valid rows to their file; the day as handed on, without its frame."""
        buffer = io.BytesIO()
        table = pyarrow.Table.from_pandas(day.rows, schema=ROWS_SCHEMA, preserve_index=False)
        pq.write_table(table, buffer, compression="zstd")
        data = buffer.getvalue()
        path = self.folder / f"{day.sale_date.isoformat()}-{hashlib.sha256(data).hexdigest()[:16]}.parquet"
        write_atomically(path, data)
        self._remove_replaced(day.sale_date, keep=path)
        return StoredFlowerDay(
            sale_date=day.sale_date,
            rows_file=str(path),
            valid=len(day.rows),
            served=day.served,
            rejected=day.rejected,
            blocking_failures=day.blocking_failures,
            source=day.source,
        )

    def _remove_replaced(self, sale_date: date, *, keep: Path) -> None:
        cutoff = time.time() - _KEEP_REPLACED_SECONDS
        for path in self.folder.glob(f"{sale_date.isoformat()}-*.parquet"):
            try:
                if path != keep and path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:  # removed by a run storing the same date at the same time
                continue
