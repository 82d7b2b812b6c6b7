"""Files that readers never see half-written: written under a temporary name, then renamed.

A crash (or a second writer) mid-write leaves either the previous file or the new one, never a
truncated mix: the archive's pages and manifests, the validated rows, the values passed between
steps all rely on it. Works for local paths and for ``UPath`` object-store paths alike.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

PathLike = Path | Any  # a pathlib.Path or a upath.UPath (same interface, no common base class)


class AtomicFile:
    """``temporary`` is where to write; ``publish`` renames it onto ``path``, ``discard`` drops it.

    As a context manager it publishes on success and discards on an exception.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")

    def publish(self) -> None:
        if isinstance(self.path, Path):
            os.replace(self.temporary, self.path)
        else:  # an object store: its rename replaces the target too
            self.temporary.rename(self.path)

    def discard(self) -> None:
        if self.temporary.exists():
            self.temporary.unlink()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()


def write_atomically(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` (creating its folder) so that no reader sees a partial file."""
    with AtomicFile(path) as file:
        file.temporary.write_bytes(data)


def package_digest(packages: Iterable[Path]) -> str:
    """The sha256 of every Python source file under ``packages`` (names and contents, in order).

    A result computed by that code is kept under this digest, so that changing any of it (a
    module added later included) makes the kept result stale.
    """
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            digest.update(f"{package.name}/{path.relative_to(package).as_posix()}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
