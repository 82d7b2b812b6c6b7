"""What every source's checks before COMMIT share (write-audit-publish): one check's verdict.

A table write judges what it wrote inside its own transaction, before COMMIT; a failed check rolls
the write back, so a write that fails it never becomes visible. The checks themselves are the
source's (``lib/egen_aed/write/audit.py``, ``lib/at_flower/write/audit.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class PostWriteCheck:
    """One check on a table, judged inside the write's transaction before COMMIT: its verdict,
    the figures it judged, and examples of the rows that fail it."""

    name: str
    passed: bool
    figures: dict[str, int | str]
    examples: tuple[str, ...] = ()

    def describe(self) -> str:
        figures = ", ".join(f"{k} {v}" for k, v in self.figures.items())
        examples = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.name} {'passed' if self.passed else 'FAILED'} ({figures}{examples})"


class PostWriteChecksFailed(Exception):
    """A check on ``table`` failed inside the write's transaction of ``partition``: it was rolled back.

    ``unwritten`` says what the rollback left unwritten (the whole sync, or that date of a range).
    """

    def __init__(
        self,
        table: str,
        partition: date,
        checks: tuple[PostWriteCheck, ...],
        unwritten: str = "nothing of that date was written",
    ):
        self.table = table
        self.partition = partition
        self.checks = checks
        self.unwritten = unwritten
        failed = "; ".join(check.describe() for check in checks if not check.passed)
        super().__init__(
            f"post-write checks failed inside the transaction of {table} {partition}, which was rolled back "
            f"({unwritten}, the tables keep their previous contents): {failed}"
        )

    def __reduce__(self):  # pickled with its arguments (Dagster may carry the error between processes)
        return (type(self), (self.table, self.partition, self.checks, self.unwritten))
