"""BSDIFF40: the bsdiff 4.x patch format that AOSP's applypatch and imgpatch apply.

Diffing writes bsdiff4's bytes (which matched AOSP's 2009 bsdiff byte for byte in the checks of
docs/formats.md#bsdiff4-and-aosps-bspatch): libdivsufsort's suffix sort and our compiled scan
(ota/native/bsdiff_scan.py) where they load, bsdiff4's own diff where they do not. Applying is
also bsdiff4's C loop, but only after this module has proven the patch harmless: bsdiff4 trusts
the header and the control tuples, and a hostile patch could otherwise make it allocate a
declared 2^62-byte file or inflate a bzip2 bomb. Validation decompresses each bzip2 block with
bounded output, mirroring the lazy AOSP reader that stops once the new file is complete, so every
patch AOSP's bspatch accepts is accepted here too.

Large diffs run in forked children (ota/io/forked.py): their memory peak ends with the child, and
independent diffs (imgdiff's chunks) use several cores. docs/performance.md has the measurements.
"""

from __future__ import annotations

import bz2
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import bsdiff4

from ota.errors import OtaError
from ota.io import forked
from ota.native import bsdiff_scan

MAGIC = b"BSDIFF40"
HEADER_SIZE = 32
TUPLE_SIZE = 24

# bsdiff4's suffix sort recurses deeply; on ~66 MB inputs it overflows an 8 MiB stack and kills
# the process (docs/formats.md#measured-limits-of-bsdiff4). Stack pages are only committed when touched.
DIFF_THREAD_STACK = 1 << 30

# The default ceiling for any buffer a patch may make us allocate (callers that know the real
# target size should pass it instead).
DEFAULT_LIMIT = 1 << 31

# Source plus target bytes from which a diff runs in a forked child (ota/io/forked.py). Below it the
# diff's peak (under 20 MB) is less than the interpreter's own, and a fork of a large parent (page
# tables, a pipe, a wait) would cost more than the diff.
IN_PROCESS_LIMIT = 1 << 20

# bsdiff4's own peak per byte of the old file: two 8-byte suffix sort arrays plus the inputs
# (bench/bench_diff_speed.py measured 18.5x on a 24 MB kernel Image).
BSDIFF4_PEAK_PER_SOURCE_BYTE = 18

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


def engine() -> str:
    """Which code diffs here: "native" (libdivsufsort and ota/native/bsdiff_scan.c) or "bsdiff4"
    (the library or pydivsufsort could not be loaded). Both write the same bytes."""
    return "native" if bsdiff_scan.load() is not None else "bsdiff4"


def peak_estimate(source_size: int, target_size: int) -> int:
    """The bytes a diff of these sizes is expected to hold at its peak, inputs included."""
    if bsdiff_scan.load() is not None and source_size <= bsdiff_scan.MAX_SOURCE:
        return bsdiff_scan.PEAK_PER_SOURCE_BYTE * source_size + bsdiff_scan.PEAK_PER_TARGET_BYTE * target_size
    return BSDIFF4_PEAK_PER_SOURCE_BYTE * source_size + 2 * target_size


def diff(source: bytes, target: bytes, *, where: str = "bsdiff") -> bytes:
    """Makes a BSDIFF40 patch (bzip2 level 9, as AOSP); see diff_many."""
    return diff_many([(source, target)], where=where)[0]


def diff_many(
    pairs: Sequence[tuple[bytes, bytes]], *, where: str = "bsdiff", parallel: int | None = None
) -> list[bytes]:
    """BSDIFF40 patches of independent (source, target) pairs, in order, each byte-identical to
    bsdiff4's diff. Pairs of at least IN_PROCESS_LIMIT bytes run in forked children, up to
    `parallel` at once (default: every core this process may use) and only as many side by side
    as the memory the kernel reports available can hold, so that their peak memory goes back to
    the system when they end and they use more than one core; smaller pairs run here, where a
    fork would cost more than the diff.

    Running out of memory (peak_estimate) is an OtaError naming `where`, so a tool under a
    memory limit fails with one line like any other bad input.
    """
    results: list[bytes | None] = [None] * len(pairs)
    big = [index for index, (source, target) in enumerate(pairs) if len(source) + len(target) >= IN_PROCESS_LIMIT]
    jobs = [functools.partial(_diff_here, *pairs[index], where) for index in big]
    costs = [peak_estimate(len(pairs[index][0]), len(pairs[index][1])) for index in big]
    made_big = forked.run(
        jobs, parallel=parallel or forked.default_jobs(), where=where, costs=costs, budget=forked.available_memory()
    )
    for index, made in zip(big, made_big, strict=False):
        results[index] = made
    for index, (source, target) in enumerate(pairs):
        if results[index] is None:
            results[index] = _diff_here(source, target, where)
    return results  # type: ignore[return-value]


def _diff_here(source: bytes, target: bytes, where: str) -> bytes:
    """One diff in this process: the compiled scan where it loaded, else bsdiff4's diff."""
    source, target = bytes(source), bytes(target)  # the scan reads them through char pointers
    scanner = bsdiff_scan.load()
    if scanner is not None and len(source) <= bsdiff_scan.MAX_SOURCE:
        try:
            return scanner.diff(source, target)
        except MemoryError:
            raise _out_of_memory(source, target, where) from None
    return _bsdiff4_diff(source, target, where)


def _out_of_memory(source: bytes, target: bytes, where: str) -> OtaError:
    return OtaError(
        where,
        f"out of memory diffing a {len(source)}-byte source (the diff needs about "
        f"{peak_estimate(len(source), len(target)) >> 20} MiB)",
    )


def _bsdiff4_diff(source: bytes, target: bytes, where: str) -> bytes:
    """bsdiff4's diff, in a thread with a stack big enough for its recursive suffix sort on
    inputs of tens of megabytes."""
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["patch"] = bsdiff4.diff(source, target)
        except MemoryError:
            outcome["error"] = _out_of_memory(source, target, where)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = err

    worker = _start_with_large_stack(work, where)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["patch"]  # type: ignore[return-value]


# Under an address-space limit (ulimit -v) a 1 GiB stack cannot be reserved; such a limit also
# caps the inputs bsdiff4 can hold (18x the source), and those need far less stack.
_STACK_SIZES = (DIFF_THREAD_STACK, 1 << 28, 1 << 26)


def _start_with_large_stack(work: Callable[[], None], where: str) -> threading.Thread:
    """Starts `work` in a thread with the largest stack of _STACK_SIZES the process can reserve."""
    previous = threading.stack_size()
    try:
        for size in _STACK_SIZES:
            threading.stack_size(size)
            worker = threading.Thread(target=work, name="bsdiff")
            try:
                worker.start()
            except RuntimeError:  # "can't start new thread": the stack did not fit
                continue
            return worker
    finally:
        threading.stack_size(previous)
    raise OtaError(where, f"cannot start the diff thread: no room for even a {_STACK_SIZES[-1] >> 20} MiB stack")
