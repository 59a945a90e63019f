"""Content-addressed store for job inputs (local directory; an S3-compatible store can
implement the same four methods).

A blob's key is the SHA-256 of its bytes, so the same image sent twice is stored once
and a key always names exactly the bytes it was made from.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[0-9a-f]{64}$")


class BlobNotFound(KeyError):
    pass


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> bool: ...
    def exists(self, key: str) -> bool: ...


def blob_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBlobStore:
    """Blobs as files under `root/ab/cd/<sha256>`; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = blob_key(data)
        path = self.path_for(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> bool:
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, key: str) -> bool:
        return self.path_for(key).exists()

    def count(self) -> int:
        return sum(1 for path in self.root.rglob("*") if path.is_file() and not path.name.startswith("."))
