"""The info JSON a file_patch action writes (docs/contracts.md#3-patch-info), shared by its writer and its readers.

It is how the package writer learns what each per-path action decided without re-reading the
source and target: the method, both contents' hashes, and the hash of the data file beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ota.errors import OtaError
from ota.format import jsonio
from ota.format.hashing import ContentInfo

UNCHANGED, WHOLE = "UNCHANGED", "WHOLE"
BSDIFF, IMGDIFF, IMGDIFF_ZIP = "BSDIFF", "IMGDIFF", "IMGDIFF_ZIP"
PATCH_METHODS = (BSDIFF, IMGDIFF, IMGDIFF_ZIP)
METHODS = (UNCHANGED, WHOLE) + PATCH_METHODS


@dataclass(frozen=True)
class FilePatch:
    """What one file_patch action shipped for `path`; data_* describe the data file's bytes."""

    path: str
    method: str
    source: ContentInfo | None
    target: ContentInfo
    data_size: int
    data_sha256: str
    warning: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "method": self.method,
            "source": None if self.source is None else self.source.to_json(),
            "target": self.target.to_json(),
            "data_size": self.data_size,
            "data_sha256": self.data_sha256,
            "warning": self.warning,
        }

    @classmethod
    def load(cls, path: str) -> FilePatch:
        """Reads and checks an info file (written by this project's file_patch action)."""
        return cls.from_json(jsonio.read(path), path)

    @classmethod
    def from_json(cls, doc: Any, path: str) -> FilePatch:
        """Checks a parsed info file; `path` names it in a message."""
        method = jsonio.get(doc, "method", str, path)
        if method not in METHODS:
            raise OtaError(path, f"method: {method!r} is not one of {', '.join(METHODS)}")
        raw_source = jsonio.get(doc, "source", (dict, type(None)), path)
        source = None if raw_source is None else ContentInfo.from_json(raw_source, path, "source")
        target = ContentInfo.from_json(jsonio.get(doc, "target", dict, path), path, "target")
        size = jsonio.get(doc, "data_size", int, path)
        sha256 = jsonio.get(doc, "data_sha256", str, path)
        if size < 0 or len(sha256) != 64 or sha256.strip("0123456789abcdef"):
            raise OtaError(path, f"data_size/data_sha256: {size!r}/{sha256!r} is not a size and a SHA-256")
        if method != WHOLE and source is None:
            raise OtaError(path, f"source: method {method} needs the source's contents")
        return cls(
            jsonio.get(doc, "path", str, path),
            method,
            source,
            target,
            size,
            sha256,
            jsonio.get(doc, "warning", str, path),
        )
