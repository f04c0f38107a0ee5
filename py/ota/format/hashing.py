"""Size, SHA-256 and SHA-1 of file contents: how every manifest names a version of a file.

SHA-1 rides along because applypatch's AOSP command-line forms name contents by SHA-1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ota.errors import OtaError
from ota.io import fileio


@dataclass(frozen=True)
class ContentInfo:
    """One version of a file's contents, as the JSON contracts and the manifest carry it."""

    size: int
    sha256: str
    sha1: str

    def to_json(self) -> dict[str, Any]:
        return {"sha1": self.sha1, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, value: Any, where: str, field: str) -> ContentInfo:
        """Parses {"size", "sha256", "sha1"}; anything else is an OtaError naming `field`."""
        if not isinstance(value, dict):
            raise OtaError(where, f"{field}: expected an object with size, sha256 and sha1")
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise OtaError(where, f"{field}.size: expected a non-negative integer, got {size!r}")
        sha256 = _hex(value.get("sha256"), 64, where, f"{field}.sha256")
        sha1 = _hex(value.get("sha1"), 40, where, f"{field}.sha1")
        return cls(size, sha256, sha1)


def _hex(value: Any, length: int, where: str, field: str) -> str:
    if not isinstance(value, str) or len(value) != length or value.strip("0123456789abcdef"):
        raise OtaError(where, f"{field}: expected {length} lowercase hex digits, got {value!r}")
    return value


def of_bytes(data: bytes) -> ContentInfo:
    """The ContentInfo of bytes already in memory."""
    return ContentInfo(len(data), hashlib.sha256(data).hexdigest(), hashlib.sha1(data).hexdigest())


class ContentHasher:
    """Size, SHA-256 and SHA-1 of contents fed in pieces, for callers that read a file in chunks
    (and may write each chunk elsewhere on the way, as tar_tree does)."""

    def __init__(self) -> None:
        self._sha256, self._sha1, self.size = hashlib.sha256(), hashlib.sha1(), 0

    def update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self._sha1.update(chunk)
        self.size += len(chunk)

    def info(self) -> ContentInfo:
        return ContentInfo(self.size, self._sha256.hexdigest(), self._sha1.hexdigest())


def of_file(path: str) -> ContentInfo:
    """The ContentInfo of a file, read in chunks so a multi-GiB image never sits in memory."""
    hasher = ContentHasher()
    for chunk in fileio.read_chunks(path):
        hasher.update(chunk)
    return hasher.info()
