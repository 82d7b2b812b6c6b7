"""Each e-gen page parsed once: the fetch keeps its parse of a page for the validation to read.

``aed_raw_snapshot`` must parse every page it fetches (the envelope, the record count, the
announced ``totalCount``), and the validation used to parse the same archived XML again: the
largest part of its time. The fetch now keeps the records it parsed as a small Arrow file (the API
fields as text, exactly the table :func:`records_table` makes of them), named after the sha256 of
the archived page and the digest of the parsing code; the validation reads that file instead.

The raw archive stays the source of truth. A page without a kept parse (archived by an earlier
version or on another machine, the cache removed, the parsing code changed, an unreadable file) is
parsed from its archived bytes, with the same result. The files of a snapshot are removed once its
validation has published its rows, so the cache holds at most the pages not validated yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow
import pyarrow.feather as feather

from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.files import AtomicFile, package_digest
from aed_pipeline.lib.egen_aed import SOURCE_NAME
from aed_pipeline.lib.egen_aed.records import API_FIELDS, records_table

#: The packages whose code decides what a page parses to, and what validating it gives: this
#: source's (parser, mapping, checks, rows file) and ``core`` (wire helpers, archive). Whole
#: packages, so that a module added later counts too.
PARSING_PACKAGES = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "core")


@lru_cache(maxsize=1)
def parsing_code_digest() -> str:
    """The parsing and validating code's identity: any changed source file invalidates kept results."""
    return package_digest(PARSING_PACKAGES)


class ParsedPages:
    """The kept parses of archived pages, in ``folder`` (local: a cache beside the embedded database)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def default(cls) -> ParsedPages:
        """The pipeline's own cache: ``{AED_PIPELINE_HOME}/parsed/egen_aed``."""
        return cls(settings.pipeline_home() / "parsed" / SOURCE_NAME)

    def path(self, page_sha256: str) -> Path:
        return self.folder / f"{page_sha256}-{parsing_code_digest()[:16]}.arrow"

    def keep(self, page_sha256: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Keep the records parsed from the page whose archived bytes have ``page_sha256``."""
        table = records_table(records)
        with AtomicFile(self.path(page_sha256)) as file:
            feather.write_feather(table, file.temporary, compression="zstd")

    def read(self, page_sha256: str) -> pd.DataFrame | None:
        """The kept records of that page as :func:`records_frame` makes them, or None when not kept.

        A missing, unreadable or foreign file is no kept parse: the caller parses the archive.
        """
        try:
            table = feather.read_table(self.path(page_sha256))
        except (OSError, pyarrow.ArrowException):
            return None
        if table.column_names != list(API_FIELDS) or any(
            not pyarrow.types.is_large_string(t) for t in table.schema.types
        ):
            return None
        return table.to_pandas()

    def discard(self, page_sha256s: Iterable[str]) -> None:
        """Remove the kept parses of those pages (a validation has used them)."""
        for sha256 in page_sha256s:
            self.path(sha256).unlink(missing_ok=True)
