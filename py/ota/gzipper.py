"""Gzip streams that imgdiff can patch in uncompressed space.

imgdiff only diffs a gzip member's *inflated* bytes when it can re-create the member's deflate
stream exactly: it looks for members starting ``1f 8b 08 00`` (FLG must be 0) and re-deflates with
zlib at level 6, then 9, memLevel 8, windowBits -15, default strategy (spec §3.4). Anything else
(GNU gzip, a kernel build's Image.gz) is patched as compressed bytes, which makes a boot-image patch
nearly as big as the image (DESIGN.md, "Facts measured"). So every gzip this project writes comes
from `compress` (zlib at one of those settings, FLG 0, MTIME 0, fixed OS byte), and `normalize`
turns a foreign gzip file into one such stream with the same inflated bytes.

The deflate bytes are only as stable as the zlib build: the same zlib (1.2.x/1.3.x) gives the same
bytes, but a zlib-ng-backed Python would not; `zlib.ZLIB_RUNTIME_VERSION` is reported for that.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ota.errors import OtaError

# The levels imgdiff's reproducibility test tries, in its order (spec §3.4).
IMGDIFF_LEVELS = (6, 9)
DEFAULT_LEVEL = 9
MEM_LEVEL = 8
WINDOW_BITS = -15
OS_UNIX = 3  # fixed, so the same input gives the same bytes on every host OS

# A gzip file's inflated size is untrusted; callers that know better pass their own limit.
DEFAULT_INFLATE_LIMIT = 1 << 31

_MAGIC = b"\x1f\x8b"
_CM_DEFLATE = 8
_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 0x01, 0x02, 0x04, 0x08, 0x10
_FRESERVED = 0xE0
_FIXED_HEADER = struct.Struct("<2sBBIBB")  # magic, CM, FLG, MTIME, XFL, OS
_TRAILER = struct.Struct("<II")  # CRC32, ISIZE
_CHUNK = 1 << 20


def _check_level(level: int) -> None:
    if level not in IMGDIFF_LEVELS:
        raise OtaError("gzip", f"level {level} is not one imgdiff reproduces (use 6 or 9)")


def deflate_raw(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """Raw deflate with exactly the parameters imgdiff re-creates (and records in its patch)."""
    _check_level(level)
    comp = zlib.compressobj(level, zlib.DEFLATED, WINDOW_BITS, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY)
    return comp.compress(data) + comp.flush()


def header(level: int = DEFAULT_LEVEL) -> bytes:
    """The 10-byte member header: no flags, MTIME 0, XFL as zlib sets it, OS fixed to Unix."""
    xfl = 2 if level == 9 else 0
    return _FIXED_HEADER.pack(_MAGIC, _CM_DEFLATE, 0, 0, xfl, OS_UNIX)


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """One gzip member whose deflate stream imgdiff can always reproduce."""
    body = deflate_raw(data, level)
    return header(level) + body + _TRAILER.pack(zlib.crc32(data), len(data) & 0xFFFFFFFF)


def reproducing_level(deflate: bytes | memoryview, inflated: bytes) -> int | None:
    """The first level of `IMGDIFF_LEVELS` whose raw deflate of `inflated` equals `deflate`.

    Compresses incrementally and stops at the first differing byte, so a foreign stream (which
    usually diverges within a few KiB) costs little.
    """
    expected = memoryview(deflate)
    for level in IMGDIFF_LEVELS:
        comp = zlib.compressobj(level, zlib.DEFLATED, WINDOW_BITS, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY)
        pos = 0
        matched = True
        for start in range(0, len(inflated), _CHUNK):
            out = comp.compress(inflated[start : start + _CHUNK])
            if out != expected[pos : pos + len(out)]:
                matched = False
                break
            pos += len(out)
        if matched:
            out = comp.flush()
            if out == expected[pos : pos + len(out)] and pos + len(out) == len(expected):
                return level
    return None


@dataclass(frozen=True)
class GzipMember:
    """One parsed gzip member (RFC 1952) and its inflated content."""

    flags: int
    mtime: int
    xfl: int
    os: int
    deflate_start: int
    deflate_end: int
    inflated: bytes


def _skip_zero_terminated(data: bytes, pos: int, where: str, field: str) -> int:
    end = data.find(b"\0", pos)
    if end < 0:
        raise OtaError(where, f"gzip {field}: no terminating NUL before the end of the file")
    return end + 1


def _inflate_bounded(data: bytes, start: int, where: str, limit: int) -> tuple[bytes, int]:
    """Inflates the raw deflate stream at `start`; returns (bytes, end offset of the stream)."""
    inflater = zlib.decompressobj(WINDOW_BITS)
    view = memoryview(data)
    pieces: list[bytes] = []
    total = 0
    pos = start
    tail: bytes | memoryview = b""
    full = False  # the last call filled its output budget: zlib may hold more without new input
    try:
        while not inflater.eof:
            if not tail and not full:
                if pos >= len(data):
                    break
                tail = view[pos : pos + _CHUNK]
                pos += len(tail)
            piece = inflater.decompress(tail, _CHUNK)
            full = len(piece) == _CHUNK
            tail = inflater.unconsumed_tail
            total += len(piece)
            if total > limit:
                raise OtaError(where, f"gzip data: inflates to more than the {limit}-byte limit")
            pieces.append(piece)
    except zlib.error as err:
        raise OtaError(where, f"gzip data: corrupt deflate stream ({err})") from None
    if not inflater.eof:
        raise OtaError(where, "gzip data: deflate stream is truncated")
    # At the end of the stream, unused_data holds all fed input past it (CPython may leave the
    # same bytes in unconsumed_tail as well, so that one is not subtracted again).
    end = pos - len(inflater.unused_data)
    return b"".join(pieces), end


def parse_member(data: bytes, where: str, *, limit: int = DEFAULT_INFLATE_LIMIT) -> GzipMember:
    """Parses and inflates the single gzip member `data` holds, checking CRC32 and ISIZE."""
    if len(data) < _FIXED_HEADER.size + _TRAILER.size:
        raise OtaError(where, f"gzip header: truncated, {len(data)} bytes")
    magic, method, flags, mtime, xfl, os_byte = _FIXED_HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise OtaError(where, f"gzip magic: expected 1f8b, found {magic.hex()}")
    if method != _CM_DEFLATE:
        raise OtaError(where, f"gzip CM: compression method {method} is not deflate (8)")
    if flags & _FRESERVED:
        raise OtaError(where, f"gzip FLG: reserved bits set (0x{flags:02x})")
    pos = _FIXED_HEADER.size
    if flags & _FEXTRA:
        if pos + 2 > len(data):
            raise OtaError(where, "gzip XLEN: truncated")
        (xlen,) = struct.unpack_from("<H", data, pos)
        pos += 2 + xlen
    if flags & _FNAME:
        pos = _skip_zero_terminated(data, pos, where, "FNAME")
    if flags & _FCOMMENT:
        pos = _skip_zero_terminated(data, pos, where, "FCOMMENT")
    if flags & _FHCRC:
        pos += 2
    if pos > len(data):
        raise OtaError(where, "gzip header: optional fields run past the end of the file")
    inflated, end = _inflate_bounded(data, pos, where, limit)
    if end + _TRAILER.size > len(data):
        raise OtaError(where, "gzip trailer: truncated (CRC32/ISIZE missing)")
    crc, isize = _TRAILER.unpack_from(data, end)
    if crc != zlib.crc32(inflated):
        raise OtaError(where, f"gzip CRC32: stored {crc:08x}, data has {zlib.crc32(inflated):08x}")
    if isize != len(inflated) & 0xFFFFFFFF:
        raise OtaError(where, f"gzip ISIZE: stored {isize}, data inflates to {len(inflated)} bytes")
    extra = len(data) - end - _TRAILER.size
    if extra:
        raise OtaError(where, f"gzip: {extra} bytes after the first member (one member expected)")
    return GzipMember(flags, mtime, xfl, os_byte, pos, end, inflated)


@dataclass(frozen=True)
class NormalizeReport:
    """What `normalize` found and did, for build logs and the boot_image rule's report.

    action: "not-gzip" (left alone), "kept" (already reproducible, bytes unchanged),
    "reheadered" (deflate reproducible, header rewritten to FLG 0 / MTIME 0) or "recompressed".
    """

    action: str
    level: int | None
    input_size: int
    output_size: int
    inflated_size: int
    reason: str
    zlib_version: str = zlib.ZLIB_RUNTIME_VERSION

    def line(self) -> str:
        """One human-readable line."""
        level = "-" if self.level is None else str(self.level)
        return (
            f"{self.action}: level {level}, {self.input_size} -> {self.output_size} bytes "
            f"({self.inflated_size} inflated; zlib {self.zlib_version}): {self.reason}"
        )


def normalize(
    data: bytes, where: str, *, level: int = DEFAULT_LEVEL, limit: int = DEFAULT_INFLATE_LIMIT
) -> tuple[bytes, NormalizeReport]:
    """Makes `data` a gzip member imgdiff can patch in uncompressed space, if it is gzip at all.

    Idempotent: a stream already reproducible at level 6 or 9 with FLG 0 and MTIME 0 is returned
    unchanged, so normalizing twice (or normalizing our own output) never changes bytes.
    """
    _check_level(level)
    if not data.startswith(_MAGIC):
        report = NormalizeReport("not-gzip", None, len(data), len(data), len(data), "no gzip magic")
        return data, report
    member = parse_member(data, where, limit=limit)
    deflate = memoryview(data)[member.deflate_start : member.deflate_end]
    found = reproducing_level(deflate, member.inflated)
    size = len(member.inflated)
    if found is not None and member.flags == 0 and member.mtime == 0:
        reason = "zlib reproduces the deflate stream; header already canonical"
        return data, NormalizeReport("kept", found, len(data), len(data), size, reason)
    if found is not None:
        out = header(found) + data[member.deflate_start :]
        reason = f"zlib reproduces the deflate stream; header had FLG 0x{member.flags:02x} MTIME {member.mtime}"
        return out, NormalizeReport("reheadered", found, len(data), len(out), size, reason)
    out = compress(member.inflated, level)
    reason = "no zlib level 6/9 reproduces the deflate stream (another compressor made it)"
    return out, NormalizeReport("recompressed", level, len(data), len(out), size, reason)
