"""Tree descriptions (`<name>.tree.json`) and system manifests, as docs/contracts.md defines them.

Both list every path of a system tree with its kind, mode, uid and gid. A tree entry for a file
names the Bazel input holding its bytes ("file"); a manifest entry carries the contents' size and
hashes instead. Everything is validated here, once, so that no tool downstream ever sees a
duplicate path, an unsafe path, or a file sitting where a directory should be.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ota.errors import OtaError
from ota.format import jsonio
from ota.format.hashing import ContentInfo
from ota.format.paths import escape, sort_key

FILE, DIR, SYMLINK = "file", "dir", "symlink"
KINDS = (FILE, DIR, SYMLINK)
MAX_ID = 0xFFFFFFFF


@dataclass(frozen=True)
class TreeEntry:
    """One path of a system tree.

    file: the Bazel exec path of a file's bytes (tree descriptions only).
    content: size and hashes of a file (system manifests only).
    target: a symlink's target (any string the link holds, absolute or not).
    """

    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    file: str | None = None
    content: ContentInfo | None = None
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "kind": self.kind,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
        }
        if self.file is not None:
            out["file"] = self.file
        if self.content is not None:
            out.update(self.content.to_json())
        if self.target is not None:
            out["target"] = self.target
        return out


def _int_field(raw: dict[str, Any], key: str, upper: int, where: str, path: str) -> int:
    value = raw.get(key)
    if type(value) is int and 0 <= value <= upper:
        return value  # the common case: no escaped path for a message (a tree has 10,000s of fields)
    value = jsonio.get(raw, key, int, where, f"{escape(path)}: {key}")
    if not 0 <= value <= upper:
        raise OtaError(where, f"{escape(path)}: {key} {value} out of range 0..{upper}")
    return value


def _parse_entry(raw: Any, index: int, where: str, *, manifest: bool) -> TreeEntry:
    if not isinstance(raw, dict):
        raise OtaError(where, f"entries[{index}]: expected an object")
    path = jsonio.get_path(raw, "path", where, f"entries[{index}].path")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise OtaError(where, f"{escape(path)}: kind {kind!r} is not one of {', '.join(KINDS)}")
    mode = _int_field(raw, "mode", 0o7777, where, path)
    uid = _int_field(raw, "uid", MAX_ID, where, path)
    gid = _int_field(raw, "gid", MAX_ID, where, path)
    if kind == SYMLINK:
        target = jsonio.get_link_target(raw, "target", where, f"{escape(path)}: target")
        return TreeEntry(path, kind, mode, uid, gid, target=target)
    if kind == DIR:
        return TreeEntry(path, kind, mode, uid, gid)
    if manifest:
        return TreeEntry(path, kind, mode, uid, gid, content=ContentInfo.from_json(raw, where, path))
    file = jsonio.get(raw, "file", str, where, f"{escape(path)}: file")
    if not file:
        raise OtaError(where, f"{escape(path)}: file must name an input file")
    return TreeEntry(path, kind, mode, uid, gid, file=file)


def check_entries(entries: Iterable[TreeEntry], where: str) -> list[TreeEntry]:
    """Sorts by path and enforces a real tree: unique paths, every parent listed as a directory."""
    ordered = sorted(entries, key=lambda e: sort_key(e.path))
    kinds: dict[str, str] = {}
    for entry in ordered:
        if entry.path in kinds:
            raise OtaError(where, f"{escape(entry.path)}: listed twice")
        kinds[entry.path] = entry.kind
    for entry in ordered:
        parent = entry.path.rpartition("/")[0]
        if not parent:
            continue
        if parent not in kinds:
            raise OtaError(where, f"{escape(entry.path)}: parent directory {escape(parent)} is not listed")
        if kinds[parent] != DIR:
            raise OtaError(
                where, f"{escape(parent)}: is both a {kinds[parent]} and a directory (parent of {escape(entry.path)})"
            )
    return ordered


def parse(doc: Any, where: str, *, manifest: bool) -> list[TreeEntry]:
    """Entries of a tree description (manifest=False) or system manifest (manifest=True)."""
    raw_entries = jsonio.get(doc, "entries", list, where)
    return check_entries((_parse_entry(raw, i, where, manifest=manifest) for i, raw in enumerate(raw_entries)), where)


def load_tree(path: str) -> list[TreeEntry]:
    return parse(jsonio.read(path), path, manifest=False)


def load_manifest(path: str) -> list[TreeEntry]:
    return parse(jsonio.read(path), path, manifest=True)


def manifest_doc(entries: Iterable[TreeEntry]) -> dict[str, Any]:
    """The JSON document of a system manifest (or tree), entries sorted by path."""
    return {"entries": [e.to_json() for e in sorted(entries, key=lambda e: sort_key(e.path))]}
