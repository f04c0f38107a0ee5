"""Deterministic JSON files: how build actions hand results to each other.

Keys sorted, fixed separators, UTF-8, one trailing newline: the same data always gives the same
bytes, so an unchanged result keeps every downstream action a cache hit.
"""

from __future__ import annotations

import json
from typing import Any

from ota.cli import fileio
from ota.errors import OtaError

# Action inputs are written by our own rules; the bound only stops a wrong file from eating memory.
MAX_JSON_BYTES = 1 << 30
# Files are read in pieces of this size: `stream.read(n)` allocates n bytes before it reads any,
# so asking for the whole bound at once would reserve 1 GiB for a 100-byte device file.
_READ_PIECE = 1 << 20


def dumps(value: Any) -> bytes:
    """The canonical bytes of `value`."""
    return (json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def write(path: str, value: Any) -> None:
    fileio.write_file(path, dumps(value))


def read(path: str) -> Any:
    """Parses a JSON file; unreadable, oversized or malformed files are one-line OtaErrors."""
    raw = bytearray()
    try:
        with open(path, "rb") as stream:
            while piece := stream.read(min(_READ_PIECE, MAX_JSON_BYTES + 1 - len(raw))):
                raw += piece
    except OSError as err:
        raise OtaError(path, f"cannot read: {err.strerror or err}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise OtaError(path, f"larger than {MAX_JSON_BYTES} bytes")
    return loads(bytes(raw), path)


def loads(raw: bytes, where: str) -> Any:
    """Parses JSON bytes; malformed input is a one-line OtaError naming `where`."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise OtaError(where, f"not valid UTF-8 JSON ({err})") from None


def get(obj: Any, key: str, kind: type | tuple[type, ...], where: str, field: str | None = None) -> Any:
    """obj[key], checked to be of `kind` (bool is never accepted as int)."""
    name = field or key
    if not isinstance(obj, dict):
        raise OtaError(where, f"{name}: the enclosing value is not an object")
    if key not in obj:
        raise OtaError(where, f"{name}: missing")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise OtaError(where, f"{name}: expected {expected}, got {value!r}"[:300])
    return value
