"""BSDIFF40 diffs from libdivsufsort's suffix array and the match scan of bsdiff_scan.c.

Why: bsdiff4's diff spends nearly all its time and memory in qsufsort on 64-bit indices (about 18
bytes per source byte). A suffix array is unique, so libdivsufsort's faster 32-bit sort gives the
same array, and bsdiff_scan.c runs bsdiff 4.x's scan over it: the patch bytes are bsdiff4's, in
about a third of the time and memory (docs/performance.md has the measurements).

`load()` returns None where the library or pydivsufsort cannot be loaded (a checkout used without
building it); ota/format/bsdiff.py then diffs with bsdiff4, which writes the same bytes more slowly.
"""

from __future__ import annotations

import bz2
import ctypes
import functools
import importlib.util
import pathlib
from dataclasses import dataclass

LIBRARY_NAME = "libbsdiff_scan.so"

# The scan takes the suffix array as int32: a larger source would need libdivsufsort's 64-bit sort
# (and 8 bytes per byte, which bsdiff4 already costs), so it stays with bsdiff4.
MAX_SOURCE = (1 << 31) - 1

# Peak bytes per source byte: the 4-byte suffix array plus the source itself (measured by
# bench/bench_diff_speed.py); per target byte: the target and its diff and extra streams.
PEAK_PER_SOURCE_BYTE = 5
PEAK_PER_TARGET_BYTE = 2

_MAGIC = b"BSDIFF40"
_TUPLE_SIZE = 24

_c_bytes = ctypes.POINTER(ctypes.c_uint8)
_c_int64_p = ctypes.POINTER(ctypes.c_int64)


@dataclass(frozen=True)
class Scanner:
    """The loaded library and libdivsufsort's, bound together."""

    library: ctypes.CDLL
    divsufsort: ctypes.CDLL

    def diff(self, source: bytes, target: bytes) -> bytes:
        """The BSDIFF40 patch bsdiff4.diff(source, target) writes, byte for byte.

        Raises MemoryError when an allocation fails (the caller names the file)."""
        controls = _c_int64_p()
        diff_size = ctypes.c_int64()
        extra_size = ctypes.c_int64()
        suffixes = self._sorted_suffixes(source) if source else None
        count = self.library.ota_bsdiff_scan(
            source,
            len(source),
            suffixes,
            target,
            len(target),
            ctypes.byref(controls),
            ctypes.byref(diff_size),
            ctypes.byref(extra_size),
        )
        del suffixes  # 4 bytes per source byte: gone before the streams are written
        if count < 0:
            raise MemoryError("bsdiff scan")
        try:
            control = bytearray(count * _TUPLE_SIZE)
            diff = bytearray(diff_size.value)
            extra = bytearray(extra_size.value)
            self.library.ota_bsdiff_streams(
                source,
                target,
                controls,
                count,
                _address(control),
                _address(diff),
                _address(extra),
            )
        finally:
            self.library.ota_bsdiff_free(controls)
        return _patch(control, diff, extra, len(target))

    def _sorted_suffixes(self, source: bytes) -> ctypes.Array:
        """libdivsufsort's suffix array of `source` (int32, the empty suffix left out)."""
        suffixes = (ctypes.c_int32 * len(source))()
        if self.divsufsort.divsufsort(source, suffixes, len(source)) != 0:
            raise MemoryError("divsufsort")  # its only failure on valid arguments (-2)
        return suffixes


def _address(buffer: bytearray) -> ctypes.Array | None:
    """A writable pointer to `buffer` (None for an empty one, which from_buffer refuses)."""
    return (ctypes.c_uint8 * len(buffer)).from_buffer(buffer) if buffer else None


def _offset(value: int) -> bytes:
    """The header's lengths, never negative: plain little-endian int64."""
    return value.to_bytes(8, "little")


def _patch(control: bytearray, diff: bytearray, extra: bytearray, new_size: int) -> bytes:
    """Header and three bzip2 streams at level 9, laid out as bsdiff4 writes them."""
    packed_control = bz2.compress(control)
    del control
    packed_diff = bz2.compress(diff)
    del diff
    packed_extra = bz2.compress(extra)
    del extra
    header = _MAGIC + _offset(len(packed_control)) + _offset(len(packed_diff)) + _offset(new_size)
    return b"".join((header, packed_control, packed_diff, packed_extra))


def _one_thread(divsufsort: ctypes.CDLL) -> None:
    """Keeps libdivsufsort's OpenMP to the calling thread, before its first sort.

    GNU OpenMP's thread pool does not survive fork: once a process has sorted with it, a forked
    child's sort waits forever for threads that were not copied (ota/io/forked.py forks after small
    in-process diffs). Parallelism comes from diffing chunks in separate children instead.
    """
    set_threads = getattr(divsufsort, "omp_set_num_threads", None)  # absent without OpenMP
    if set_threads is not None:
        set_threads(1)


def _divsufsort_library() -> pathlib.Path | None:
    """pydivsufsort's libdivsufsort (32-bit), found without importing the package: its
    __init__ imports numpy (18 MB and a tenth of a second per process), which the sort does not
    need when called directly."""
    spec = importlib.util.find_spec("pydivsufsort")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(pathlib.Path(folder).glob("libdivsufsort.so*"))
        if found:
            return found[0]
    return None


@functools.cache
def load() -> Scanner | None:
    """The scanner, or None if libbsdiff_scan.so or pydivsufsort's library cannot be loaded."""
    # Not resolve(): in Bazel's runfiles this module and the library are symlinks into different
    # trees (the source and the output), and only the runfiles directory holds both.
    path = pathlib.Path(__file__).absolute().parent / LIBRARY_NAME
    sorter_path = _divsufsort_library()
    if sorter_path is None:
        return None
    try:
        divsufsort = ctypes.CDLL(str(sorter_path))
        library = ctypes.CDLL(str(path))
    except OSError:
        return None
    _one_thread(divsufsort)
    divsufsort.divsufsort.restype = ctypes.c_int32
    divsufsort.divsufsort.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int32),
        ctypes.c_int32,
    ]
    library.ota_bsdiff_scan.restype = ctypes.c_int64
    library.ota_bsdiff_scan.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int32),
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.POINTER(_c_int64_p),
        _c_int64_p,
        _c_int64_p,
    ]
    library.ota_bsdiff_streams.restype = None
    library.ota_bsdiff_streams.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        _c_int64_p,
        ctypes.c_int64,
        _c_bytes,
        _c_bytes,
        _c_bytes,
    ]
    library.ota_bsdiff_free.restype = None
    library.ota_bsdiff_free.argtypes = [ctypes.c_void_p]
    return Scanner(library, divsufsort)
