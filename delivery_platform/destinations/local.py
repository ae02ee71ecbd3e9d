"""A folder on this machine: the embedded default (`data/outbox/<vendor>/`)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO

from ..core.files import CHUNK, file_md5
from .base import AlreadyExists, Destination, DestinationError, FileInfo, clean_name


class LocalDestination(Destination):
    kind = "local"
    leaves_partials = True

    def __init__(self, vendor: str, root: Path | str):
        super().__init__(vendor)
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root / clean_name(name)

    def _partial(self, name: str, tag: str) -> Path:
        final = self._path(name)
        return final.with_name(f".{final.name}.{tag}.partial")

    def partial_path(self, name: str, tag: str) -> str | None:
        return str(self._partial(name, tag))

    def remove_partial(self, name: str, tag: str) -> bool:
        try:
            self._partial(name, tag).unlink(missing_ok=True)
        except OSError:
            return not self._partial(name, tag).exists()
        return True

    def _publish(self, local_path: Path, name: str, tag: str | None = None) -> None:
        final = self._path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = self._partial(name, tag or uuid.uuid4().hex[:8])
        try:
            try:  # same file system: a hard link of the finished file costs no copy
                os.link(local_path, partial)
            except OSError:
                with open(local_path, "rb") as src, open(partial, "wb") as dst:
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
            # link() fails if the final name exists: an atomic no-overwrite rename.
            try:
                os.link(partial, final)
            except FileExistsError:
                raise AlreadyExists(f"[{self.vendor}] {self.uri(name)} already exists; refusing to overwrite")
        except OSError as exc:
            if isinstance(exc, AlreadyExists):
                raise
            raise DestinationError(f"[{self.vendor}] writing {self.uri(name)} failed: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)

    def verify(self, name: str, *, size: int, md5: str, local_path: Path | None = None) -> FileInfo:
        """A hard link is the very file `local_path` (same inode), whose bytes were hashed as they were
        written (`md5`): identity and size are checked, not the 1.75 GB of a big day hashed again. What
        that no longer catches is the staged file rewritten in place, at the same size, between the
        files step and the delivery. A copy (another file system) is read back and hashed."""
        path = self._path(name)
        if local_path is not None and path.is_file() and os.path.samefile(path, local_path):
            st = path.stat()
            if st.st_size != size:
                raise DestinationError(f"[{self.vendor}] {self.uri(name)} holds {st.st_size} bytes, expected {size}")
            return FileInfo(name=name, size=st.st_size, mtime=st.st_mtime, md5=md5)
        return super().verify(name, size=size, md5=md5)

    def list(self, prefix: str = "") -> list[FileInfo]:
        if not self.root.exists():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for file in files:
                if file.endswith(".partial"):
                    continue
                full = Path(dirpath) / file
                rel = full.relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    st = full.stat()
                    out.append(FileInfo(name=rel, size=st.st_size, mtime=st.st_mtime))
        return sorted(out, key=lambda f: f.name)

    def stat(self, name: str) -> FileInfo:
        path = self._path(name)
        if not path.is_file():
            raise FileNotFoundError(self.uri(name))
        st = path.stat()
        return FileInfo(name=name, size=st.st_size, mtime=st.st_mtime, md5=file_md5(path))

    def open(self, name: str) -> BinaryIO:
        path = self._path(name)
        if not path.is_file():
            raise FileNotFoundError(self.uri(name))
        return open(path, "rb")

    def uri(self, name: str) -> str:
        return (self.root / name).resolve().as_uri()
