"""The one I/O layer for every device-side change.

Why one layer: an update must survive power failing at any moment, and the only way to show that
is to cut it at *every* step that changes what is on disk and then rerun. So every state-changing
operation of applypatch (and of ota_apply) goes through an `FsOps` object: one named method per
operation, and `perform` for the *at()-style calls that have no named method. Reads and queries
are not operations: they change nothing, so there is nothing to cut.

This class only performs. It has no fault hook, no environment variable and no flag: a stray
setting on a device cannot change what an update writes. The power-loss harness is a subclass in
the test-only package (`ota.testing.faults`), which overrides `perform` to count, cut and model
the loss of unsynced data; the device tools never import it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class FsOps:
    """Performs state-changing I/O, each operation through `perform` (see module doc)."""

    # -- the one primitive -------------------------------------------------------------------

    def perform(self, kind: str, target: str, action: Callable[[], T], tear: Callable[[], None] | None = None) -> T:
        """Runs `action`, one state-changing operation of `kind` on `target` (a path, or a path
        with a suffix such as ``@offset+length``).

        `tear` performs the operation half way (what power loss in the middle of it leaves
        behind); only the test harness runs it.
        """
        return action()

    # -- the operations ----------------------------------------------------------------------

    def create(self, path: str, mode: int = 0o600) -> int:
        """Opens a new, empty regular file at `path` for writing (an operation: it replaces).

        Every caller creates a temporary it then renames into place, in a directory others can
        write (the cache, the build file's directory). Whatever a cut run or anyone else left at
        that name -- a stale file, a symlink aiming elsewhere, a FIFO that would block the open --
        is unlinked first, and the file is made with O_EXCL | O_NOFOLLOW: the write lands in a
        fresh inode of this directory, never through a link, never into a file someone else holds.
        """
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(path).st_mode):  # not ours to remove: the caller reports it
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            self.unlink(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return self.perform("create", path, lambda: os.open(path, flags, mode))

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int, target: str) -> None:
        """Writes all of `data` at `offset`; tears as a write of only its first half."""
        view = memoryview(data)

        def write_all(part: memoryview) -> None:
            done = 0
            while done < len(part):
                done += os.pwrite(fd, part[done:], offset + done)

        self.perform(
            "write",
            f"{target}@{offset}+{len(view)}",
            lambda: write_all(view),
            tear=lambda: write_all(view[: len(view) // 2]),
        )

    def write_pieces(
        self, fd: int, data: bytes, target: str, piece: int, *, start: int = 0, fsync_each: bool = False
    ) -> None:
        """Writes `data[start:]` at the same offsets in pieces ending on multiples of `piece`.

        Bounded pieces keep the number of crash points (and the work lost to a cut) in proportion
        to the data, not to the number of syscalls.
        """
        view = memoryview(data)
        offset = start
        while offset < len(view):
            end = min(len(view), (offset // piece + 1) * piece)
            self.pwrite(fd, view[offset:end], offset, target)
            if fsync_each:
                self.fsync(fd, target)
            offset = end

    def fsync(self, fd: int, target: str) -> None:
        self.perform("fsync", target, lambda: os.fsync(fd))

    def fsync_dir(self, path: str) -> None:
        """Makes a directory's entries (a create, rename or unlink in it) durable."""

        def sync() -> None:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        self.perform("fsync_dir", path, sync)

    def rename(self, source: str, destination: str) -> None:
        self.perform("rename", f"{source}->{destination}", lambda: os.rename(source, destination))

    def unlink(self, path: str) -> None:
        self.perform("unlink", path, lambda: os.unlink(path))

    def truncate(self, fd: int, length: int, target: str) -> None:
        self.perform("truncate", f"{target}:{length}", lambda: os.ftruncate(fd, length))

    def chmod(self, fd: int, mode: int, uid: int, gid: int, target: str) -> None:
        """Sets owner and mode in one operation (both are one inode update).

        The owner comes first: Linux clears setuid/setgid on chown, even for root, so the mode
        must be set after it.
        """

        def apply() -> None:
            stat = os.fstat(fd)
            if (uid, gid) != (stat.st_uid, stat.st_gid):
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)

        self.perform("chmod", f"{target}:{mode:o}", apply)

    def ioctl(
        self,
        fd: int,
        request: int,
        arg: bytearray | int,
        target: str,
        kind: str = "ioctl",
        tear: Callable[[], None] | None = None,
    ) -> int:
        """A state-changing ioctl (MEMERASE, BLKFLSBUF); returns the ioctl's return value."""
        import fcntl  # only device paths need it

        result = self.perform(kind, f"{target}:ioctl {request:#x}", lambda: fcntl.ioctl(fd, request, arg), tear)
        return int(result) if isinstance(result, int) else 0
