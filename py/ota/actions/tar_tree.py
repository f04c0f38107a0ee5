"""tar_tree --tar T --shard_dir D ... --out_manifest M.json --out_tree T.json: a system tree
from a tar archive another target built (`pkg_tar`, a genrule; plain, gzip, bzip2 or xz).

The archive's contents are only known when this action runs, so it writes everything the rules
would otherwise know at analysis time: the system manifest (docs/contracts.md#2-system-manifest),
the tree description (docs/contracts.md#1-tree-description) whose files point into the shard
directories, and one directory per shard holding that shard's regular files under digest names
plus their listing (docs/contracts.md#11-tar-trees-and-patch-shards). A file goes to the shard
py/ota/actions/shard_layout.py assigns to its path, so a one-file change alters one shard directory
and ota_package re-runs one shard action.

What the archive says is kept exactly: mode bits (07777), uid and gid, symlink targets, empty
directories, names as bytes (decoded with `surrogateescape`, so any byte but NUL and '/' comes
through). A hard link becomes a regular file with the linked file's contents (the device tree
has no link counts). Parents the archive does not list are directories with mode 0755, owner
0:0. Refused with one line naming the archive and the member: device nodes and fifos, absolute
names and '..', duplicate members, members below a symlink or a file, and archives above the
entry or byte limits (a tar bomb stops before it fills the disk).
"""

from __future__ import annotations

import dataclasses
import lzma
import os
import shutil
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from absl import flags

from ota.actions import shard_layout, toolchain_identity, tree
from ota.errors import OtaError, UsageError
from ota.format import jsonio
from ota.format.hashing import ContentHasher, ContentInfo
from ota.format.paths import check_path, escape, to_bytes
from ota.io import runner

DEFAULT_MAX_ENTRIES = 1_000_000
DEFAULT_MAX_TOTAL_SIZE = 16 << 30
IMPLICIT_DIR_MODE = 0o755
SYMLINK_MODE = 0o777  # what lstat reports for a symlink on Linux, as rules/private/tree.bzl records
NAME_MAX = 255  # bytes per component on Linux file systems
_CHUNK = 1 << 20

_TAR = flags.DEFINE_string("tar", None, "The tar archive (any compression Python's tarfile reads).")
_SHARD_DIRS = flags.DEFINE_multi_string("shard_dir", [], "The shard directories, in shard order (one per shard).")
_OUT_MANIFEST = flags.DEFINE_string("out_manifest", None, "Where to write the system manifest JSON.")
_OUT_TREE = flags.DEFINE_string("out_tree", None, "Where to write the tree description JSON.")
_MAX_ENTRIES = flags.DEFINE_integer(
    "max_entries", DEFAULT_MAX_ENTRIES, "Refuse archives with more members.", lower_bound=1
)
_MAX_TOTAL_SIZE = flags.DEFINE_integer(
    "max_total_size", DEFAULT_MAX_TOTAL_SIZE, "Refuse archives whose files hold more bytes.", lower_bound=0
)


@dataclass(frozen=True)
class Limits:
    """How much one archive may hold: members, and bytes of regular files (hard links count again,
    since each becomes a copy on disk)."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    max_total_size: int = DEFAULT_MAX_TOTAL_SIZE


def shown(name: str) -> str:
    """A member name for an error line, escaped as every tool shows a name (py/ota/format/paths.py)."""
    return f'"{escape(name)}"'


def install_path(name: str, where: str) -> str | None:
    """The install path of a member name; None for the archive's root ("." or "./").

    A leading "./" (what `tar -C dir .` and pkg_tar write) and a trailing "/" (how some writers
    name directories) are dropped; the rest must pass the repository's path rule
    (`paths.check_path`), and no component may be longer than NAME_MAX bytes.
    """
    parts = name.split("/")
    if not name.startswith("/"):
        while parts and parts[0] == ".":
            parts.pop(0)
        while len(parts) > 1 and parts[-1] == "":
            parts.pop()
        if not parts or parts == [""]:
            return None
    path = "/".join(parts)
    try:
        check_path(path, where)
    except OtaError as err:  # said of the member, as every other refusal here
        raise OtaError(where, f"member {shown(name)}: {err.problem.removeprefix(f'path {shown(path)}: ')}") from None
    if any(len(to_bytes(part)) > NAME_MAX for part in parts):
        raise OtaError(where, f"member {shown(name)}: a component is longer than {NAME_MAX} bytes")
    return path


class _Reader:
    """Reads one archive member by member into entries and shard files."""

    def __init__(self, tar_path: str, shard_dirs: Sequence[str], limits: Limits) -> None:
        self.tar_path = tar_path
        self.shard_dirs = list(shard_dirs)
        self.limits = limits
        self.entries: dict[str, tree.TreeEntry] = {}
        self.total = 0

    def fail(self, name: str, problem: str) -> OtaError:
        return OtaError(self.tar_path, f"member {shown(name)}: {problem}")

    def file_of(self, path: str) -> str:
        shard = shard_layout.shard_of(path, len(self.shard_dirs))
        return os.path.join(self.shard_dirs[shard], shard_layout.file_name(path))

    def _reserve(self, name: str, size: int) -> None:
        self.total += size
        if self.total > self.limits.max_total_size:
            raise self.fail(name, f"the archive's files exceed {self.limits.max_total_size} bytes (tar_max_size_mb)")

    def _copy(self, source, path: str, name: str, size: int) -> ContentInfo:
        """Writes `size` bytes of `source` to the path's shard file, hashing them on the way."""
        hasher = ContentHasher()
        with open(self.file_of(path), "xb") as out:
            while chunk := source.read(min(_CHUNK, size - hasher.size)):
                hasher.update(chunk)
                out.write(chunk)
        if hasher.size != size:
            raise self.fail(name, f"the archive ends {size - hasher.size} bytes into the member")
        return hasher.info()

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        path = install_path(name, self.tar_path)
        if path is None:
            if not member.isdir():
                raise self.fail(name, "the archive's root is not a directory")
            return
        if path in self.entries:
            raise self.fail(name, f"a second member for {shown(path)}")
        mode, uid, gid = member.mode & 0o7777, member.uid, member.gid
        if not (0 <= uid <= tree.MAX_ID and 0 <= gid <= tree.MAX_ID):
            raise self.fail(name, f"uid/gid {uid}/{gid} out of range 0..{tree.MAX_ID}")
        if member.isdir():
            entry = tree.TreeEntry(path, tree.DIR, mode, uid, gid)
        elif member.issym():
            if not member.linkname:
                raise self.fail(name, "symlink with an empty target")
            entry = tree.TreeEntry(path, tree.SYMLINK, SYMLINK_MODE, uid, gid, target=member.linkname)
        elif member.islnk():
            entry = self._hardlink(member, path, mode, uid, gid)
        elif member.isreg():
            self._reserve(name, member.size)
            stream = archive.extractfile(member)
            assert stream is not None  # a regular member always has contents
            content = self._copy(stream, path, name, member.size)
            entry = tree.TreeEntry(path, tree.FILE, mode, uid, gid, file=self.file_of(path), content=content)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = "character device" if member.ischr() else "block device" if member.isblk() else "fifo"
            raise self.fail(name, f"a {kind}: only files, directories and symlinks can be installed")
        else:
            raise self.fail(name, f"unsupported member type {member.type!r}")
        self.entries[path] = entry

    def _hardlink(self, member: tarfile.TarInfo, path: str, mode: int, uid: int, gid: int) -> tree.TreeEntry:
        linked = install_path(member.linkname, self.tar_path)
        original = self.entries.get(linked) if linked is not None else None
        if original is None or original.kind != tree.FILE:
            raise self.fail(member.name, f"hard link to {shown(member.linkname)}, which is no earlier regular file")
        self._reserve(member.name, original.content.size)  # type: ignore[union-attr]
        with open(original.file, "rb") as source:  # type: ignore[arg-type]
            content = self._copy(source, path, member.name, original.content.size)  # type: ignore[union-attr]
        return tree.TreeEntry(path, tree.FILE, mode, uid, gid, file=self.file_of(path), content=content)

    def finish(self) -> list[tree.TreeEntry]:
        """Refuses members below a symlink or a file, then adds the parents nobody listed."""
        for path in sorted(self.entries):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                above = self.entries.get(parent)
                if above is None:
                    self.entries[parent] = tree.TreeEntry(parent, tree.DIR, IMPLICIT_DIR_MODE, 0, 0)
                elif above.kind != tree.DIR:
                    kind = "a symlink" if above.kind == tree.SYMLINK else "a regular file"
                    raise self.fail(path, f"below {shown(parent)}, which is {kind}")
        return tree.check_entries(self.entries.values(), self.tar_path)


def read_tar(tar_path: str, shard_dirs: Sequence[str], limits: Limits = Limits()) -> list[tree.TreeEntry]:
    """Entries of the archive (files with both `file` and `content`); writes the shard files."""
    reader = _Reader(tar_path, shard_dirs, limits)
    try:
        with tarfile.open(tar_path, "r:*", encoding="utf-8", errors="surrogateescape") as archive:
            count = 0
            while (member := archive.next()) is not None:
                count += 1
                if count > limits.max_entries:
                    raise reader.fail(member.name, f"more than {limits.max_entries} members (tar_max_entries)")
                reader.add(archive, member)
    except FileNotFoundError:
        raise OtaError(tar_path, "cannot read: no such file") from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        raise OtaError(tar_path, f"not a readable tar archive: {err}") from None
    return reader.finish()


def shard_index(entries: Sequence[tree.TreeEntry], shard_dirs: Sequence[str]) -> list[list[dict]]:
    """Per shard, the listing of its files (sorted by path): path, file name, size and hashes."""
    listings: list[list[dict]] = [[] for _ in shard_dirs]
    for entry in entries:
        if entry.kind == tree.FILE:
            listing = listings[shard_layout.shard_of(entry.path, len(shard_dirs))]
            listing.append({"file": os.path.basename(entry.file), "path": entry.path, **entry.content.to_json()})  # type: ignore[union-attr]
    return listings


def write_outputs(tar_path: str, shard_dirs: Sequence[str], out_manifest: str, out_tree: str, limits: Limits) -> None:
    """Reads the archive and writes every output, or on any failure leaves no output behind."""
    for directory in shard_dirs:
        os.makedirs(directory, exist_ok=True)
    try:
        entries = read_tar(tar_path, shard_dirs, limits)
        for directory, listing in zip(shard_dirs, shard_index(entries, shard_dirs), strict=True):
            jsonio.write(os.path.join(directory, shard_layout.TREE_INDEX), {"entries": listing})
        jsonio.write(out_manifest, tree.manifest_doc(dataclasses.replace(e, file=None) for e in entries))
        jsonio.write(out_tree, tree.manifest_doc(dataclasses.replace(e, content=None) for e in entries))
    except BaseException:
        for directory in shard_dirs:
            shutil.rmtree(directory, ignore_errors=True)
            os.makedirs(directory, exist_ok=True)
        for out in (out_manifest, out_tree):
            if os.path.exists(out):
                os.unlink(out)
        raise


def main(argv: Sequence[str]) -> None:
    toolchain_identity.verify_flag()
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not (_TAR.value and _SHARD_DIRS.value and _OUT_MANIFEST.value and _OUT_TREE.value):
        raise UsageError("--tar, --shard_dir, --out_manifest and --out_tree are required")
    limits = Limits(_MAX_ENTRIES.value, _MAX_TOTAL_SIZE.value)
    write_outputs(_TAR.value, _SHARD_DIRS.value, _OUT_MANIFEST.value, _OUT_TREE.value, limits)


def run() -> None:
    runner.run_absl("tar_tree", main)


if __name__ == "__main__":
    run()
