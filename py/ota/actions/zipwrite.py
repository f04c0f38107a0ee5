"""The deterministic zip writer behind both the OTA package and the release archive.

Same inputs, same bytes, on any host, at any time, under any umask: entries sorted by name,
every timestamp 1980-01-01 00:00:00, Unix "made by" with mode 0644 for every entry, no extra
fields beyond what zip64 needs, deflate at level 9 through the one zlib in the process. File
entries are streamed, so a multi-GiB partition image never sits in memory.

Each entry is stored, deflated, or deflated only if that makes it smaller (`Compression`). The
last is decided by deflating the entry once to count its bytes: deflate is deterministic, so the
same input always gets the same choice (docs/package-format.md says which entry gets which).
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ota.errors import OtaError
from ota.io import fileio

DATE_TIME = (1980, 1, 1, 0, 0, 0)
CREATE_SYSTEM_UNIX = 3
EXTERNAL_ATTR = 0o100644 << 16  # a regular file, rw-r--r--
DEFLATE_LEVEL = 9


class Compression(enum.Enum):
    """How an entry is written: STORED for data that is compressed already, DEFLATED for data
    known to shrink, SMALLEST for anything else (deflated only if that saves bytes)."""

    STORED = "stored"
    DEFLATED = "deflated"
    SMALLEST = "smallest"


@dataclass(frozen=True)
class ZipSource:
    """One entry to write: its bytes (`data`) or a file to stream (`file`), and its compression."""

    name: str
    compression: Compression
    data: bytes | None = None
    file: str | None = None


@dataclass(frozen=True)
class Written:
    """What an entry turned out to hold: the reader checks exactly these against the manifest."""

    name: str
    size: int
    sha256: str


def _zip_info(name: str, deflate: bool, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=DATE_TIME)
    info.create_system = CREATE_SYSTEM_UNIX
    info.external_attr = EXTERNAL_ATTR
    info.file_size = size  # decides zip64 up front, so no data descriptors are needed
    if deflate:
        info.compress_type = zipfile.ZIP_DEFLATED
        # Python >= 3.13 names it compress_level; 3.11/3.12 only have the slot _compresslevel.
        setattr(info, "compress_level" if hasattr(info, "compress_level") else "_compresslevel", DEFLATE_LEVEL)
    else:
        info.compress_type = zipfile.ZIP_STORED
    return info


def _stream_size(source: ZipSource) -> int:
    if source.data is not None:
        return len(source.data)
    try:
        with open(source.file, "rb") as stream:  # type: ignore[arg-type]
            return stream.seek(0, 2)
    except OSError as err:
        raise OtaError(str(source.file), f"cannot read: {err.strerror or err}") from None


def file_chunks(source: ZipSource) -> Iterator[bytes]:
    """The entry's bytes in pieces (fileio.read_chunks): a file is streamed, never held whole."""
    if source.data is not None:
        yield source.data
        return
    yield from fileio.read_chunks(source.file)  # type: ignore[arg-type]


def deflated_size(chunks: Iterator[bytes]) -> int:
    """How many bytes the raw deflate stream zipfile writes for these bytes would take."""
    packer = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return sum(len(packer.compress(chunk)) for chunk in chunks) + len(packer.flush())


def _deflate(source: ZipSource, size: int) -> bool:
    if source.compression is Compression.SMALLEST:
        return deflated_size(file_chunks(source)) < size
    return source.compression is Compression.DEFLATED


def write_zip(out_path: str, sources: list[ZipSource]) -> list[Written]:
    """Writes `sources` sorted by name; returns each entry's size and SHA-256, in that order."""
    ordered = sorted(sources, key=lambda s: s.name)
    for first, second in itertools.pairwise(ordered):
        if first.name == second.name:
            raise OtaError(out_path, f"zip entry {first.name!r} would be written twice")
    try:
        with zipfile.ZipFile(out_path, "w", allowZip64=True) as archive:
            written = [_write_entry(archive, source) for source in ordered]
    except OSError as err:
        raise OtaError(out_path, f"cannot write: {err.strerror or err}") from None
    return written


def _write_entry(archive: zipfile.ZipFile, source: ZipSource) -> Written:
    digest = hashlib.sha256()
    size = 0
    declared = _stream_size(source)
    info = _zip_info(source.name, _deflate(source, declared), declared)
    with archive.open(info, "w") as out:
        for chunk in file_chunks(source):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if size != info.file_size:
        raise OtaError(str(source.file), f"changed size while being zipped ({info.file_size} -> {size} bytes)")
    return Written(source.name, size, digest.hexdigest())
