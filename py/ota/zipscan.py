"""Where each entry's data lives inside a zip file: what imgdiff's zip mode (-z) needs.

Only the central directory and the local headers' lengths are read (single-disk archives, zip64
included); bytes after the end-of-central-directory record and its comment are ignored, as in
AOSP since 2017. Every offset is checked against the file before it is followed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Directory:
    count: int
    size: int
    offset: int


def read_entries(data: bytes, where: str) -> list[ZipEntry]:
    """All entries of the zip in `data`, in central-directory order."""
    directory = _find_directory(data, where)
    entries = []
    pos = directory.offset
    for index in range(directory.count):
        entry, pos = _read_central_entry(data, pos, index, directory, where)
        entries.append(entry)
    return entries


def _find_directory(data: bytes, where: str) -> _Directory:
    """Searches backwards for an EOCD record whose directory fits before it."""
    pos = data.rfind(_EOCD_SIG, 0, max(len(data) - _EOCD.size + 4, 0))
    while pos >= 0:
        directory = _directory_at(data, pos, where)
        if directory is not None:
            return directory
        pos = data.rfind(_EOCD_SIG, 0, pos + 3)
    raise OtaError(where, "not a zip file (no end of central directory record)")


def _directory_at(data: bytes, pos: int, where: str) -> _Directory | None:
    if pos + _EOCD.size > len(data):
        return None
    _, disk, cd_disk, _, count, size, offset, comment_len = _EOCD.unpack_from(data, pos)
    if pos + _EOCD.size + comment_len > len(data):
        return None
    if _MAX16 in (disk, cd_disk, count) or _MAX32 in (size, offset):
        return _zip64_directory(data, pos, where)
    if disk != 0 or cd_disk != 0:
        raise OtaError(where, f"zip spans disks (disk {disk}, central directory disk {cd_disk}); only single-disk zips are supported")
    if offset + size > pos:
        return None
    return _Directory(count, size, offset)


def _zip64_directory(data: bytes, eocd: int, where: str) -> _Directory | None:
    locator = eocd - _LOCATOR.size
    if locator < 0 or data[locator:locator + 4] != _LOCATOR_SIG:
        return None
    _, disk, record, _ = _LOCATOR.unpack_from(data, locator)
    if record + _EOCD64.size > locator or data[record:record + 4] != _EOCD64_SIG:
        raise OtaError(where, f"zip64 end of central directory offset {record} does not point at a zip64 record")
    _, _, _, _, disk64, cd_disk, _, count, size, offset = _EOCD64.unpack_from(data, record)
    if disk != 0 or disk64 != 0 or cd_disk != 0:
        raise OtaError(where, "zip spans disks; only single-disk zips are supported")
    if offset + size > record:
        raise OtaError(where, f"zip64 central directory ({offset}+{size}) overlaps its end record at {record}")
    return _Directory(count, size, offset)


def _read_central_entry(data: bytes, pos: int, index: int, directory: _Directory, where: str) -> tuple[ZipEntry, int]:
    if pos + _CENTRAL.size > directory.offset + directory.size or data[pos:pos + 4] != _CENTRAL_SIG:
        raise OtaError(where, f"zip central directory entry {index} at offset {pos} is missing or truncated")
    fields = _CENTRAL.unpack_from(data, pos)
    flags, method, csize, usize, name_len, extra_len, comment_len, local = (
        fields[3], fields[4], fields[8], fields[9], fields[10], fields[11], fields[12], fields[16])
    name_start = pos + _CENTRAL.size
    end = name_start + name_len + extra_len + comment_len
    if end > directory.offset + directory.size:
        raise OtaError(where, f"zip central directory entry {index} runs past the directory")
    raw_name = data[name_start:name_start + name_len]
    name = raw_name.decode("utf-8" if flags & _UTF8_FLAG else "cp437", errors="surrogateescape")
    usize, csize, local = _apply_zip64_extra(data[name_start + name_len:name_start + name_len + extra_len],
                                             usize, csize, local, f"{where}: {name}")
    if local + _LOCAL.size > len(data) or data[local:local + 4] != _LOCAL_SIG:
        raise OtaError(where, f"zip entry {name}: local header offset {local} does not point at a local header")
    local_fields = _LOCAL.unpack_from(data, local)
    data_start = local + _LOCAL.size + local_fields[9] + local_fields[10]
    if data_start + csize > len(data):
        raise OtaError(where, f"zip entry {name}: compressed size {csize} at offset {data_start} runs past the end of the file")
    return ZipEntry(name, method, data_start, csize, usize), end


def _apply_zip64_extra(extra: bytes, usize: int, csize: int, local: int, where: str) -> tuple[int, int, int]:
    """Replaces saturated 32-bit fields by the zip64 extra field's 64-bit values, in spec order."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + size]
        if tag == _ZIP64_EXTRA_ID:
            values = [int.from_bytes(body[k:k + 8], "little") for k in range(0, len(body) - 7, 8)]
            wanted = [usize == _MAX32, csize == _MAX32, local == _MAX32]
            if len(values) < sum(wanted):
                raise OtaError(where, "zip64 extra field is shorter than the saturated sizes need")
            it = iter(values)
            usize = next(it) if wanted[0] else usize
            csize = next(it) if wanted[1] else csize
            local = next(it) if wanted[2] else local
        pos += 4 + size
    return usize, csize, local
