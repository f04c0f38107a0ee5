"""The system root, reached only through directory file descriptors that never follow a symlink.

Why: a package names paths inside the system root, and the device's tree (or an earlier, cut run
of the same package) may hold symlinks. Resolving `lib/x` by path would follow a symlink `lib ->
/etc` out of the root and overwrite a file the update has no business with. So every path is
walked one component at a time with ``O_NOFOLLOW | O_DIRECTORY`` from a descriptor of the root,
and the last component is handled with ``dir_fd`` and ``follow_symlinks=False``; a symlink in the
middle of a path is an error, a symlink at the end is treated as the link itself.

Every change goes through `ota.fsops.FsOps` (its `perform` primitive for the *at()-style calls it
has no named operation for), so the power-loss harness can cut here too. Regular files are always
written as a temporary sibling + fsync + rename + fsync of the directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ota.build import hashing
from ota.build.paths import check_path
from ota.errors import OtaError
from ota.fsops import FsOps

_WRITE_PIECE = 1 << 20
TEMP_PREFIX = ".ota-new."


@dataclass(frozen=True)
class Entry:
    """What is at a path: kind ("file", "dir", "symlink", "other") and its inode metadata."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> Entry:
        if stat.S_ISREG(st.st_mode):
            kind = "file"
        elif stat.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat.S_ISLNK(st.st_mode):
            kind = "symlink"
        else:
            kind = "other"
        return cls(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size)


class SysRoot:
    """A system root directory; paths are manifest paths (relative, '/'-separated)."""

    def __init__(self, root: str, ops: FsOps) -> None:
        self.root = root
        self.ops = ops
        try:
            self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            raise OtaError(root, f"system root: cannot open: {err.strerror}") from None

    def close(self) -> None:
        os.close(self._fd)

    def where(self, path: str) -> str:
        return f"{self.root}/{path}"

    @contextlib.contextmanager
    def parent(self, path: str) -> Iterator[tuple[int, str]]:
        """Yields (descriptor of the parent directory, last component) of `path`.

        Raises OtaError if a parent component is a symlink or not a directory, FileNotFoundError
        if one is missing.
        """
        check_path(path, self.root)
        *dirs, name = path.split("/")
        fd = os.dup(self._fd)
        try:
            for index, part in enumerate(dirs):
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as err:
                    prefix = "/".join(dirs[: index + 1])
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise OtaError(self.where(path), f"parent {prefix!r} is a symlink or not a "
                                                         "directory; refusing to follow it") from None
                    if err.errno == errno.ENOENT:
                        raise FileNotFoundError(err.errno, f"parent {prefix!r} does not exist",
                                                self.where(path)) from None
                    raise OtaError(self.where(path), f"parent {prefix!r}: {err.strerror}") from None
                os.close(fd)
                fd = child
            yield fd, name
        finally:
            os.close(fd)

    # -- reads -----------------------------------------------------------------------------------

    def lstat(self, path: str) -> Entry | None:
        """What is at `path` (the link itself for a symlink), or None if nothing (or no parent).

        Raises OtaError if a parent is a symlink or not a directory: nothing under it is ours.
        """
        try:
            with self.parent(path) as (fd, name):
                return Entry.of(os.stat(name, dir_fd=fd, follow_symlinks=False))
        except FileNotFoundError:
            return None

    def reachable(self, path: str) -> Entry | None:
        """Like `lstat`, but None (not an error) when a parent is a symlink or not a directory."""
        try:
            return self.lstat(path)
        except OtaError:
            return None

    @contextlib.contextmanager
    def _open_file(self, path: str) -> Iterator[int]:
        with self.parent(path) as (dir_fd, name):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as err:
                raise OtaError(self.where(path), f"cannot open: {err.strerror}") from None
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OtaError(self.where(path), "is not a regular file")
                yield fd
            finally:
                os.close(fd)

    def read(self, path: str) -> bytes:
        """The whole file (patching needs source bytes in memory, as applypatch does)."""
        with self._open_file(path) as fd:
            return _read_all(fd)

    def content(self, path: str) -> hashing.ContentInfo:
        """Size and hashes of a regular file, streamed (no whole-file buffer)."""
        with self._open_file(path) as fd:
            return hashing.of_file(f"/proc/self/fd/{fd}")

    def listdir(self, path: str) -> list[str]:
        """Names in directory `path` ("" = the root), sorted; never through a symlink."""
        if not path:
            return sorted(os.listdir(self._fd))
        with self.parent(path) as (dir_fd, name):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                return sorted(os.listdir(fd))
            finally:
                os.close(fd)

    def readlink(self, path: str) -> str:
        with self.parent(path) as (fd, name):
            return os.readlink(name, dir_fd=fd)

    # -- changes ---------------------------------------------------------------------------------

    def write_file(self, path: str, pieces: list[bytes] | tuple[bytes, ...], mode: int, uid: int,
                   gid: int) -> None:
        """Writes `pieces` as the new contents of `path`: temp sibling, fsync, rename, fsync dir."""
        ops = self.ops
        with self.parent(path) as (dir_fd, name):
            temp = TEMP_PREFIX + name
            self._remove_stale(dir_fd, temp, path)
            target = self.where(path)
            fd = ops.perform("create", f"{target}~", lambda: os.open(
                temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd))
            if fd is None:  # a device that "lied" about the create: nothing to write into
                raise OSError(errno.EIO, "create did not happen", target)
            try:
                offset = 0
                for piece in pieces:
                    for start in range(0, len(piece), _WRITE_PIECE):
                        chunk = memoryview(piece)[start:start + _WRITE_PIECE]
                        ops.pwrite(fd, chunk, offset, f"{target}~")
                        offset += len(chunk)
                ops.chmod(fd, mode, uid, gid, f"{target}~")
                ops.fsync(fd, f"{target}~")
            finally:
                os.close(fd)
            ops.perform("rename", f"{target}~->{target}",
                        lambda: os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd))
            ops.fsync(dir_fd, os.path.dirname(target))

    def symlink(self, path: str, link_target: str, uid: int, gid: int) -> None:
        """Makes `path` a symlink to `link_target`, atomically replacing what is there."""
        ops = self.ops
        with self.parent(path) as (dir_fd, name):
            temp = TEMP_PREFIX + name
            self._remove_stale(dir_fd, temp, path)
            target = self.where(path)
            ops.perform("symlink", f"{target}~", lambda: os.symlink(link_target, temp, dir_fd=dir_fd))
            ops.perform("lchown", f"{target}~", lambda: os.chown(
                temp, uid, gid, dir_fd=dir_fd, follow_symlinks=False))
            ops.perform("rename", f"{target}~->{target}",
                        lambda: os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd))
            ops.fsync(dir_fd, os.path.dirname(target))

    def mkdir(self, path: str, mode: int) -> None:
        with self.parent(path) as (dir_fd, name):
            self.ops.perform("mkdir", self.where(path), lambda: os.mkdir(name, mode & 0o700, dir_fd=dir_fd))
            self.ops.fsync(dir_fd, os.path.dirname(self.where(path)))

    def remove(self, path: str) -> None:
        """Removes a file, symlink or (empty) directory at `path`.

        Nothing there is fine, and so is a parent that is not a directory: then there is nothing
        at `path` inside this tree (a symlinked parent is never followed to delete elsewhere).
        """
        if self.reachable(path) is None:
            return
        with self.parent(path) as (dir_fd, name):
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return
            is_dir = stat.S_ISDIR(st.st_mode)
            target = self.where(path)
            self.ops.perform("rmdir" if is_dir else "unlink", target,
                             lambda: os.rmdir(name, dir_fd=dir_fd) if is_dir else os.unlink(name, dir_fd=dir_fd))
            self.ops.fsync(dir_fd, os.path.dirname(target))

    def set_metadata(self, path: str, mode: int, uid: int, gid: int) -> None:
        """Sets mode/uid/gid of a file or directory (owner only for a symlink: Linux has no lchmod)."""
        with self.parent(path) as (dir_fd, name):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            target = self.where(path)
            if stat.S_ISLNK(st.st_mode):
                if (st.st_uid, st.st_gid) != (uid, gid):
                    self.ops.perform("lchown", target, lambda: os.chown(
                        name, uid, gid, dir_fd=dir_fd, follow_symlinks=False))
                return
            if (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid):
                return
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                self.ops.chmod(fd, mode, uid, gid, target)
                self.ops.fsync(fd, target)
            finally:
                os.close(fd)

    def _remove_stale(self, dir_fd: int, temp: str, path: str) -> None:
        """Drops a temp sibling a cut run left behind (never follows it: unlink acts on the link)."""
        try:
            os.stat(temp, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        self.ops.perform("unlink", f"{self.where(path)}~", lambda: os.unlink(temp, dir_fd=dir_fd))


def _read_all(fd: int) -> bytes:
    """Reads a whole open file."""
    pieces = []
    while piece := os.read(fd, _WRITE_PIECE):
        pieces.append(piece)
    return b"".join(pieces)
