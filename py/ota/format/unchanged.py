"""The digest of a directory's unchanged entries (`OtaManifest.unchanged`), shared by the writer and ota_apply.

Why: a path the same in both builds needs no operation, but the device must still prove it holds
the source build's entry before it writes anything (a patch elsewhere may rely on it, and the
target build is declared complete after the update). Listing one digest per directory instead of
an operation per path is what keeps an incremental package's manifest proportional to what
changed (docs/package-format.md, "Unchanged paths").

A record is one entry of the directory: its name (the last path component's bytes), kind, mode
(0 for a symlink, whose mode Linux ignores), uid, gid, and for a file its size and SHA-256, for a
symlink its link bytes. Each variable-length field is length-prefixed, so no two record lists
serialize alike. The digest is SHA-256 over the records sorted by name.
"""

from __future__ import annotations

import hashlib
import operator
import struct
from collections.abc import Iterable
from dataclasses import dataclass

FILE, DIR, SYMLINK = "file", "dir", "symlink"
# "other" (a device node, a FIFO, ...) is what a device may hold; no build has one, so it never matches.
_KIND_BYTE = {FILE: 1, DIR: 2, SYMLINK: 3, "other": 4}
_FIXED = struct.Struct(">BIIIQ")
_LENGTH = struct.Struct(">I")
_NAME = operator.itemgetter(0)


@dataclass(frozen=True)
class Record:
    """One unchanged entry: `data` is a file's raw SHA-256, a symlink's link bytes, b"" for a directory."""

    name: bytes
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    data: bytes

    def serialized(self) -> bytes:
        return serialize(self.name, self.kind, self.mode, self.uid, self.gid, self.size, self.data)


def serialize(name: bytes, kind: str, mode: int, uid: int, gid: int, size: int, data: bytes) -> bytes:
    """The bytes of one record (a Record's fields, for callers that hold them without a Record)."""
    return b"".join(
        (
            _LENGTH.pack(len(name)),
            name,
            _FIXED.pack(_KIND_BYTE[kind], 0 if kind == SYMLINK else mode, uid, gid, size),
            _LENGTH.pack(len(data)),
            data,
        )
    )


def digest(records: Iterable[Record]) -> tuple[int, bytes]:
    """(count, SHA-256) of a directory's unchanged entries, in any order."""
    return digest_serialized((record.name, record.serialized()) for record in records)


def digest_serialized(records: Iterable[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """`digest` of records given as (name, serialized bytes) pairs, in any order."""
    ordered = sorted(records, key=_NAME)
    hasher = hashlib.sha256()
    for _, serialized in ordered:
        hasher.update(serialized)
    return len(ordered), hasher.digest()


def parent_and_name(path: bytes) -> tuple[bytes, bytes]:
    """(directory, last component) of a manifest path; the root's directory is b""."""
    directory, _, name = path.rpartition(b"/")
    return directory, name
