"""Bounded input reads and all-or-nothing output writes for the command-line tools.

Every tool reads its inputs through here, so no input can make a tool allocate without bound:
a regular file or a block device is size-checked before a byte is read; an input whose size
the kernel does not report (a character device such as `/dev/zero`, a procfs file) is read in
pieces up to a smaller bound, `MAX_STREAM_BYTES`, and reading stops one byte past it with a
refusal: nothing a tool takes comes as a large stream (MTD partitions are read through
ota.device.applypatch.backends, not here), and a tool on a device with little memory must not hold
gigabytes of a stream before it can say no. A FIFO, a socket or a directory is refused when opened (opened non-blocking, so a FIFO
without a writer cannot hang the tool). Every failure is one `OtaError` naming the file; callers
that word OS errors themselves (the cache adds the errno name) use `read_bounded`. Outputs go to
a temporary sibling that is renamed over the output only when complete and removed on any
failure, so a failed run leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator

from ota.errors import OtaError

# The largest output the patch tools produce (ota.format.patch.DEFAULT_LIMIT): no tool needs a larger input.
MAX_INPUT_BYTES = 1 << 31
# Configs, keys and other small text inputs.
MAX_SMALL_INPUT_BYTES = 1 << 20
# An input of unknown size (a character device, a procfs file): copy a larger one to a file first.
MAX_STREAM_BYTES = 64 << 20
_PIECE = 1 << 20


def read_chunks(path: str) -> Iterator[bytes]:
    """A file's bytes in pieces of at most `_PIECE`, so a multi-GiB image is never held whole; a
    read error is one line naming the file."""
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_PIECE):
                yield chunk
    except OSError as err:
        raise OtaError(path, f"cannot read: {err.strerror or err}") from None


def os_problem(err: OSError) -> str:
    """`strerror (ENAME)`: what a one-line error says about an OSError."""
    name = errno.errorcode.get(err.errno or 0)
    text = err.strerror or str(err)
    return f"{text} ({name})" if name else text


def _kind(mode: int) -> str | None:
    """What is wrong with an input of this file type, or None if it can be read."""
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO; an input must be a regular file or a device"
    if stat.S_ISSOCK(mode):
        return "is a socket; an input must be a regular file or a device"
    return None


def _open_input(path: str) -> int:
    """Opens `path` for reading; never blocks on a FIFO (opened non-blocking, then refused).

    OSError for what the kernel refuses; OtaError for a file of a kind that is not an input.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        problem = _kind(os.fstat(fd).st_mode)
        if problem:
            raise OtaError(path, problem)
        os.set_blocking(fd, True)  # a character device may legitimately wait for data
    except BaseException:
        os.close(fd)
        raise
    return fd


def _known_size(fd: int) -> int | None:
    """The size of a regular file or a block device (which fstat reports as 0); None for a stream."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return os.fstat(fd).st_size
    if stat.S_ISBLK(mode):
        return os.lseek(fd, 0, os.SEEK_END)
    return None


def _too_large(path: str, limit: int, *, stream: bool = False) -> OtaError:
    if stream:
        return OtaError(
            path,
            f"larger than the {limit}-byte limit for an input of unknown size (a character "
            "device); copy it to a file first",
        )
    return OtaError(path, f"larger than the {limit}-byte limit for this input")


def read_bounded(path: str, limit: int) -> bytes:
    """A whole input of at most `limit` bytes. Raises OSError for an I/O failure (the caller words
    it) and OtaError for an input of the wrong kind or over the limit."""
    fd = _open_input(path)
    try:
        size = _known_size(fd)
        if size is not None and size > limit:
            raise _too_large(path, limit)
        stream = size is None
        if stream:
            limit = min(limit, MAX_STREAM_BYTES)
        # Even a sized file is read with the bound: it may grow, and procfs files report size 0.
        pieces, total = [], 0
        while total <= limit and (piece := os.read(fd, min(_PIECE, limit + 1 - total))):
            pieces.append(piece)
            total += len(piece)
        if total > limit:
            del pieces
            raise _too_large(path, limit, stream=stream)
        return b"".join(pieces)
    except MemoryError:
        raise OtaError(path, "cannot read: out of memory holding it") from None
    finally:
        os.close(fd)


def read_file(path: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """Reads a whole input of at most `limit` bytes; anything else is a one-line OtaError."""
    try:
        return read_bounded(path, limit)
    except OSError as err:
        raise OtaError(path, f"cannot read: {err.strerror or err}") from None


def read_optional(path: str, limit: int = MAX_INPUT_BYTES) -> bytes | None:
    """`read_file`, or None when nothing is at `path` (not even a dangling link's target)."""
    if not os.path.exists(path):
        return None
    return read_file(path, limit)


def require_seekable(path: str) -> None:
    """Refuses an input read by seeking (a zip) unless it is a regular file or a block device."""
    try:
        fd = _open_input(path)
        try:
            if _known_size(fd) is None:
                raise OtaError(path, "is a character device; this input must be a regular file")
        finally:
            os.close(fd)
    except OSError as err:
        raise OtaError(path, f"cannot read: {err.strerror or err}") from None


def write_file(path: str, data: bytes) -> None:
    """Writes via a temporary sibling and a rename, so a failed run never leaves half a file."""
    write_files([(path, data)])


def write_files(outputs: list[tuple[str, bytes]]) -> None:
    """Writes several outputs all or nothing: each to a temporary sibling, renamed in only when every
    one is complete; on any failure the temporaries (and outputs already renamed) are removed."""
    temporaries: list[tuple[str, str]] = []
    renamed: list[str] = []
    try:
        for path, data in outputs:
            directory = os.path.dirname(os.path.abspath(path))
            try:
                fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
            except OSError as err:
                raise OtaError(path, f"cannot write: {err.strerror or err}") from None
            temporaries.append((temporary, path))
            try:
                with os.fdopen(fd, "wb") as stream:
                    stream.write(data)
                os.chmod(temporary, 0o666 & ~_umask())
            except OSError as err:
                raise OtaError(path, f"cannot write: {err.strerror or err}") from None
        for temporary, path in temporaries:
            try:
                os.replace(temporary, path)
            except OSError as err:
                raise OtaError(path, f"cannot write: {err.strerror or err}") from None
            renamed.append(path)
    except BaseException:
        for temporary, _ in temporaries:
            _remove_quietly(temporary)
        for path in renamed:
            _remove_quietly(path)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
