"""Writing zips the way an attacker would: any names, duplicates, and size fields that lie.

The package writer refuses to produce such archives, so hostile packages are assembled here with
zipfile directly (entries kept in the order given, duplicates allowed) and, where a header must
lie, patched afterwards at the byte level.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

FIXED_TIME = (1980, 1, 1, 0, 0, 0)

# (record signature, offset of its uncompressed-size field, of its name length, of its name)
_LOCAL = (b"PK\x03\x04", 22, 26, 30)
_CENTRAL = (b"PK\x01\x02", 24, 28, 46)


def write_zip(entries: list[tuple[str, bytes]], *, stored: tuple[str, ...] = ()) -> bytes:
    """A zip of `entries` in order (names as given, duplicates kept); deflated unless in `stored`."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": exactly what we want here
        with zipfile.ZipFile(buffer, "w", compresslevel=1) as zf:  # fast: bombs are 100+ MiB of zeros
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
    return buffer.getvalue()


def read_zip(data: bytes) -> list[tuple[str, bytes]]:
    """Every entry of a (well-formed) zip, in archive order."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def set_declared_size(raw: bytearray, name: str, size: int) -> None:
    """Rewrites the uncompressed size of entry `name` in its local and its central header."""
    wanted = name.encode()
    for signature, size_at, name_len_at, name_at in (_LOCAL, _CENTRAL):
        pos = 0
        while (pos := raw.find(signature, pos)) >= 0:
            (name_len,) = struct.unpack_from("<H", raw, pos + name_len_at)
            if raw[pos + name_at : pos + name_at + name_len] == wanted:
                struct.pack_into("<I", raw, pos + size_at, size)
            pos += 4
