"""Each e-gen page is parsed once: the fetch keeps its parse, the validation reads it, the archive stays the truth."""

from __future__ import annotations

import datetime as dt

import pytest

from aed_pipeline.lib.core.archive import ArchiveError, RawArchive
from aed_pipeline.lib.core.files import package_digest
from aed_pipeline.lib.core.http import HttpOptions
from aed_pipeline.lib.egen_aed.client import EgenClient
from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET, fetch_snapshot
from aed_pipeline.lib.egen_aed.parsed import PARSING_PACKAGES, ParsedPages, parsing_code_digest
from aed_pipeline.lib.egen_aed.rows import read_device_rows
from aed_pipeline.lib.egen_aed.validate import validate_archived_snapshot
from aed_pipeline.simulator import Simulator, simulator_transport

DAY = dt.date(2026, 3, 2)
HEALTH_CENTERS = {("서울특별시", "종로구"): "서울특별시 종로구보건소"}


def _fetched(tmp_path, *, fault: str | None = None) -> tuple[RawArchive, ParsedPages]:
    """Three pages of a 700-device snapshot archived (page 1 with ``fault``), their parses kept."""
    sim = Simulator(today=DAY, aed_count=700)
    if fault:
        sim.faults.snapshot = fault
        sim.faults.pages = {1}
    archive = RawArchive(tmp_path / "archive")
    parsed = ParsedPages(tmp_path / "parsed")
    with EgenClient("k", num_of_rows=300, http=HttpOptions(transport=simulator_transport(sim))) as client:
        fetch_snapshot(client, archive, DAY, origin="simulator", parsed=parsed)
    return archive, parsed


def _validated(archive, tmp_path, name, parsed=None):
    validation = validate_archived_snapshot(
        archive, DAY, health_centers=HEALTH_CENTERS, previous=None, rows_path=tmp_path / name, parsed=parsed
    )
    return validation, list(read_device_rows(validation.snapshot.rows_path))


def test_the_fetch_keeps_a_parse_of_every_page_and_the_validation_reads_it_instead_of_the_archive(tmp_path):
    archive, parsed = _fetched(tmp_path)
    manifest = archive.read_manifest(ARCHIVE_SOURCE, DAY.isoformat(), PAGE_SET)
    assert manifest is not None and len(manifest.pages) == 3
    assert all(parsed.path(entry.sha256).exists() for entry in manifest.pages.values())
    from_archive, archive_rows = _validated(archive, tmp_path, "from_archive.parquet")

    folder = archive.folder(ARCHIVE_SOURCE, DAY.isoformat(), PAGE_SET)
    for entry in manifest.pages.values():
        (folder / entry.file).unlink()  # the archived bytes gone: only the kept parses can answer
    from_parses, parsed_rows = _validated(archive, tmp_path, "from_parses.parquet", parsed)

    assert parsed_rows == archive_rows and len(parsed_rows) == from_archive.snapshot.valid > 600
    assert [(c.name, c.passed, c.metadata) for c in from_parses.checks] == [
        (c.name, c.passed, c.metadata) for c in from_archive.checks
    ]
    # Used once, then removed: the cache holds only what is not validated yet.
    assert not any(parsed.folder.iterdir())
    with pytest.raises(ArchiveError, match="missing"):
        _validated(archive, tmp_path, "again.parquet", parsed)


def test_quarantined_records_are_the_same_from_a_kept_parse(tmp_path):
    archive, parsed = _fetched(tmp_path, fault="bad_values")
    from_archive, archive_rows = _validated(archive, tmp_path, "from_archive.parquet")
    from_parses, parsed_rows = _validated(archive, tmp_path, "from_parses.parquet", parsed)
    assert len(from_archive.rejected) == 3
    assert from_parses.rejected == from_archive.rejected
    assert parsed_rows == archive_rows


def test_a_damaged_or_foreign_kept_parse_is_ignored_and_the_archive_parsed(tmp_path):
    archive, parsed = _fetched(tmp_path)
    _, archive_rows = _validated(archive, tmp_path, "from_archive.parquet")
    manifest = archive.read_manifest(ARCHIVE_SOURCE, DAY.isoformat(), PAGE_SET)
    assert manifest is not None
    first, second, third = (manifest.pages[n].sha256 for n in sorted(manifest.pages))
    with open(parsed.path(first), "r+b") as handle:
        handle.truncate(64)  # a torn file
    parsed.path(second).write_bytes(b"ARROW1 but not really")  # no Arrow file at all
    assert parsed.read(first) is None and parsed.read(second) is None and parsed.read(third) is not None

    _, rows = _validated(archive, tmp_path, "mixed.parquet", parsed)
    assert rows == archive_rows


def test_a_kept_parse_belongs_to_the_code_that_made_it(tmp_path):
    """The file is named after the parsing packages' digest, which any changed or added module changes."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "parser.py").write_text("FIELDS = ('serialSeq',)\n")
    before = package_digest([package])
    (package / "parser.py").write_text("FIELDS = ('serialSeq', 'org')\n")
    edited = package_digest([package])
    (package / "later.py").write_text("")
    added = package_digest([package])
    assert len({before, edited, added}) == 3

    parsed = ParsedPages(tmp_path / "parsed")
    parsing_code_digest.cache_clear()  # computed once per process: this one may predate an edit of the tree
    assert parsing_code_digest() == package_digest(PARSING_PACKAGES)
    assert parsed.path("ab" * 32).name == f"{'ab' * 32}-{parsing_code_digest()[:16]}.arrow"
