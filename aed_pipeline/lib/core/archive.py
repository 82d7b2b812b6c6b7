"""The raw archive: every API response page kept byte for byte, compressed and content-hashed.

Why: the validated and table assets must be re-derivable without the network (the e-gen API only
ever serves today's registry, and the aT API's settlements change), and an engineer must be able
to see exactly what the source said on a given day.

Layout (one folder per source and partition; a local folder by default, any fsspec/UPath URL such
as ``s3://bucket/aed`` when configured)::

    {root}/{source}/{partition}/{page set}/page-00001-<sha256 prefix>.xml.gz
    {root}/{source}/{partition}/{page set}/manifest.json

A *page set* is the pages of one request series: the e-gen snapshot (``snapshot``) or one aT flower
group (``gubn-1`` …). The manifest lists each page with its sha256 (of the uncompressed bytes),
sizes, record count and fetch time, plus what completes the set (``total_count``). Every file is
written to a temporary name and renamed, so a crash leaves either the old or the new file, and the
manifest is rewritten after each page, so an interrupted fetch knows which pages it already has.

Each writer rewrites the manifest from its own view of the set, so two fetches of one page set at
once would overwrite each other's manifests (a finished set made incomplete again, pages dropped
from it). A fetch therefore holds :meth:`RawArchive.locked` on its page set: the second one waits,
then finds the set complete or resumes it. A set that is always refetched whole (an aT flower
group) is also read under the lock, so that a reader never meets it half rewritten.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from filelock import FileLock
from upath import UPath

from aed_pipeline.lib.core.files import write_atomically

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
MANIFEST_VERSION = 1
# Level 3 compresses these XML/JSON pages ~8x at several times the speed of the default level 9.
COMPRESS_LEVEL = 3


class ArchiveError(Exception):
    """The archive is missing, incomplete or corrupted where a page or manifest was expected."""


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ArchivedPage:
    """One archived response page, as recorded in its manifest."""

    page: int
    file: str
    sha256: str
    bytes: int
    stored_bytes: int
    records: int
    fetched_at: str
    content_type: str = ""


@dataclass
class PageSetManifest:
    """What an archived page set holds and whether it is complete.

    ``origin`` is ``live`` or ``simulator``; ``format`` the body format (``xml``/``json``);
    ``request`` the paging parameters that fixed the page boundaries (a resume with other
    parameters must start over); ``total_count`` the record total the source announced, when it
    announces one.
    """

    source: str
    partition: str
    page_set: str
    origin: str
    format: str
    request: dict[str, Any]
    total_count: int | None = None
    expected_pages: int | None = None
    pages: dict[int, ArchivedPage] = field(default_factory=dict)
    complete: bool = False
    started_at: str = field(default_factory=utc_now_iso)
    completed_at: str | None = None
    version: int = MANIFEST_VERSION

    @property
    def records(self) -> int:
        return sum(page.records for page in self.pages.values())

    @property
    def bytes(self) -> int:
        return sum(page.bytes for page in self.pages.values())

    @property
    def stored_bytes(self) -> int:
        return sum(page.stored_bytes for page in self.pages.values())

    def missing_pages(self) -> list[int]:
        """Pages not archived yet (needs ``expected_pages``)."""
        if self.expected_pages is None:
            return []
        return [n for n in range(1, self.expected_pages + 1) if n not in self.pages]

    def digest(self) -> str:
        """One sha256 over the pages' hashes in page order: the identity of the whole set."""
        h = hashlib.sha256()
        for n in sorted(self.pages):
            h.update(f"{n}:{self.pages[n].sha256}\n".encode())
        return h.hexdigest()

    def to_json(self) -> str:
        data = asdict(self)
        data["pages"] = [asdict(self.pages[n]) for n in sorted(self.pages)]
        return json.dumps(data, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> PageSetManifest:
        data = json.loads(text)
        pages = {int(p["page"]): ArchivedPage(**p) for p in data.pop("pages", [])}
        return cls(**data, pages=pages)


class RawArchive:
    """Reads and writes archived page sets under one root folder or URL."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = UPath(root)

    def __repr__(self) -> str:
        return f"RawArchive({str(self.root)!r})"

    def folder(self, source: str, partition: str, page_set: str) -> UPath:
        return self.root / source / partition / page_set

    def location(self, source: str, partition: str, page_set: str) -> str:
        """The page set's folder as a string: the archive reference stored beside derived rows."""
        return str(self.folder(source, partition, page_set))

    @contextmanager
    def locked(self, source: str, partition: str, page_set: str) -> Iterator[None]:
        """Hold the page set for one writer at a time (other processes too); waits for the holder.

        A lock file beside the manifest, on a local archive. An object store (``s3://``) has no
        locks: there, one writer per page set is up to the orchestration.
        """
        if self.root.protocol not in ("", "file", "local"):
            yield
            return
        folder = self.folder(source, partition, page_set)
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock((folder / LOCK_NAME).path):  # the local path, also of a file:// URL
            yield

    def partitions(self, source: str) -> list[str]:
        """The names of the partition folders archived for ``source``, ascending: one listing of its
        folder, none when nothing was ever archived for it. A folder may hold no complete page set
        (a fetch that failed leaves its folder behind): its manifests say."""
        folder = self.root / source
        if not folder.exists():
            return []
        return sorted(child.name for child in folder.iterdir())

    # -- manifests ---------------------------------------------------------------------

    def read_manifest(self, source: str, partition: str, page_set: str) -> PageSetManifest | None:
        """The page set's manifest, or None when nothing was archived for it."""
        path = self.folder(source, partition, page_set) / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            return PageSetManifest.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError, KeyError) as exc:
            raise ArchiveError(f"unreadable archive manifest {path}: {exc}") from exc

    def write_manifest(self, manifest: PageSetManifest) -> None:
        folder = self.folder(manifest.source, manifest.partition, manifest.page_set)
        write_atomically(folder / MANIFEST_NAME, manifest.to_json().encode("utf-8"))

    def discard(self, source: str, partition: str, page_set: str) -> None:
        """Forget a page set (its manifest); the content-hashed page files may stay."""
        path = self.folder(source, partition, page_set) / MANIFEST_NAME
        if path.exists():
            path.unlink()

    # -- pages -------------------------------------------------------------------------

    def add_page(
        self,
        manifest: PageSetManifest,
        page: int,
        raw: bytes,
        *,
        records: int,
        content_type: str = "",
    ) -> ArchivedPage:
        """Archive one page's bytes and record it in the manifest (written to storage at once)."""
        sha = hashlib.sha256(raw).hexdigest()
        name = f"page-{page:05d}-{sha[:16]}.{manifest.format}.gz"
        compressed = gzip.compress(raw, compresslevel=COMPRESS_LEVEL, mtime=0)
        folder = self.folder(manifest.source, manifest.partition, manifest.page_set)
        # Always (re)written, even when a content-hashed name exists: a damaged file is replaced.
        write_atomically(folder / name, compressed)
        entry = ArchivedPage(
            page=page,
            file=name,
            sha256=sha,
            bytes=len(raw),
            stored_bytes=len(compressed),
            records=records,
            fetched_at=utc_now_iso(),
            content_type=content_type,
        )
        manifest.pages[page] = entry
        self.write_manifest(manifest)
        return entry

    def read_page(self, manifest: PageSetManifest, page: int) -> bytes:
        """The page's original bytes, verified against the sha256 recorded when it was archived."""
        entry = manifest.pages.get(page)
        if entry is None:
            raise ArchiveError(
                f"page {page} is not in the archive of {manifest.source} {manifest.partition} ({manifest.page_set})"
            )
        path = self.folder(manifest.source, manifest.partition, manifest.page_set) / entry.file
        try:
            raw = gzip.decompress(path.read_bytes())
        except FileNotFoundError as exc:
            raise ArchiveError(f"archived page {page} is missing: {path}") from exc
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ArchiveError(f"archived page {page} is corrupted (not valid gzip): {path}: {exc}") from exc
        if hashlib.sha256(raw).hexdigest() != entry.sha256:
            raise ArchiveError(f"archived page {page} is corrupted: its sha256 differs from the manifest's: {path}")
        return raw

    def iter_pages(self, manifest: PageSetManifest):
        """``(page number, original bytes)`` for every archived page, in page order."""
        for page in sorted(manifest.pages):
            yield page, self.read_page(manifest, page)
