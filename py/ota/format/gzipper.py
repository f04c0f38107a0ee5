"""Gzip streams that any imgdiff can patch in uncompressed space.

AOSP's imgdiff only diffs a gzip member's *inflated* bytes when it can re-create the member's
deflate stream exactly: it looks for members starting ``1f 8b 08 00`` (FLG must be 0) and
re-deflates with zlib at level 6, then 9, memLevel 8, windowBits -15, default strategy
(docs/formats.md#generating-imgdiff2-imgdiff).
Anything else (GNU gzip, a kernel build's Image.gz) is patched as compressed bytes, which makes a
boot-image patch nearly as big as the image (docs/formats.md#gzip-streams-imgdiff-can-reproduce);
our imgdiff searches more zlib settings, but no zlib setting reproduces GNU gzip. So every gzip this project writes
comes from `compress` (zlib at AOSP's settings, FLG 0, MTIME 0, fixed OS byte), and `normalize`
turns a foreign gzip file into one such stream with the same inflated bytes.

The deflate bytes are only as stable as the zlib build: the same zlib (1.2.x/1.3.x) gives the same
bytes, but a zlib-ng-backed Python would not; `zlib.ZLIB_RUNTIME_VERSION` is reported for that.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ota.errors import OtaError
from ota.format import deflate

# The levels imgdiff's reproducibility test tries, in its order, at memLevel 8
# (docs/formats.md#generating-imgdiff2-imgdiff).
IMGDIFF_LEVELS = tuple(level for level, _ in deflate.AOSP_PARAMS)
DEFAULT_LEVEL = 9
OS_UNIX = 3  # fixed, so the same input gives the same bytes on every host OS

# A gzip file's inflated size is untrusted; callers that know better pass their own limit.
DEFAULT_INFLATE_LIMIT = 1 << 31

_FIXED_HEADER = struct.Struct("<3sBIBB")  # ID1 ID2 CM, FLG, MTIME, XFL, OS
_TRAILER = struct.Struct("<II")  # CRC32, ISIZE


def _check_level(level: int) -> None:
    if level not in IMGDIFF_LEVELS:
        raise OtaError("gzip", f"level {level} is not one imgdiff reproduces (use 6 or 9)")


def header(level: int = DEFAULT_LEVEL) -> bytes:
    """The 10-byte member header: no flags, MTIME 0, XFL as zlib sets it, OS fixed to Unix."""
    xfl = 2 if level == 9 else 0
    return _FIXED_HEADER.pack(deflate.GZIP_MAGIC, 0, 0, xfl, OS_UNIX)


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """One gzip member whose deflate stream AOSP's imgdiff can always reproduce."""
    _check_level(level)
    body = deflate.deflate(data, level)
    return header(level) + body + _TRAILER.pack(zlib.crc32(data), len(data) & 0xFFFFFFFF)


def reproducing_level(inflated: bytes, compressed: bytes | memoryview) -> int | None:
    """The level (6 or 9, memLevel 8) that re-creates `compressed`, or None. Only AOSP's two
    settings count: our imgdiff also finds other zlib settings, but AOSP's would not."""
    params = deflate.find_reproducing_params(inflated, compressed)
    return params[0] if params in deflate.AOSP_PARAMS else None


def parse_member(data: bytes, where: str, *, limit: int = DEFAULT_INFLATE_LIMIT) -> deflate.GzipMember:
    """Parses and inflates the single gzip member `data` holds, checking CRC32 and ISIZE."""
    if not data.startswith(deflate.GZIP_MAGIC):
        raise OtaError(where, f"gzip magic: expected 1f8b08 (deflate), found {data[:3].hex()}")
    header_len = deflate.gzip_header_len(data, 0)
    if header_len is None:
        raise OtaError(where, "gzip header: reserved FLG bits, truncated optional fields or a bad header CRC")
    stream = deflate.inflate_stream(data, header_len, limit)
    if stream is None:
        raise OtaError(where, f"gzip data: not one complete deflate stream inflating to at most {limit} bytes")
    inflated, deflate_len = stream
    member = deflate.GzipMember(0, header_len, deflate_len, inflated)
    if member.end > len(data):
        raise OtaError(where, "gzip trailer: truncated (CRC32/ISIZE missing)")
    crc, isize = _TRAILER.unpack_from(data, member.footer_start)
    if crc != zlib.crc32(inflated):
        raise OtaError(where, f"gzip CRC32: stored {crc:08x}, data has {zlib.crc32(inflated):08x}")
    if isize != len(inflated) & 0xFFFFFFFF:
        raise OtaError(where, f"gzip ISIZE: stored {isize}, data inflates to {len(inflated)} bytes")
    if member.end != len(data):
        raise OtaError(where, f"gzip: {len(data) - member.end} bytes after the first member (one member expected)")
    return member


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
    if not data.startswith(deflate.GZIP_MAGIC[:2]):
        report = NormalizeReport("not-gzip", None, len(data), len(data), len(data), "no gzip magic")
        return data, report
    member = parse_member(data, where, limit=limit)
    _, flags, mtime, _, _ = _FIXED_HEADER.unpack_from(data)
    compressed = memoryview(data)[member.deflate_start : member.footer_start]
    found = reproducing_level(member.inflated, compressed)
    size = len(member.inflated)
    if found is not None and flags == 0 and mtime == 0:
        reason = "zlib reproduces the deflate stream; header already canonical"
        return data, NormalizeReport("kept", found, len(data), len(data), size, reason)
    if found is not None:
        out = header(found) + data[member.deflate_start :]
        reason = f"zlib reproduces the deflate stream; header had FLG 0x{flags:02x} MTIME {mtime}"
        return out, NormalizeReport("reheadered", found, len(data), len(out), size, reason)
    out = compress(member.inflated, level)
    reason = "no zlib level 6/9 reproduces the deflate stream (another compressor made it)"
    return out, NormalizeReport("recompressed", level, len(data), len(out), size, reason)
