"""Raw deflate streams: bounded inflation, exact re-deflation, and finding zlib settings.

imgpatch must re-deflate patched data bit-identically, so the recorded zlib parameters are the
whole contract. The generator therefore only patches a stream in uncompressed space when some
zlib setting reproduces its bytes exactly; finding that setting cheaply is the job of
`find_reproducing_params`.
"""

from __future__ import annotations

import zlib

from ota.errors import OtaError

RAW_WBITS = -15
# Deflate cannot expand more than 1032:1 (a 258-byte match costs at least 2 bits); anything
# declared beyond that is a lie and must not become an allocation.
MAX_RATIO = 1032


def inflate_exact(data: bytes | memoryview, expected_len: int, where: str, field: str) -> bytes:
    """Raw-inflates `data`, which must be one complete stream of exactly `expected_len` bytes."""
    if expected_len > MAX_RATIO * len(data) + 16:
        raise OtaError(where, f"{field} {expected_len} is more than a {len(data)}-byte deflate stream can hold")
    inflater = zlib.decompressobj(RAW_WBITS)
    try:
        out = inflater.decompress(data, expected_len + 1)
    except zlib.error as err:
        raise OtaError(where, f"deflate data does not inflate ({err})") from None
    if len(out) > expected_len or (not inflater.eof and inflater.unconsumed_tail):
        raise OtaError(where, f"deflate data inflates to more than {field} {expected_len}")
    if not inflater.eof:
        raise OtaError(where, f"deflate stream is truncated (inflated {len(out)} of {field} {expected_len})")
    if len(out) != expected_len:
        raise OtaError(where, f"deflate data inflates to {len(out)} bytes, {field} says {expected_len}")
    return out


def deflate(data: bytes, level: int, mem_level: int = 8, *, method: int = zlib.DEFLATED,
            window_bits: int = RAW_WBITS, strategy: int = zlib.Z_DEFAULT_STRATEGY) -> bytes:
    """Compresses in one call; zlib's output does not depend on how input is split, so this
    equals AOSP's streamed Z_NO_FLUSH…Z_FINISH loop byte for byte."""
    compressor = zlib.compressobj(level, method, window_bits, mem_level, strategy)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)
