"""Imports a directory of the build host as a system tree: the scan behind ota_tree_repository.

`python3 -m ota.actions.tree_scan ROOT OUT RULES_OTA_REPO [CACHE]` records every entry below ROOT (kind,
permission bits including setuid/setgid/sticky, uid, gid, a symlink's target as stored, empty
directories) and writes into OUT, the repository directory (docs/contracts.md#10-imported-directory):

* `files/<sha256>`: a copy of each distinct regular-file content, named by its digest, so no
  artifact name derives from an install path and identical files share one Bazel File;
  its size and SHA-1 are recorded too, so the rules know the whole system manifest entry
  (docs/contracts.md#2-system-manifest) while Bazel analyzes: no action hashes the tree again,
  and ota_package can batch small changed files by size (docs/rules.md, "Batches");
* `manifest.json`: the system manifest of the tree (docs/contracts.md#2-system-manifest), which
  an ota_system_image whose only input is the tree uses as it is;
* `BUILD.bazel`: one `ota_imported_tree` target, `:tree` (rules/private/imported_tree.bzl), whose
  string literals octal-escape every byte that is not printable ASCII, `"` and `\\`, so any name
  Linux allows reaches Starlark byte for byte (the file itself is pure ASCII).

Nothing outside ROOT is ever read: directories and files are opened relative to their parent's
descriptor with O_NOFOLLOW, so a symlink (a link to /etc, a dangling one, one swapped in during
the scan) is only ever read with readlink, and ROOT itself must not be a symlink. Devices, FIFOs
and sockets cannot be part of a system tree and are refused with one line naming their path.

Files are copied, not hard-linked: a hard link would share the inode with the host's file, so an
edit in place would change the repository's bytes behind the digest recorded in BUILD.bazel (and
carry the host file's setuid bits into the output base). The copy is hashed while it is written,
so the digest always describes the stored bytes. Host hard links are read once.

With CACHE (py/ota/actions/scan_cache.py, which ota_tree_repository passes), the copies are kept
there between fetches and a file whose device, inode, size, mtime and ctime are those of the last
scan is not read again: a re-fetch after a one-file edit reads one file and links the others.

It runs at fetch time under the host's python3 with only this package on PYTHONPATH (no pip
hub), so it uses the standard library, ota.format (paths, hashing, jsonio), ota.actions.tree and
ota.actions.scan_cache only, and positional arguments instead of absl flags.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass

from ota.actions import scan_cache
from ota.actions.tree import TreeEntry, manifest_doc
from ota.errors import OtaError
from ota.format import hashing, jsonio, paths
from ota.format.hashing import ContentInfo

FILES_DIR = "files"
BUILD_FILE = "BUILD.bazel"
MANIFEST_FILE = "manifest.json"
SYMLINK_MODE = 0o777  # what lstat reports for a symlink on Linux (docs/contracts.md#1-tree-description)
_CHUNK = 1 << 20
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_SPECIAL = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True)
class ScannedEntry:
    """One entry below the root. path: the relative path's bytes; content: a file's size and
    digests; target: a symlink's target bytes."""

    path: bytes
    kind: str  # "file", "dir" or "symlink" (docs/contracts.md#1-tree-description)
    mode: int
    uid: int
    gid: int
    content: ContentInfo | None = None
    target: bytes | None = None


def display(path: bytes) -> str:
    """A path for a one-line message, escaped as every tool shows a name (py/ota/format/paths.py)."""
    return paths.escape(paths.from_bytes(path))


def _problem(err: OSError) -> str:
    return f"cannot read: {err.strerror or err}"


class _Scanner:
    """Walks ROOT by directory descriptors, copying each distinct content once into OUT/files."""

    def __init__(self, root: bytes, out: bytes, cache: scan_cache.ScanCache | None = None) -> None:
        self.root = root
        self.files_dir = os.path.join(out, FILES_DIR.encode())
        self.cache = cache
        self.entries: list[ScannedEntry] = []
        self.by_inode: dict[tuple[int, int], ContentInfo] = {}  # host hard links are read once

    def where(self, rel: bytes) -> str:
        return display(os.path.join(self.root, rel) if rel else self.root)

    def scan(self) -> list[ScannedEntry]:
        try:
            st = os.lstat(self.root)
        except OSError as err:
            raise OtaError(self.where(b""), _problem(err)) from None
        if stat.S_ISLNK(st.st_mode):
            target = display(os.readlink(self.root))
            raise OtaError(self.where(b""), f"is a symlink (to {target}); name the directory itself")
        if not stat.S_ISDIR(st.st_mode):
            raise OtaError(self.where(b""), "is not a directory")
        os.makedirs(self.files_dir, exist_ok=True)
        if self.cache is not None:
            os.makedirs(self.cache.store, exist_ok=True)
        fd = self._open_dir(None, self.root, b"")
        try:
            self._walk(fd, b"")
        finally:
            os.close(fd)
        return sorted(self.entries, key=lambda e: e.path)

    def _open_dir(self, parent: int | None, name: bytes, rel: bytes) -> int:
        try:
            return os.open(name, _OPEN_DIR, dir_fd=parent)
        except OSError as err:
            raise OtaError(self.where(rel), _problem(err)) from None

    def _walk(self, fd: int, rel: bytes) -> None:
        try:
            names = sorted(os.listdir(fd))
        except OSError as err:
            raise OtaError(self.where(rel), _problem(err)) from None
        for raw in names:
            name = os.fsencode(raw)
            path = rel + b"/" + name if rel else name
            try:
                st = os.lstat(name, dir_fd=fd)
            except OSError as err:
                raise OtaError(self.where(path), _problem(err)) from None
            fmt = stat.S_IFMT(st.st_mode)
            mode = stat.S_IMODE(st.st_mode)
            if fmt == stat.S_IFLNK:
                target = os.readlink(name, dir_fd=fd)
                self.entries.append(ScannedEntry(path, "symlink", SYMLINK_MODE, st.st_uid, st.st_gid, target=target))
            elif fmt == stat.S_IFDIR:
                self.entries.append(ScannedEntry(path, "dir", mode, st.st_uid, st.st_gid))
                child = self._open_dir(fd, name, path)
                try:
                    self._walk(child, path)
                finally:
                    os.close(child)
            elif fmt == stat.S_IFREG:
                content = self._copy(fd, name, path, st)
                self.entries.append(ScannedEntry(path, "file", mode, st.st_uid, st.st_gid, content=content))
            else:
                kind = _SPECIAL.get(fmt, f"of file type {fmt:o}")
                raise OtaError(self.where(path), f"is {kind}: a tree holds only files, directories and symlinks")

    def _copy(self, parent: int, name: bytes, rel: bytes, st: os.stat_result) -> ContentInfo:
        """Copies one regular file to files/<sha256> (once per content); returns its size and digests."""
        known = self.by_inode.get((st.st_dev, st.st_ino))
        if known is None and self.cache is not None:
            known = self.cache.lookup(rel, st)
            if known is not None:
                scan_cache.link_or_copy(self.cache.stored(known.sha256), self._stored(known.sha256))
        if known is None:
            known = self._read(parent, name, rel)
            self.by_inode[(st.st_dev, st.st_ino)] = known
        if self.cache is not None:
            self.cache.remember(rel, st, known)
        return known

    def _stored(self, sha256: str) -> bytes:
        return os.path.join(self.files_dir, sha256.encode())

    def _read(self, parent: int, name: bytes, rel: bytes) -> ContentInfo:
        """Copies and hashes one file (into the cache's store, then linked, when there is one)."""
        store = self.files_dir if self.cache is None else self.cache.store
        staging = os.path.join(store, b".incoming")
        hasher = hashing.ContentHasher()
        try:
            src = os.open(name, _OPEN_FILE, dir_fd=parent)
        except OSError as err:
            raise OtaError(self.where(rel), _problem(err)) from None
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                raise OtaError(self.where(rel), "was replaced by a non-file during the scan")
            with open(staging, "wb") as dst:
                while chunk := os.read(src, _CHUNK):
                    hasher.update(chunk)
                    dst.write(chunk)
        except OSError as err:
            raise OtaError(self.where(rel), _problem(err)) from None
        finally:
            os.close(src)
        content = hasher.info()
        stored = os.path.join(store, content.sha256.encode())
        if os.path.exists(stored):  # the same bytes under another path: keep the one copy
            os.unlink(staging)
        else:
            os.chmod(staging, 0o644)
            os.replace(staging, stored)
        if self.cache is not None:
            scan_cache.link_or_copy(self.cache.stored(content.sha256), self._stored(content.sha256))
        return content


def scan(root: bytes, out: bytes, cache_dir: bytes | None = None) -> list[ScannedEntry]:
    """Scans `root`, copying contents into `out`/files (through `cache_dir` when given, whose
    index is rewritten after a complete scan only); on failure `out`/files is removed (the store
    keeps what it has until the next complete scan prunes it)."""
    cache = None if cache_dir is None else scan_cache.ScanCache(cache_dir)
    scanner = _Scanner(root, out, cache)
    try:
        entries = scanner.scan()
    except BaseException:
        shutil.rmtree(scanner.files_dir, ignore_errors=True)
        raise
    if cache is not None:
        cache.save()
    return entries


def starlark_string(raw: bytes) -> str:
    """A Starlark string literal whose characters are exactly `raw`: `paths.escape` is one."""
    return f'"{display(raw)}"'


def _entry_fields(entry: ScannedEntry) -> list[str]:
    fields = [
        starlark_string(entry.kind.encode()),
        f'"{entry.mode:04o}"',
        f'"{entry.uid}"',
        f'"{entry.gid}"',
    ]
    if entry.content is not None:  # the order imported_tree.bzl reads: sha256, size, sha1
        fields += [f'"{entry.content.sha256}"', f'"{entry.content.size}"', f'"{entry.content.sha1}"']
    if entry.target is not None:
        fields.append(starlark_string(entry.target))
    return fields


def build_file(root: bytes, entries: list[ScannedEntry], rules_ota_repo: str) -> str:
    """The BUILD.bazel text declaring `:tree` (pure ASCII)."""
    digests = sorted({e.content.sha256 for e in entries if e.content is not None})
    lines = [
        f"# Generated by ota_tree_repository from {starlark_string(root)}; do not edit.",
        "# Refresh after the directory changes: docs/rules.md, ota_tree_repository.",
        f'load({starlark_string(rules_ota_repo.encode() + b"//rules:repositories.bzl")}, "ota_imported_tree")',
        "",
        'package(default_visibility = ["//visibility:public"])',
        "",
        "ota_imported_tree(",
        '    name = "tree",',
        "    srcs = [",
        *(f'        "{FILES_DIR}/{d}",' for d in digests),
        "    ],",
        "    entries = {",
        *(f"        {starlark_string(e.path)}: [{', '.join(_entry_fields(e))}]," for e in entries),
        "    },",
        f'    manifest = "{MANIFEST_FILE}",',
        ")",
        "",
    ]
    return "\n".join(lines)


def manifest_file(entries: list[ScannedEntry]) -> bytes:
    """The system manifest (docs/contracts.md#2-system-manifest) of an ota_system_image whose only
    input is the tree, in the bytes the OtaSystemManifest tool writes (py/ota/actions/tree.py,
    py/ota/format/jsonio.py): written once here, so analysing such an image neither walks nor
    encodes the entries again."""
    return jsonio.dumps(
        manifest_doc(
            TreeEntry(
                paths.from_bytes(e.path),
                e.kind,
                e.mode,
                e.uid,
                e.gid,
                content=e.content,
                target=None if e.target is None else paths.from_bytes(e.target),
            )
            for e in entries
        )
    )


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print(f"usage: {argv[0]} ROOT OUT RULES_OTA_REPO [CACHE]", file=sys.stderr)
        return 2
    root, out = os.fsencode(argv[1]), os.fsencode(argv[2])
    try:
        entries = scan(root, out, os.fsencode(argv[4]) if len(argv) == 5 else None)
    except OtaError as err:
        print(f"ota_tree_repository: error: {err}", file=sys.stderr)
        return 1
    with open(os.path.join(out, MANIFEST_FILE.encode()), "wb") as manifest:
        manifest.write(manifest_file(entries))
    with open(os.path.join(out, BUILD_FILE.encode()), "w", encoding="ascii") as build:
        build.write(build_file(root, entries, argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
