"""The system root, reached only through directory file descriptors that never follow a symlink.

Why: a package names paths inside the system root, and the device's tree (or an earlier, cut run
of the same package) may hold symlinks. Resolving `lib/x` by path would follow a symlink `lib ->
/etc` out of the root and overwrite a file the update has no business with. So every path is
walked one component at a time with ``O_NOFOLLOW | O_DIRECTORY`` from a descriptor of the root,
and the last component is handled with ``dir_fd`` and ``follow_symlinks=False``; a symlink in the
middle of a path is an error, a symlink at the end is treated as the link itself. Every name
reaches the kernel as its bytes (`paths.to_bytes`): a package path may hold any byte but NUL and
'/' (py/ota/format/paths.py), and the file made is exactly the name the manifest lists.

Every change goes through `ota.device.fsops.FsOps` (its `perform` primitive for the *at()-style calls it
has no named operation for), so the power-loss harness can cut here too.

Scratch space: a file or symlink is made in the reserved directory `SCRATCH_DIR` under the root
(py/ota/format/paths.py; no package path can name it), under a name generated from its path,
fsync'ed, then renamed into its directory with renameat between the two directory descriptors,
and the directory fsync'ed. So the updater never writes a name beside the target: whatever names
the tree holds (`x.patch`, `.ota-new.x`, ...) are the package's, never scratch. A scratch entry a
cut run left is replaced by the next write of the same path, and `drop_scratch` removes the
directory when the update is done. The root and every directory in it must be one filesystem
(rename cannot cross filesystems), as a system partition is.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ota.device.applypatch.cache import FileMeta
from ota.device.fsops import FsOps
from ota.errors import OtaError
from ota.format import hashing
from ota.format.paths import SCRATCH_DIR, check_path, escape, from_bytes, to_bytes

_WRITE_PIECE = 1 << 20
# The directory mke2fs makes at an ext4 root and e2fsck fills with recovered inodes
# (docs/ota_apply.md, "The file system's lost+found").
LOST_FOUND = "lost+found"


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

    @property
    def shown(self) -> str:
        """The kind as an error message says it: `is <shown>`."""
        return _SHOWN_KINDS[self.kind]


_SHOWN_KINDS = {
    "file": "a regular file",
    "dir": "a directory",
    "symlink": "a symlink",
    "other": "a special file (FIFO, socket or device)",
}


class SysRoot:
    """A system root directory; paths are manifest paths (relative, '/'-separated)."""

    def __init__(self, root: str, ops: FsOps) -> None:
        self.root = root
        self.ops = ops
        self._scratch_fd: int | None = None
        try:
            self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            raise OtaError(root, f"system root: cannot open: {err.strerror}") from None

    def close(self) -> None:
        if self._scratch_fd is not None:
            os.close(self._scratch_fd)
            self._scratch_fd = None
        os.close(self._fd)

    def where(self, path: str) -> str:
        """`path` under the root for a message: one line, its bytes `escape`d."""
        return f"{self.root}/{escape(path)}"

    @contextlib.contextmanager
    def parent(self, path: str) -> Iterator[tuple[int, bytes]]:
        """Yields (descriptor of the parent directory, last component's bytes) of `path`.

        Raises OtaError if a parent component is a symlink or not a directory, FileNotFoundError
        if one is missing.
        """
        check_path(path, self.root)
        *dirs, name = path.split("/")
        fd = os.dup(self._fd)
        try:
            for index, part in enumerate(dirs):
                try:
                    child = os.open(to_bytes(part), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as err:
                    prefix = escape("/".join(dirs[: index + 1]))
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise OtaError(
                            self.where(path),
                            f"parent '{prefix}' is a symlink or not a directory; refusing to follow it",
                        ) from None
                    if err.errno == errno.ENOENT:
                        raise FileNotFoundError(
                            err.errno, f"parent '{prefix}' does not exist", self.where(path)
                        ) from None
                    raise OtaError(self.where(path), f"parent '{prefix}': {err.strerror}") from None
                os.close(fd)
                fd = child
            yield fd, to_bytes(name)
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

    def has_own_lost_found(self, named: dict[str, object] | set[str]) -> bool:
        """True if the root holds a real directory `LOST_FOUND` (lstat: a symlink, file or FIFO of
        that name is not it) and no operation in `named` names it: it is then the file system's,
        like the scratch directory, and never checked, counted, written or removed. Its contents
        are never read (e2fsck may leave anything there)."""
        if LOST_FOUND in named:
            return False
        entry = self.lstat(LOST_FOUND)
        return entry is not None and entry.kind == "dir"

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
        """Names in directory `path` ("" = the root), sorted; never through a symlink.

        The root's list leaves out `SCRATCH_DIR`: it is the updater's, not part of the tree.
        """
        if not path:
            return sorted(name for name in _names(self._fd) if name != SCRATCH_DIR)
        with self.parent(path) as (dir_fd, name):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                return sorted(_names(fd))
            finally:
                os.close(fd)

    def readlink(self, path: str) -> bytes:
        """The link's target as its bytes (what a manifest's `symlink_target` holds)."""
        with self.parent(path) as (fd, name):
            return os.readlink(name, dir_fd=fd)

    # -- changes ---------------------------------------------------------------------------------

    def file(self, path: str) -> RootFile:
        """The regular file at `path` as applypatch's file protocol patches it (`RootFile`)."""
        return RootFile(self, path)

    def write_file(self, path: str, pieces: list[bytes] | tuple[bytes, ...], mode: int, uid: int, gid: int) -> None:
        """Writes `pieces` as the new contents of `path`: a scratch file, fsync, rename in, fsync dir."""
        ops = self.ops
        with self.parent(path) as (dir_fd, name):
            scratch_fd, temp = self._fresh_scratch(path)
            target = self.where(path)
            fd = ops.perform(
                "create",
                f"{target}~",
                lambda: os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=scratch_fd),
            )
            if fd is None:  # a device that "lied" about the create: nothing to write into
                raise OSError(errno.EIO, "create did not happen", target)
            try:
                try:
                    offset = 0
                    for piece in pieces:
                        for start in range(0, len(piece), _WRITE_PIECE):
                            chunk = memoryview(piece)[start : start + _WRITE_PIECE]
                            ops.pwrite(fd, chunk, offset, f"{target}~")
                            offset += len(chunk)
                    ops.chmod(fd, mode, uid, gid, f"{target}~")
                    ops.fsync(fd, f"{target}~")
                finally:
                    os.close(fd)
            except OSError:
                self._remove_at(scratch_fd, temp, f"{target}~")  # e.g. ENOSPC: give the space back
                raise
            self._rename_in(scratch_fd, temp, dir_fd, name, target)

    def symlink(self, path: str, link_target: bytes, uid: int, gid: int) -> None:
        """Makes `path` a symlink to `link_target`, atomically replacing what is there."""
        ops = self.ops
        with self.parent(path) as (dir_fd, name):
            scratch_fd, temp = self._fresh_scratch(path)
            target = self.where(path)
            ops.perform("symlink", f"{target}~", lambda: os.symlink(link_target, temp, dir_fd=scratch_fd))
            ops.perform(
                "lchown", f"{target}~", lambda: os.chown(temp, uid, gid, dir_fd=scratch_fd, follow_symlinks=False)
            )
            self._rename_in(scratch_fd, temp, dir_fd, name, target)

    def drop_scratch(self) -> None:
        """Removes the scratch directory and whatever a cut run left in it (never following a link)."""
        try:
            os.stat(SCRATCH_DIR, dir_fd=self._fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if self._scratch_fd is not None:
            os.close(self._scratch_fd)
            self._scratch_fd = None
        self._remove_at(self._fd, SCRATCH_DIR, self.where(SCRATCH_DIR))
        self.ops.fsync(self._fd, self.root)

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
            self.ops.perform(
                "rmdir" if is_dir else "unlink",
                target,
                lambda: os.rmdir(name, dir_fd=dir_fd) if is_dir else os.unlink(name, dir_fd=dir_fd),
            )
            self.ops.fsync(dir_fd, os.path.dirname(target))

    def set_metadata(self, path: str, mode: int, uid: int, gid: int) -> None:
        """Sets mode/uid/gid of a file or directory (owner only for a symlink: Linux has no lchmod).

        A regular file that shares its inode with another name (a hard link, perhaps from outside
        the root) is not changed in place, which would change that name too: it gets its own copy,
        written like any file (`write_file`), with the new mode and owner.
        """
        with self.parent(path) as (dir_fd, name):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            target = self.where(path)
            if stat.S_ISLNK(st.st_mode):
                if (st.st_uid, st.st_gid) != (uid, gid):
                    self.ops.perform(
                        "lchown", target, lambda: os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
                    )
                    self.ops.fsync(dir_fd, os.path.dirname(target))  # a symlink has no fd to fsync
                return
            if (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid):
                return
            if not (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    self.ops.chmod(fd, mode, uid, gid, target)
                    self.ops.fsync(fd, target)
                finally:
                    os.close(fd)
                return
        self.write_file(path, [self.read(path)], mode, uid, gid)

    def _fresh_scratch(self, path: str) -> tuple[int, bytes]:
        """(scratch directory descriptor, the scratch name of `path`), nothing at that name yet.

        The name is a hash of the path, so a rerun finds what a cut run left for the same path.
        """
        scratch_fd = self._scratch_dir()
        temp = hashlib.sha256(to_bytes(path)).hexdigest().encode("ascii")
        try:
            os.stat(temp, dir_fd=scratch_fd, follow_symlinks=False)
        except FileNotFoundError:
            return scratch_fd, temp
        self._remove_at(scratch_fd, temp, f"{self.where(path)}~")
        return scratch_fd, temp

    def _scratch_dir(self) -> int:
        """The scratch directory's descriptor, made on first use.

        Anything else at the reserved name (a file or symlink: only a damaged or tampered device
        has one) is removed, never followed.
        """
        if self._scratch_fd is not None:
            return self._scratch_fd
        where = self.where(SCRATCH_DIR)
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        try:
            self._scratch_fd = os.open(SCRATCH_DIR, flags, dir_fd=self._fd)
            return self._scratch_fd
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                self._remove_at(self._fd, SCRATCH_DIR, where)
            elif err.errno != errno.ENOENT:
                raise OtaError(where, f"scratch directory: {err.strerror}") from None
        self.ops.perform("mkdir", where, lambda: os.mkdir(SCRATCH_DIR, 0o700, dir_fd=self._fd))
        self.ops.fsync(self._fd, self.root)
        self._scratch_fd = os.open(SCRATCH_DIR, flags, dir_fd=self._fd)
        return self._scratch_fd

    def _rename_in(self, scratch_fd: int, temp: bytes, dir_fd: int, name: bytes, target: str) -> None:
        """Moves a finished scratch entry over `name` in `dir_fd` (renameat), then fsyncs the directory."""
        self.ops.perform(
            "rename", f"{target}~->{target}", lambda: os.rename(temp, name, src_dir_fd=scratch_fd, dst_dir_fd=dir_fd)
        )
        self.ops.fsync(dir_fd, os.path.dirname(target))

    def _remove_at(self, dir_fd: int, name: str | bytes, shown: str) -> None:
        """Removes `name` in `dir_fd` and, if it is a directory, everything under it; never follows a link."""
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            self.ops.perform("unlink", shown, lambda: os.unlink(name, dir_fd=dir_fd))
            return
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            for child in sorted(_names(fd)):
                self._remove_at(fd, to_bytes(child), f"{shown}/{escape(child)}")
        finally:
            os.close(fd)
        self.ops.perform("rmdir", shown, lambda: os.rmdir(name, dir_fd=dir_fd))


@dataclass(frozen=True)
class RootFile:
    """A regular file of a system root as applypatch's file protocol reads and replaces it
    (`ota.device.applypatch.protocol.TargetFile`).

    Why: ota_apply patches system files with applypatch's engine and order of operations, but
    every access goes through the root's no-follow directory descriptors: the directory that is
    checked is the one written into, so a parent swapped for a symlink at any moment refuses the
    step or is never followed; the new file is made in the scratch directory, never beside it.
    """

    root: SysRoot
    path: str

    @property
    def where(self) -> str:
        return self.root.where(self.path)

    @property
    def directory(self) -> str:
        """Where free space is measured: the root (the tree is one filesystem)."""
        return self.root.root

    def read(self) -> bytes | None:
        """The file's bytes, None if nothing is there; OtaError if something else is there."""
        entry = self.root.lstat(self.path)
        if entry is None:
            return None
        if entry.kind != "file":
            raise OtaError(self.where, f"is {entry.shown}, not the regular file to patch")
        return self.root.read(self.path)

    def meta(self) -> FileMeta:
        entry = self.root.lstat(self.path)
        if entry is None:
            raise OtaError(self.where, "cannot stat: the file is missing")
        return FileMeta(entry.mode, entry.uid, entry.gid)

    def replace(self, data: bytes, meta: FileMeta) -> None:
        self.root.write_file(self.path, [data], meta.mode, meta.uid, meta.gid)

    def remove(self) -> None:
        self.root.remove(self.path)

    def discard_scratch(self, target: bytes) -> None:
        """Nothing to do: a cut run's scratch sits in the scratch directory, which the update drops."""


def _names(fd: int) -> list[str]:
    """The names in an open directory, each the `str` of its bytes (py/ota/format/paths.py)."""
    return [from_bytes(os.fsencode(name)) for name in os.listdir(fd)]


def _read_all(fd: int) -> bytes:
    """Reads a whole open file."""
    pieces = []
    while piece := os.read(fd, _WRITE_PIECE):
        pieces.append(piece)
    return b"".join(pieces)
