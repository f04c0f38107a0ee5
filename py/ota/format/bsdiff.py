"""BSDIFF40: the bsdiff 4.x patch format that AOSP's applypatch and imgpatch apply: its header,
offsets and checked application, shared by the device and the build (ota/actions/make_bsdiff.py
makes the patches).

Applying is bsdiff4's C loop, but only after this module has proven the patch harmless: bsdiff4
trusts the header and the control tuples, and a hostile patch could otherwise make it allocate a
declared 2^62-byte file or inflate a bzip2 bomb. Validation decompresses each bzip2 block with
bounded output, mirroring the lazy AOSP reader that stops once the new file is complete, so every
patch AOSP's bspatch accepts is accepted here too.
"""

from __future__ import annotations

import bz2
from dataclasses import dataclass

import bsdiff4

from ota.errors import OtaError

MAGIC = b"BSDIFF40"
HEADER_SIZE = 32
TUPLE_SIZE = 24

# The default ceiling for any buffer a patch may make us allocate (callers that know the real
# target size should pass it instead).
DEFAULT_LIMIT = 1 << 31

# Old positions outside this range cannot be legitimate and would overflow bsdiff4's int64 sums.
_OLDPOS_BOUND = 1 << 62
_READ_CHUNK = TUPLE_SIZE * 4096


def encode_offset(value: int) -> bytes:
    """Encodes an int64 the bsdiff way: magnitude little-endian, sign in the top bit."""
    magnitude = abs(value)
    if magnitude >= 1 << 63:
        raise ValueError(f"{value} does not fit a bsdiff offset")
    raw = bytearray(magnitude.to_bytes(8, "little"))
    if value < 0:
        raw[7] |= 0x80
    return bytes(raw)


def decode_offset(raw: bytes | memoryview) -> int:
    """Decodes a sign-magnitude int64 (not two's complement; negative zero is 0)."""
    magnitude = int.from_bytes(bytes(raw[:7]) + bytes([raw[7] & 0x7F]), "little")
    return -magnitude if raw[7] & 0x80 else magnitude


@dataclass(frozen=True)
class Header:
    """The 32-byte BSDIFF40 header: compressed block lengths and the new file's size."""

    control_len: int
    diff_len: int
    new_size: int


def parse_header(patch: bytes | memoryview, where: str, *, limit: int = DEFAULT_LIMIT) -> Header:
    """Reads and checks the header against the patch length and the caller's size limit."""
    if len(patch) < HEADER_SIZE:
        raise OtaError(where, f"BSDIFF40 header truncated ({len(patch)} of {HEADER_SIZE} bytes)")
    if bytes(patch[:8]) != MAGIC:
        raise OtaError(where, f"magic is {bytes(patch[:8])!r}, expected {MAGIC!r}")
    header = Header(decode_offset(patch[8:16]), decode_offset(patch[16:24]), decode_offset(patch[24:32]))
    body = len(patch) - HEADER_SIZE
    for field, value in (
        ("control block length", header.control_len),
        ("diff block length", header.diff_len),
        ("new size", header.new_size),
    ):
        if value < 0:
            raise OtaError(where, f"BSDIFF40 {field} is negative ({value})")
    if header.control_len > body:
        raise OtaError(
            where, f"BSDIFF40 control block length {header.control_len} exceeds the {body} bytes after the header"
        )
    if header.control_len + header.diff_len > body:
        raise OtaError(
            where,
            f"BSDIFF40 diff block length {header.diff_len} exceeds the "
            f"{body - header.control_len} bytes after the control block",
        )
    if header.new_size > limit:
        raise OtaError(where, f"BSDIFF40 new size {header.new_size} exceeds the limit {limit}")
    return header


class _Block:
    """One bzip2 block of the patch, decompressed on demand and never past a given bound."""

    def __init__(self, data: memoryview, name: str, where: str) -> None:
        self._data = data
        self._fed = False
        self._decompressor = bz2.BZ2Decompressor()
        self.name = name
        self._where = where

    def read(self, size: int) -> bytes:
        """Returns up to `size` bytes; fewer only at the end of the bzip2 stream."""
        parts: list[bytes] = []
        got = 0
        try:
            while got < size and not self._decompressor.eof:
                if not self._fed:
                    chunk = self._decompressor.decompress(self._data, size - got)
                    self._fed = True
                elif self._decompressor.needs_input:
                    break  # the compressed bytes ran out before the stream ended
                else:
                    chunk = self._decompressor.decompress(b"", size - got)
                parts.append(chunk)
                got += len(chunk)
        except (OSError, EOFError, ValueError) as err:
            raise OtaError(self._where, f"BSDIFF40 {self.name} block is not valid bzip2 ({err})") from None
        return b"".join(parts)


def _read_controls(block: _Block, header: Header, old_size: int, where: str) -> tuple[bytes, int, int]:
    """Walks control tuples until the new file is complete, checking each against the buffers.

    Returns the control bytes actually used and the diff/extra byte counts they consume.
    """
    used = bytearray()
    newpos = oldpos = diff_needed = extra_needed = 0
    max_tuples = 2 * header.new_size + 2  # each useful tuple adds a byte; no-op tuples cannot be more
    pending = b""
    while newpos < header.new_size:
        if len(pending) < TUPLE_SIZE:
            pending += block.read(_READ_CHUNK)
            if len(pending) < TUPLE_SIZE:
                raise OtaError(
                    where, f"BSDIFF40 control block ends at new position {newpos} before the new size {header.new_size}"
                )
        index = len(used) // TUPLE_SIZE
        if index >= max_tuples:
            raise OtaError(
                where, f"BSDIFF40 control block has more than {max_tuples} tuples for new size {header.new_size}"
            )
        x, y, z = (decode_offset(pending[k : k + 8]) for k in (0, 8, 16))
        if x < 0 or y < 0:
            raise OtaError(where, f"BSDIFF40 control tuple {index}: negative length (x={x}, y={y})")
        if newpos + x > header.new_size:
            raise OtaError(
                where,
                f"BSDIFF40 control tuple {index}: diff length x={x} at new position {newpos} "
                f"runs past the new size {header.new_size}",
            )
        if newpos + x + y > header.new_size:
            raise OtaError(
                where,
                f"BSDIFF40 control tuple {index}: extra length y={y} at new position {newpos + x} "
                f"runs past the new size {header.new_size}",
            )
        oldpos += x + z
        if abs(oldpos) > _OLDPOS_BOUND + old_size:
            raise OtaError(where, f"BSDIFF40 control tuple {index}: seek z={z} moves the old position out of range")
        newpos += x + y
        diff_needed += x
        extra_needed += y
        used += pending[:TUPLE_SIZE]
        pending = pending[TUPLE_SIZE:]
    return bytes(used), diff_needed, extra_needed


def _read_exact(block: _Block, size: int, where: str) -> bytes:
    data = block.read(size)
    if len(data) != size:
        raise OtaError(where, f"BSDIFF40 {block.name} block holds {len(data)} bytes, control tuples need {size}")
    return data


def apply(source: bytes, patch: bytes | memoryview, *, where: str = "patch", limit: int = DEFAULT_LIMIT) -> bytes:
    """Applies a BSDIFF40 patch to `source`, rejecting anything AOSP's bspatch would reject.

    `patch` may run past the BSDIFF40 data (as inside IMGDIFF2, where its length is not recorded):
    each block is read as one bzip2 stream from its start offset and trailing bytes are ignored.
    `limit` bounds the declared new size, hence every allocation.
    """
    view = memoryview(patch)
    header = parse_header(view, where, limit=limit)
    control_start = HEADER_SIZE
    diff_start = control_start + header.control_len
    extra_start = diff_start + header.diff_len
    control = _Block(view[control_start:diff_start], "control", where)
    controls, diff_needed, extra_needed = _read_controls(control, header, len(source), where)
    diff_data = _read_exact(_Block(view[diff_start:extra_start], "diff", where), diff_needed, where)
    extra_data = _read_exact(_Block(view[extra_start:], "extra", where), extra_needed, where)
    return bsdiff4.core.patch(source, header.new_size, controls, diff_data, extra_data)
