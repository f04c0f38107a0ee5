"""Tree descriptions (`<name>.tree.json`) and system manifests, as docs/contracts.md defines them.

Both list every path of a system tree with its kind, mode, uid and gid. A tree entry for a file
names the Bazel input holding its bytes ("file"); a manifest entry carries the contents' size and
hashes instead. Everything is validated here, once, so that no tool downstream ever sees a
duplicate path, an unsafe path, or a file sitting where a directory should be.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from ota.errors import OtaError
from ota.format import jsonio
from ota.format.hashing import ContentInfo
from ota.format.paths import check_path, escape, sort_key

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


class ManifestRow(NamedTuple):
    """A system manifest entry as the package writer compares them: a flat tuple, so that a path
    is unchanged exactly when its two rows are equal. size, sha256 and sha1 are a file's (None
    otherwise), target a symlink's."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int | None
    sha256: str | None
    sha1: str | None
    target: str | None

    @classmethod
    def of(cls, entry: TreeEntry) -> ManifestRow:
        content = entry.content
        if content is None:
            return cls(entry.kind, entry.mode, entry.uid, entry.gid, None, None, None, entry.target)
        return cls(
            entry.kind, entry.mode, entry.uid, entry.gid, content.size, content.sha256, content.sha1, entry.target
        )


def manifest_rows(doc: Any, where: str) -> dict[str, ManifestRow]:
    """A system manifest's entries by path, refused exactly when `parse(manifest=True)` refuses
    them, with its message.

    Why not `parse`: the package writer reads two manifests of 10,000s of entries in every
    rebuild, and checking them an entry at a time, each into frozen dataclasses, was most of its
    time. Here each check runs over a whole column (set, map, min, max and joined strings, which
    loop in C); if any column holds anything unusual, `parse` runs instead, so a bad manifest
    still gets the message of its first bad entry.
    """
    raw_entries = jsonio.get(doc, "entries", list, where)
    rows = _rows_if_plainly_valid(raw_entries)
    if rows is None:
        rows = {entry.path: ManifestRow.of(entry) for entry in parse(doc, where, manifest=True)}
    return rows


_HEAD = operator.itemgetter("path", "kind", "mode", "uid", "gid")
_CONTENT = operator.itemgetter("size", "sha256", "sha1")
_TARGET = operator.itemgetter("target")
_HEX_DIGITS = b"0123456789abcdef"
_NO_TAIL = (None, None, None, None)


def _ints_within(values: Sequence[Any], upper: int | None) -> bool:
    """Every value an int (bool is not) in 0..upper (no bound: None)."""
    if not values:
        return True
    return set(map(type, values)) == {int} and min(values) >= 0 and (upper is None or max(values) <= upper)


def _hex_strings(values: Sequence[Any], length: int) -> bool:
    """Every value a string of `length` lowercase hex digits."""
    if not values:
        return True
    if set(map(type, values)) != {str} or set(map(len, values)) != {length}:
        return False
    joined = "".join(values)
    return joined.isascii() and not joined.encode("ascii").translate(None, _HEX_DIGITS)


def _link_targets(values: Sequence[Any]) -> bool:
    """Every value a non-empty string without NUL (jsonio.get_link_target's rule)."""
    if not values:
        return True
    return set(map(type, values)) == {str} and min(map(len, values)) > 0 and "\0" not in "".join(values)


def _rows_if_plainly_valid(raw_entries: list[Any]) -> dict[str, ManifestRow] | None:
    """The rows, if every entry passes every check of `_parse_entry` and `check_entries`; None
    when any might not (the caller then runs those, which say what is wrong)."""
    if not raw_entries:
        return {}
    try:
        if set(map(type, raw_entries)) != {dict}:
            return None
        paths, kinds, modes, uids, gids = zip(*map(_HEAD, raw_entries), strict=True)
        if set(map(type, paths)) != {str} or not set(kinds) <= set(KINDS):
            return None
        for path in paths:
            check_path(path, "")
        files = [raw for raw, kind in zip(raw_entries, kinds, strict=True) if kind == FILE]
        sizes, sha256s, sha1s = zip(*map(_CONTENT, files), strict=True) if files else ((), (), ())
        targets = list(map(_TARGET, [raw for raw, kind in zip(raw_entries, kinds, strict=True) if kind == SYMLINK]))
    except (KeyError, TypeError, OtaError):  # a missing key, an unhashable kind, an unsafe path
        return None
    if not (
        _ints_within(modes, 0o7777)
        and _ints_within(uids, MAX_ID)
        and _ints_within(gids, MAX_ID)
        and _ints_within(sizes, None)
        and _hex_strings(sha256s, 64)
        and _hex_strings(sha1s, 40)
        and _link_targets(targets)
    ):
        return None
    directories = {path for path, kind in zip(paths, kinds, strict=True) if kind == DIR}
    parents = {path.rpartition("/")[0] for path in paths}
    parents.discard("")
    if len(set(paths)) != len(paths) or not parents <= directories:
        return None
    content, target = iter(zip(sizes, sha256s, sha1s, repeat(None), strict=False)), iter(targets)
    return {
        path: ManifestRow._make(
            head
            + (next(content) if head[0] == FILE else _NO_TAIL if head[0] == DIR else (None, None, None, next(target)))
        )
        for path, head in zip(paths, zip(kinds, modes, uids, gids, strict=True), strict=True)
    }


def load_tree(path: str) -> list[TreeEntry]:
    return parse(jsonio.read(path), path, manifest=False)


def load_manifest(path: str) -> list[TreeEntry]:
    return parse(jsonio.read(path), path, manifest=True)


def manifest_doc(entries: Iterable[TreeEntry]) -> dict[str, Any]:
    """The JSON document of a system manifest (or tree), entries sorted by path."""
    return {"entries": [e.to_json() for e in sorted(entries, key=lambda e: sort_key(e.path))]}
