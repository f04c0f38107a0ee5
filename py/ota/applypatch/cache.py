"""The cache area: the source backup that makes a torn partition repairable, and freeing space.

Before a partition is overwritten its source image is saved here (`saved.file`, AOSP's name), so
a rerun after power loss can patch from the copy when the partition holds neither image. The
copy is written to a temporary name, fsync'ed, renamed into place and the directory fsync'ed, so
at any instant `saved.file` is either absent, the previous copy, or the complete new one.

Free space (spec §1.8) is the filesystem's free bytes, further capped by an optional byte budget
(a device's cache partition size, simulated on a host). `make_free_space` deletes regular files
directly in the cache directory, oldest name first, but never the backup, never a file named on
the command line, and never a file any process holds open; a minimum reserve must stay free.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from ota.errors import OtaError
from ota.fsops import FsOps

BACKUP_NAME = "saved.file"
DEFAULT_RESERVE = 256 * 1024
DEFAULT_PIECE = 1 << 20


@dataclass(frozen=True)
class FileMeta:
    """Mode and owner to give a file written in place of another."""

    mode: int = 0o644
    uid: int = 0
    gid: int = 0

    @classmethod
    def of(cls, path: str) -> FileMeta:
        info = os.stat(path)
        return cls(stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)


@dataclass
class Cache:
    """A cache directory with an optional byte budget and a reserve that must stay free."""

    directory: str
    limit: int | None = None
    reserve: int = DEFAULT_RESERVE
    piece: int = DEFAULT_PIECE

    @property
    def backup_path(self) -> str:
        return os.path.join(self.directory, BACKUP_NAME)

    def free_bytes(self) -> int:
        """Bytes that may still be written here."""
        try:
            info = os.statvfs(self.directory)
        except OSError as err:
            raise OtaError(self.directory, f"cannot use cache directory: {err.strerror}") from None
        free = info.f_bavail * info.f_frsize
        if self.limit is not None:
            free = min(free, max(0, self.limit - _bytes_used(self.directory)))
        return free

    def make_free_space(self, needed: int, ops: FsOps, protect: Iterable[str] = ()) -> None:
        """Ensures `needed` bytes plus the reserve are free, deleting what may be deleted."""
        if self.free_bytes() >= needed + self.reserve:
            return
        keep = {os.path.realpath(p) for p in protect} | {os.path.realpath(self.backup_path),
                                                          os.path.realpath(self.backup_path + ".tmp")}
        held = _files_held_open()
        deleted = False
        for name in sorted(os.listdir(self.directory)):
            path = os.path.realpath(os.path.join(self.directory, name))
            if path in keep or path in held or not os.path.isfile(path) or os.path.islink(
                    os.path.join(self.directory, name)):
                continue
            ops.unlink(path)
            deleted = True
            if self.free_bytes() >= needed + self.reserve:
                break
        if deleted:
            ops.fsync_dir(self.directory)
        free = self.free_bytes()
        if free < needed + self.reserve:
            raise OtaError(self.directory, f"cache full: need {needed} bytes plus a {self.reserve}-byte reserve, "
                                           f"only {free} free after deleting what may be deleted")

    def save_backup(self, data: bytes, ops: FsOps, meta: FileMeta = FileMeta()) -> None:
        """Saves `data` as the backup durably, then reads it back to prove the copy is good."""
        temporary = self.backup_path + ".tmp"
        try:
            fd = ops.create(temporary)
            try:
                ops.write_pieces(fd, data, temporary, self.piece)
                ops.chmod(fd, meta.mode, meta.uid, meta.gid, temporary)
                ops.fsync(fd, temporary)
            finally:
                os.close(fd)
            ops.rename(temporary, self.backup_path)
            ops.fsync_dir(self.directory)
        except OSError as err:
            raise OtaError(self.backup_path, f"cannot save the source backup: {err.strerror or err}") from None
        if self.load_backup() != data:
            raise OtaError(self.backup_path, "source backup does not read back as written")

    def load_backup(self) -> bytes | None:
        try:
            with open(self.backup_path, "rb") as stream:
                return stream.read()
        except OSError:
            return None

    def remove_backup(self, ops: FsOps) -> None:
        if os.path.lexists(self.backup_path):
            ops.unlink(self.backup_path)
            ops.fsync_dir(self.directory)


def _bytes_used(directory: str) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _files_held_open() -> set[str]:
    """Real paths of every file some process has open (from /proc/<pid>/fd)."""
    held = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return held
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("/"):
                held.add(os.path.realpath(target) if os.path.exists(target) else target)
    return held
