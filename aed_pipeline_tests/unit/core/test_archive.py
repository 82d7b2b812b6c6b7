"""The raw archive: pages compressed, named and verified by their content hash, on any fsspec URL."""

from __future__ import annotations

import gzip

import pytest

from aed_pipeline.lib.core.archive import ArchiveError, PageSetManifest, RawArchive
from aed_pipeline_tests.support.helpers import RECORDED_AED_XML


def test_archive_pages_are_compressed_content_hashed_and_verified(tmp_path):
    archive = RawArchive(tmp_path)
    manifest = PageSetManifest(
        source="egen_aed",
        partition="2026-03-02",
        page_set="snapshot",
        origin="simulator",
        format="xml",
        request={"num_of_rows": 10},
    )
    body = RECORDED_AED_XML.read_bytes()
    entry = archive.add_page(manifest, 1, body, records=5, content_type="application/xml")
    path = tmp_path / "egen_aed" / "2026-03-02" / "snapshot" / entry.file
    assert entry.file.startswith("page-00001-") and entry.sha256[:16] in entry.file
    assert gzip.decompress(path.read_bytes()) == body and entry.stored_bytes < entry.bytes
    reread = archive.read_manifest("egen_aed", "2026-03-02", "snapshot")
    assert archive.read_page(reread, 1) == body and reread.records == 5

    path.write_bytes(gzip.compress(body.replace(b"31", b"32")))
    with pytest.raises(ArchiveError, match=r"page 1 is corrupted.*sha256"):
        archive.read_page(reread, 1)
    path.write_bytes(b"not gzip")
    with pytest.raises(ArchiveError, match="not valid gzip"):
        archive.read_page(reread, 1)


def test_archive_works_on_any_fsspec_url():
    archive = RawArchive("memory://aed-archive-test/raw")
    manifest = PageSetManifest(
        source="egen_aed", partition="2026-03-02", page_set="snapshot", origin="live", format="xml", request={}
    )
    archive.add_page(manifest, 1, b"<response/>", records=0)
    reread = archive.read_manifest("egen_aed", "2026-03-02", "snapshot")
    assert archive.read_page(reread, 1) == b"<response/>"
    assert archive.location("egen_aed", "2026-03-02", "snapshot").startswith("memory://")
