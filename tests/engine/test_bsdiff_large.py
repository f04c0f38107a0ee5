"""A 66 MB bsdiff (a decompressed kernel's size): bsdiff4's recursive suffix sort must not
overflow the stack (docs/formats.md#measured-limits-of-bsdiff4), and the patch must round-trip."""

from __future__ import annotations

import hashlib
import random

from ota.actions import make_bsdiff
from ota.format import patch

SIZE = 66 << 20


def _kernel_like(size: int) -> bytes:
    """A 1 MB block of symbol-table-like records, repeated with a counter: compressible and
    cheap to make, yet every suffix sort group is deep."""
    rng = random.Random(66)
    block = b"".join(
        i.to_bytes(4, "little") + b"symbol_%d\0" % rng.randrange(500) + rng.randbytes(rng.randrange(40))
        for i in range(4096)
    )
    return b"".join(r.to_bytes(4, "little") + block for r in range(size // len(block) + 1))[:size]


def test_66_mb_diff_round_trips() -> None:
    source = _kernel_like(SIZE)
    target = bytearray(source)
    target[1000:1000] = b"inserted"
    target[50 << 20 : (50 << 20) + 100] = bytes(100)
    made = make_bsdiff.diff(source, bytes(target))
    assert len(made) < 4096
    assert hashlib.sha256(patch.apply_patch(source, made)).digest() == hashlib.sha256(target).digest()
