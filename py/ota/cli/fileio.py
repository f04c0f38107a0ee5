"""Whole-file reads and writes for the patch CLIs, with failures as one-line OtaErrors."""

from __future__ import annotations

import os

from ota.errors import OtaError


def read_file(path: str) -> bytes:
    """Reads a whole input file; a missing or unreadable file names itself in the error."""
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as err:
        raise OtaError(path, f"cannot read: {err.strerror or err}") from None


def write_file(path: str, data: bytes) -> None:
    """Writes via a temporary sibling and a rename, so a failed run never leaves half a file."""
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except OSError as err:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise OtaError(path, f"cannot write: {err.strerror or err}") from None
