"""Deterministic newc ("070701") cpio archives: the format of Android and Linux ramdisks.

A ramdisk is diffed inside the boot image, so two builds of the same tree must give the same
bytes: entries are sorted by path, every mtime is the same fixed value, owners and modes are what
the caller declares (never the build host's umask or uid), and inode numbers are handed out in
order. The reader is bounded (every declared size is checked against the bytes present before it
is used) so tests, the normalizer and the fuzzers can feed it anything.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ota.errors import OtaError
from ota.format.paths import escape, from_bytes, to_bytes

MAGIC = b"070701"
MAGIC_CRC = b"070702"  # same layout with a data checksum; read, never written
TRAILER_NAME = "TRAILER!!!"
HEADER_SIZE = 110
FIRST_INODE = 300000  # where Android's mkbootfs starts counting; any fixed start would do
MAX_NAME = 4096  # PATH_MAX, including the NUL
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_FIELDS = (
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
)


class Kind(enum.Enum):
    """Entry types a ramdisk holds, with their st_mode type bits."""

    FILE = stat.S_IFREG
    DIR = stat.S_IFDIR
    SYMLINK = stat.S_IFLNK
    CHARDEV = stat.S_IFCHR
    BLOCKDEV = stat.S_IFBLK
    FIFO = stat.S_IFIFO


@dataclass(frozen=True)
class Entry:
    """One archive member.

    path: relative, "/"-separated, no "." or ".." parts (the archive root is implicit); held as
        the `str` of its bytes (py/ota/format/paths.py), so any byte but NUL and '/' in a name,
        UTF-8 or not, goes into and out of an archive unchanged.
    data: a file's content, or a symlink's target; empty for every other kind.
    mode: permission bits only (0o7777); the type bits come from `kind`.
    rdev: (major, minor) of a device node.
    """

    path: str
    kind: Kind
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        parts = self.path.split("/")
        shown = escape(self.path)
        if not self.path or any(p in ("", ".", "..") for p in parts) or "\0" in self.path:
            raise OtaError(shown or "<empty>", "cpio path: must be relative, without '.', '..' or empty parts")
        if len(to_bytes(self.path)) + 1 > MAX_NAME:
            raise OtaError(shown[:64], f"cpio path: longer than {MAX_NAME - 1} bytes")
        if self.mode & ~0o7777:
            raise OtaError(shown, f"cpio mode: 0o{self.mode:o} has bits beyond 0o7777")
        for name, value in (
            ("uid", self.uid),
            ("gid", self.gid),
            ("rdev major", self.rdev[0]),
            ("rdev minor", self.rdev[1]),
        ):
            if not 0 <= value <= 0xFFFFFFFF:
                raise OtaError(shown, f"cpio {name}: {value} does not fit 32 bits")
        if self.data and self.kind not in (Kind.FILE, Kind.SYMLINK):
            raise OtaError(shown, f"cpio data: a {self.kind.name.lower()} entry carries no data")
        if self.kind is Kind.SYMLINK and not self.data:
            raise OtaError(shown, "cpio symlink: empty target")
        if self.rdev != (0, 0) and self.kind not in (Kind.CHARDEV, Kind.BLOCKDEV):
            raise OtaError(shown, "cpio rdev: only device nodes have a device number")


def _field(value: int) -> bytes:
    return b"%08X" % value


def _pad4(size: int) -> bytes:
    return b"\0" * (-size & 3)


def _record(
    ino: int, mode: int, uid: int, gid: int, nlink: int, mtime: int, name: str, data: bytes, rdev: tuple[int, int]
) -> bytes:
    encoded = to_bytes(name) + b"\0"
    values = (ino, mode, uid, gid, nlink, mtime, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    head = MAGIC + b"".join(_field(v) for v in values) + encoded
    return head + _pad4(len(head)) + data + _pad4(len(data))


def check_tree(entries: Iterable[Entry]) -> list[Entry]:
    """Sorts entries by path and checks the archive they make is a tree a kernel can unpack.

    The kernel's initramfs unpacker does not create missing parents, so every parent must be a
    directory entry of the archive; duplicates would make the result depend on input order.
    """
    ordered = sorted(entries, key=lambda e: to_bytes(e.path))
    kinds: dict[str, Kind] = {}
    for entry in ordered:
        if entry.path in kinds:
            raise OtaError(escape(entry.path), "cpio path: listed twice")
        parent = entry.path.rpartition("/")[0]
        if parent and kinds.get(parent) is not Kind.DIR:
            problem = "is not a directory" if parent in kinds else "is not in the archive"
            raise OtaError(escape(entry.path), f'cpio parent directory "{escape(parent)}" {problem}')
        kinds[entry.path] = entry.kind
    return ordered


def write(entries: Iterable[Entry], *, mtime: int = 0) -> bytes:
    """The newc archive of `entries`: sorted, fixed mtime, sequential inodes, with trailer."""
    out = bytearray()
    for ino, entry in enumerate(check_tree(entries), FIRST_INODE):
        nlink = 2 if entry.kind is Kind.DIR else 1
        out += _record(
            ino, entry.kind.value | entry.mode, entry.uid, entry.gid, nlink, mtime, entry.path, entry.data, entry.rdev
        )
    out += _record(0, 0, 0, 0, 1, 0, TRAILER_NAME, b"", (0, 0))
    return bytes(out)


def entries_from_tree(
    root: Path,
    *,
    uid: int = 0,
    gid: int = 0,
    dir_mode: int = 0o755,
    file_mode: int = 0o644,
    exec_mode: int = 0o755,
) -> list[Entry]:
    """Entries for every file, directory and symlink under `root` (not `root` itself).

    Modes are not copied from the disk (they depend on the checkout's umask): directories get
    `dir_mode`, files `exec_mode` if their owner-execute bit is set and `file_mode` otherwise.
    Device nodes and FIFOs cannot come from a source tree; declare them as `Entry` values.
    """
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries.append(Entry(rel, Kind.SYMLINK, 0o777, uid, gid, os.fsencode(os.readlink(full))))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(Entry(rel, Kind.DIR, dir_mode, uid, gid))
            elif stat.S_ISREG(info.st_mode):
                mode = exec_mode if info.st_mode & stat.S_IXUSR else file_mode
                entries.append(Entry(rel, Kind.FILE, mode, uid, gid, full.read_bytes()))
            else:
                raise OtaError(escape(str(full)), "cpio input: not a file, directory or symlink")
    return entries


def _parse_header(data: bytes, pos: int, where: str) -> dict[str, int]:
    if pos + HEADER_SIZE > len(data):
        raise OtaError(where, f"cpio header at offset {pos}: truncated")
    magic = data[pos : pos + 6]
    if magic not in (MAGIC, MAGIC_CRC):
        raise OtaError(where, f"cpio magic at offset {pos}: {magic!r} is not newc (070701)")
    values = {}
    for index, name in enumerate(_FIELDS):
        raw = data[pos + 6 + 8 * index : pos + 14 + 8 * index]
        if raw.translate(None, _HEX_DIGITS):
            raise OtaError(where, f"cpio {name} at offset {pos}: {raw!r} is not 8 hex digits")
        values[name] = int(raw, 16)
    return values


def read(data: bytes, where: str, *, max_entries: int = 1 << 20) -> list[Entry]:
    """Parses a newc archive up to its trailer. Names may start with "./" (GNU cpio's habit);
    that prefix and the "." entry are dropped. Hard links (nlink > 1 on a file) are refused:
    newc stores their data once, on the last link, which this model cannot express."""
    entries: list[Entry] = []
    pos = 0
    while True:
        if len(entries) >= max_entries:
            raise OtaError(where, f"cpio: more than {max_entries} entries")
        fields = _parse_header(data, pos, where)
        namesize, filesize = fields["namesize"], fields["filesize"]
        name_start = pos + HEADER_SIZE
        if not 2 <= namesize <= MAX_NAME or name_start + namesize > len(data):
            raise OtaError(where, f"cpio namesize at offset {pos}: {namesize} does not fit the archive")
        raw_name = data[name_start : name_start + namesize]
        if raw_name[-1:] != b"\0" or b"\0" in raw_name[:-1]:
            raise OtaError(where, f"cpio name at offset {pos}: not one NUL-terminated string")
        data_start = name_start + namesize + (-(HEADER_SIZE + namesize) & 3)
        if data_start + filesize > len(data):
            raise OtaError(where, f"cpio filesize at offset {pos}: {filesize} bytes run past the end")
        name = from_bytes(raw_name[:-1])
        if name == TRAILER_NAME:
            return entries
        body = data[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize & 3)
        name = name.removeprefix("./")
        if name in (".", ""):
            continue
        entries.append(_entry_from_fields(name, fields, body, where))


def _entry_from_fields(name: str, fields: dict[str, int], body: bytes, where: str) -> Entry:
    mode = fields["mode"]
    try:
        kind = Kind(stat.S_IFMT(mode))
    except ValueError:
        raise OtaError(where, f'cpio mode of "{escape(name)}": unsupported file type 0o{stat.S_IFMT(mode):o}') from None
    if kind is Kind.FILE and fields["nlink"] > 1:
        raise OtaError(where, f'cpio nlink of "{escape(name)}": hard links are not supported')
    rdev = (fields["rdevmajor"], fields["rdevminor"]) if kind in (Kind.CHARDEV, Kind.BLOCKDEV) else (0, 0)
    try:
        return Entry(name, kind, stat.S_IMODE(mode), fields["uid"], fields["gid"], body, rdev)
    except OtaError as err:
        raise OtaError(where, f"{err.where}: {err.problem}") from None
