"""Deterministic JSON files: how build actions hand results to each other.

Keys sorted, fixed separators, UTF-8, one trailing newline: the same data always gives the same
bytes, so an unchanged result keeps every downstream action a cache hit.

A file name is any byte string (py/ota/format/paths.py), and Starlark's `json.encode` writes a
name's bytes as they are, so a contract file may hold bytes that are not UTF-8. Reading decodes
with `surrogateescape` and writing encodes the same way: every byte of a name survives a round
trip, and `get_path` is the one way a reader takes a path (or link target) out of such a file.
"""

from __future__ import annotations

import json
from typing import Any

from ota.errors import OtaError
from ota.format import paths
from ota.io import fileio

# Action inputs are written by our own rules; the bound only stops a wrong file from eating memory.
MAX_JSON_BYTES = 1 << 30


def dumps(value: Any) -> bytes:
    """The canonical bytes of `value`."""
    return (json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode(
        "utf-8", "surrogateescape"
    )


def write(path: str, value: Any) -> None:
    fileio.write_file(path, dumps(value))


def read(path: str) -> Any:
    """Parses a JSON file; unreadable, oversized or malformed files are one-line OtaErrors."""
    return loads(read_raw(path), path)


def read_raw(path: str) -> bytes:
    """The bytes `read` parses, for a reader that may have parsed the same bytes before
    (py/ota/actions/content_cache.py); unreadable or oversized files are one-line OtaErrors."""
    return fileio.read_file(path, MAX_JSON_BYTES)


def loads(raw: bytes, where: str) -> Any:
    """Parses JSON bytes; malformed input is a one-line OtaError naming `where`. Bytes that are
    not UTF-8 (an install path may hold any) become `surrogateescape` characters, which `dumps`
    turns back into the same bytes."""
    try:
        return json.loads(paths.from_bytes(raw))
    except ValueError as err:
        raise OtaError(where, f"not valid JSON ({err})") from None


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


def get_path(obj: Any, key: str, where: str, field: str | None = None) -> str:
    """obj[key] as an install path: checked by `paths.check_path`, its bytes `paths.to_bytes` of it."""
    return paths.check_path(get(obj, key, str, where, field), where, field or key)


def get_link_target(obj: Any, key: str, where: str, field: str | None = None) -> str:
    """obj[key] as a symlink target: any non-empty byte string without NUL, stored as given."""
    target = get(obj, key, str, where, field)
    if not target or "\0" in target:
        raise OtaError(where, f'{field or key} "{paths.escape(target)}": a link target is non-empty and has no NUL')
    return target
