"""The one zip reader for packages and imgdiff: bounded in memory and time whatever the file holds.

Everything that reads a zip it did not write goes through here: signature verification and the
package reader on the device (docs/security.md, "Reading an untrusted zip"), and imgdiff's zip
mode (-z), which needs where each entry's data lives. Python's zipfile parses the whole central
directory into objects before a caller can look at it, so a few megabytes of directory claiming
millions of entries costs gigabytes and minutes; this reader instead

  * reads the end-of-central-directory record (and its zip64 form) from the file's tail first and
    refuses by the declared entry count and directory size before reading the directory;
  * walks the directory in bounded pieces, one entry at a time (`members`), so a caller that needs
    two entries keeps two;
  * reads an entry's data in bounded pieces, inflating with an output cap, and refuses more bytes
    than the directory declares, a CRC mismatch, or data that overlaps the directory (`stream`).

Single-disk archives only, zip64 included; bytes after the end record and its comment are
ignored, as in AOSP since 2017. Every refusal is one OtaError line with one wording per problem.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from ota.errors import OtaError

METHOD_STORED = 0
METHOD_DEFLATED = 8

_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD_SIG = b"PK\x05\x06"
_LOCATOR = struct.Struct("<4sIQI")
_LOCATOR_SIG = b"PK\x06\x07"
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_EOCD64_SIG = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_CENTRAL_SIG = b"PK\x01\x02"
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIG = b"PK\x03\x04"
_ZIP64_EXTRA_ID = 0x0001
_MAX16, _MAX32 = 0xFFFF, 0xFFFFFFFF
_UTF8_FLAG = 0x0800
_ENCRYPTED_FLAG = 0x0001
# The end record sits in the last 22 bytes plus a comment of at most 65535, after a zip64 locator.
_TAIL = _EOCD.size + _MAX16 + _LOCATOR.size
# One central entry is at most 46 fixed bytes plus three 16-bit-length fields.
_CENTRAL_MAX = _CENTRAL.size + 3 * _MAX16
_PIECE = 1 << 20


@dataclass(frozen=True)
class DirectoryLimits:
    """What a zip may declare before its directory is read; None: unbounded (imgdiff's own inputs)."""

    max_entries: int | None = None
    max_directory_bytes: int | None = None


@dataclass(frozen=True)
class Directory:
    """The central directory as the end record declares it."""

    count: int
    size: int
    offset: int


class Member(NamedTuple):
    """One central-directory entry; `header_offset` points at its local header.

    A NamedTuple, not a dataclass: a directory walk builds up to 100,000 of them before the
    signature is checked, and this is the cheapest immutable record to build.
    """

    name: str
    flags: int
    method: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    header_offset: int


@dataclass(frozen=True)
class ZipEntry:
    """One member: its name, compression method and the span of its (compressed) data."""

    name: str
    method: int
    data_start: int
    compressed_size: int
    uncompressed_size: int

    @property
    def data_end(self) -> int:
        return self.data_start + self.compressed_size


def file_size(file: BinaryIO) -> int:
    return file.seek(0, io.SEEK_END)


def find_directory(file: BinaryIO, where: str, limits: DirectoryLimits = DirectoryLimits()) -> Directory:
    """The end record's directory, refused by its declared count and size before any of it is read."""
    size = file_size(file)
    base = max(0, size - _TAIL)
    file.seek(base)
    tail = file.read(size - base)
    directory = _search_tail(file, tail, base, where)
    if limits.max_entries is not None and directory.count > limits.max_entries:
        raise OtaError(where, f"zip: {directory.count} entries, more than the limit of {limits.max_entries}")
    if limits.max_directory_bytes is not None and directory.size > limits.max_directory_bytes:
        raise OtaError(
            where,
            f"zip: central directory of {directory.size} bytes, more than the limit of {limits.max_directory_bytes}",
        )
    if directory.count * _CENTRAL.size > directory.size:
        raise OtaError(
            where, f"zip: central directory of {directory.size} bytes cannot hold its {directory.count} entries"
        )
    return directory


def _search_tail(file: BinaryIO, tail: bytes, base: int, where: str) -> Directory:
    """Searches backwards for an end record whose comment and directory fit before the file's end."""
    pos = tail.rfind(_EOCD_SIG, 0, max(len(tail) - _EOCD.size + 4, 0))
    while pos >= 0:
        directory = _directory_at(file, tail, pos, base, where)
        if directory is not None:
            return directory
        pos = tail.rfind(_EOCD_SIG, 0, pos + 3)
    raise OtaError(where, "not a zip file (no end of central directory record)")


def _directory_at(file: BinaryIO, tail: bytes, pos: int, base: int, where: str) -> Directory | None:
    if pos + _EOCD.size > len(tail):
        return None
    _, disk, cd_disk, _, count, size, offset, comment_len = _EOCD.unpack_from(tail, pos)
    if pos + _EOCD.size + comment_len > len(tail):
        return None
    if _MAX16 in (disk, cd_disk, count) or _MAX32 in (size, offset):
        return _zip64_directory(file, tail, pos, base, where)
    if disk != 0 or cd_disk != 0:
        raise OtaError(where, "zip spans disks; only single-disk zips are supported")
    if offset + size > base + pos:
        return None
    return Directory(count, size, offset)


def _zip64_directory(file: BinaryIO, tail: bytes, eocd: int, base: int, where: str) -> Directory | None:
    locator = eocd - _LOCATOR.size
    if locator < 0 or tail[locator : locator + 4] != _LOCATOR_SIG:
        return None
    _, disk, record, _ = _LOCATOR.unpack_from(tail, locator)
    file.seek(record)
    raw = file.read(_EOCD64.size)
    if record + _EOCD64.size > base + locator or len(raw) != _EOCD64.size or raw[:4] != _EOCD64_SIG:
        raise OtaError(where, f"zip64 end of central directory offset {record} does not point at a zip64 record")
    _, _, _, _, disk64, cd_disk, _, count, size, offset = _EOCD64.unpack(raw)
    if disk != 0 or disk64 != 0 or cd_disk != 0:
        raise OtaError(where, "zip spans disks; only single-disk zips are supported")
    if offset + size > record:
        raise OtaError(where, f"zip64 central directory ({offset}+{size}) overlaps its end record at {record}")
    return Directory(count, size, offset)


def members(file: BinaryIO, directory: Directory, where: str) -> Iterator[Member]:
    """The directory's entries in order, read in bounded pieces (memory: one piece, whatever the count)."""
    end = directory.offset + directory.size
    buffer, buffer_at, pos = b"", directory.offset, directory.offset
    for index in range(directory.count):
        if pos + _CENTRAL_MAX > buffer_at + len(buffer) and buffer_at + len(buffer) < end:
            file.seek(pos)
            buffer, buffer_at = file.read(min(max(_PIECE, _CENTRAL_MAX), end - pos)), pos
        member, pos = _parse_central(buffer, pos - buffer_at, buffer_at, end, index, where)
        yield member
    if pos != end:
        raise OtaError(where, f"zip: central directory holds {end - pos} bytes after its {directory.count} entries")


def _parse_central(buffer: bytes, at: int, buffer_at: int, end: int, index: int, where: str) -> tuple[Member, int]:
    pos = buffer_at + at
    if pos + _CENTRAL.size > end or buffer[at : at + 4] != _CENTRAL_SIG:
        raise OtaError(where, f"zip central directory entry {index} at offset {pos} is missing or truncated")
    fields = _CENTRAL.unpack_from(buffer, at)
    flags, method, crc, csize, usize, name_len, extra_len, comment_len, local = (
        fields[3],
        fields[4],
        fields[7],
        fields[8],
        fields[9],
        fields[10],
        fields[11],
        fields[12],
        fields[16],
    )
    name_start = at + _CENTRAL.size
    after = pos + _CENTRAL.size + name_len + extra_len + comment_len
    if after > end:
        raise OtaError(where, f"zip central directory entry {index} runs past the directory")
    name = _decode_name(buffer[name_start : name_start + name_len], flags)
    if _MAX32 in (usize, csize, local):
        usize, csize, local = _apply_zip64_extra(
            buffer[name_start + name_len : name_start + name_len + extra_len], usize, csize, local, f"{where}: {name}"
        )
    return Member(name, flags, method, crc, csize, usize, local), after


def _decode_name(raw: bytes, flags: int) -> str:
    """UTF-8 if the entry says so, else CP437 (ASCII names, nearly all, take the fast path)."""
    if raw.isascii():
        return raw.decode("ascii")
    return raw.decode("utf-8" if flags & _UTF8_FLAG else "cp437", errors="surrogateescape")


def _apply_zip64_extra(extra: bytes, usize: int, csize: int, local: int, where: str) -> tuple[int, int, int]:
    """Replaces saturated 32-bit fields by the zip64 extra field's 64-bit values, in spec order."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        if tag == _ZIP64_EXTRA_ID:
            values = [int.from_bytes(body[k : k + 8], "little") for k in range(0, len(body) - 7, 8)]
            wanted = [usize == _MAX32, csize == _MAX32, local == _MAX32]
            if len(values) < sum(wanted):
                raise OtaError(where, "zip64 extra field is shorter than the saturated sizes need")
            it = iter(values)
            usize = next(it) if wanted[0] else usize
            csize = next(it) if wanted[1] else csize
            local = next(it) if wanted[2] else local
        pos += 4 + size
    return usize, csize, local


def find_members(file: BinaryIO, directory: Directory, wanted: tuple[str, ...], where: str) -> dict[str, Member]:
    """The members named in `wanted`, after one pass over the whole directory.

    Any name that occurs twice is refused, whether wanted or not: a reader that took the first
    copy and one that took the last would otherwise see different archives. Memory: the names.
    """
    seen: set[str] = set()
    found: dict[str, Member] = {}
    for member in members(file, directory, where):
        if member.name in seen:
            raise OtaError(where, f"zip entry {member.name!r}: appears twice")
        seen.add(member.name)
        if member.name in wanted:
            check_member(member, where)
            found[member.name] = member
    return found


def check_member(member: Member, where: str) -> None:
    """A member a package may hold: not encrypted, stored or deflated."""
    if member.flags & _ENCRYPTED_FLAG:
        raise OtaError(where, f"zip entry {member.name!r}: encrypted")
    if member.method not in (METHOD_STORED, METHOD_DEFLATED):
        raise OtaError(
            where, f"zip entry {member.name!r}: compression method {member.method} is not stored (0) or deflate (8)"
        )


def data_start(file: BinaryIO, member: Member, directory: Directory, where: str) -> int:
    """Where `member`'s data begins; refused unless its local header and data lie before the directory."""
    file.seek(member.header_offset)
    raw = file.read(_LOCAL.size)
    if member.header_offset + _LOCAL.size > directory.offset or len(raw) != _LOCAL.size or raw[:4] != _LOCAL_SIG:
        raise OtaError(
            where,
            f"zip entry {member.name}: local header offset {member.header_offset} does not point at a local header",
        )
    fields = _LOCAL.unpack(raw)
    start = member.header_offset + _LOCAL.size + fields[9] + fields[10]
    if start + member.compressed_size > directory.offset:
        raise OtaError(
            where,
            f"zip entry {member.name}: compressed size {member.compressed_size} at offset {start} "
            "runs into the central directory",
        )
    return start


def stream(file: BinaryIO, member: Member, directory: Directory, where: str, sink: Callable[[bytes], object]) -> None:
    """Feeds `member`'s uncompressed bytes to `sink` in pieces of at most 1 MiB.

    Refuses more (or fewer) bytes than the directory declares, stored data whose sizes differ,
    a deflate stream that does not end where its compressed size does, and a CRC-32 mismatch.
    On a refusal, what `sink` received is garbage.
    """
    check_member(member, where)
    declared = member.uncompressed_size
    if member.method == METHOD_STORED and member.compressed_size != declared:
        raise OtaError(
            where, f"zip entry {member.name}: stored with {member.compressed_size} bytes, declares {declared}"
        )
    position = data_start(file, member, directory, where)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if member.method == METHOD_DEFLATED else None
    crc, total, left = 0, 0, member.compressed_size

    def emit(piece: bytes) -> None:
        nonlocal crc, total
        total += len(piece)
        if total > declared:
            raise OtaError(where, f"zip entry {member.name}: holds more than its declared {declared} bytes")
        crc = zlib.crc32(piece, crc)
        sink(piece)

    try:
        while left:
            file.seek(position)
            chunk = file.read(min(_PIECE, left))
            if not chunk:
                raise OtaError(where, f"zip entry {member.name}: data ends early (file truncated)")
            position, left = position + len(chunk), left - len(chunk)
            if inflater is None:
                emit(chunk)
                continue
            while chunk:
                emit(inflater.decompress(chunk, min(_PIECE, declared - total + 1)))
                chunk = inflater.unconsumed_tail
        if inflater is not None:
            while not inflater.eof and (piece := inflater.decompress(b"", min(_PIECE, declared - total + 1))):
                emit(piece)
            if not inflater.eof or inflater.unused_data:
                raise OtaError(
                    where,
                    f"zip entry {member.name}: deflate stream does not end with its "
                    f"{member.compressed_size} compressed bytes",
                )
    except zlib.error as err:
        raise OtaError(where, f"zip entry {member.name}: unreadable ({' '.join(str(err).split())})") from None
    if total != declared:
        raise OtaError(where, f"zip entry {member.name}: holds {total} bytes, not its declared {declared}")
    if crc != member.crc32:
        raise OtaError(
            where, f"zip entry {member.name}: CRC-32 {crc:08x} does not match the directory's {member.crc32:08x}"
        )


def read_member(file: BinaryIO, member: Member, directory: Directory, where: str, limit: int) -> bytes:
    """`member`'s bytes, refused by its declared size before reading if that is over `limit`."""
    if member.uncompressed_size > limit:
        raise OtaError(where, f"{member.name}: {member.uncompressed_size} bytes, more than the limit of {limit}")
    out = bytearray()
    stream(file, member, directory, where, out.extend)
    return bytes(out)


def read_entries(data: bytes, where: str) -> list[ZipEntry]:
    """All entries of the zip in `data`, in central-directory order, with where each one's data lies."""
    file = io.BytesIO(data)
    directory = find_directory(file, where)
    return [
        ZipEntry(m.name, m.method, data_start(file, m, directory, where), m.compressed_size, m.uncompressed_size)
        for m in members(file, directory, where)
    ]
