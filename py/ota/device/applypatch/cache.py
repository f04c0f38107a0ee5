"""The cache area: the source backup that makes a torn partition repairable, and freeing space.

Before a partition is overwritten its source image is saved here (`saved.file`, AOSP's name), so
a rerun after power loss can patch from the copy when the partition holds neither image. The
copy is written to a temporary name, fsync'ed, renamed into place and the directory fsync'ed, so
at any instant `saved.file` is either absent, the previous copy, or the complete new one.

Recovery state (one rule, `is_recovery_state`): every name in the cache directory that starts
with `saved.file` (the backup and its temporary) or `ota_` (ota_apply's journal, its temporary
and the staged-data directory) belongs to an update that may still have to be finished. The
cleaner never frees such a name, whoever calls it (`applypatch -s`, applypatch's patch mode,
ota_apply), so no caller has to remember a list of what to keep.

Free space (docs/applypatch.md, "Cache budget") is the filesystem's free bytes, further capped by
an optional byte budget (a device's cache partition size, simulated on a host). The backup slot
holds one backup at a time: a save replaces the old backup and any stale temporary, so their
bytes count as room for the save. `make_free_space` decides first whether deleting every
freeable file would be enough, and refuses without deleting anything if not; freeable are the
regular files directly in the cache directory that are not recovery state, not named on the
command line and not held open by any process. A minimum reserve must stay free.

Every failure here is one OtaError naming the path and the errno (`ota.io.fileio.os_problem`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ota.device.applypatch.spec import Digest, first_match
from ota.device.fsops import FsOps
from ota.errors import OtaError
from ota.io.fileio import MAX_INPUT_BYTES, os_problem, read_bounded

BACKUP_NAME = "saved.file"
BACKUP_TEMP_NAME = BACKUP_NAME + ".tmp"
# Name prefixes of everything kept in the cache to finish an interrupted update (module doc).
RECOVERY_PREFIXES = (BACKUP_NAME, "ota_")
DEFAULT_RESERVE = 256 * 1024
DEFAULT_PIECE = 1 << 20


def is_recovery_state(name: str) -> bool:
    """Whether `name` (an entry directly in the cache directory) is kept to finish an update."""
    return name.startswith(RECOVERY_PREFIXES)


@contextlib.contextmanager
def exclusive(directory: str) -> Iterator[None]:
    """Holds the cache directory's exclusive lock (flock) for one update, or refuses at once.

    Two updaters on one device (ota_apply, applypatch's patch, flash and -s modes) would share the
    journal, the staged data and the one backup slot: one's clean-up could remove the backup the
    other is about to need after a cut, or both write one partition. The lock is the kernel's and
    dies with its process, so a killed or power-cut run never leaves it held. A cache directory
    that cannot be opened is not locked: the step that needs it reports why, as before.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OtaError(
                directory,
                "another update (ota_apply or applypatch) is using this cache now; let it finish, then rerun",
            ) from None
        yield
    finally:
        os.close(fd)


def cache_error(path: str, action: str, err: OSError) -> OtaError:
    """The one-line error for a failed cache operation: path, action, errno."""
    return OtaError(path, f"{action}: {os_problem(err)}")


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

    @property
    def backup_temp_path(self) -> str:
        return os.path.join(self.directory, BACKUP_TEMP_NAME)

    # -- space --------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Bytes that may still be written here."""
        try:
            info = os.statvfs(self.directory)
        except OSError as err:
            raise cache_error(self.directory, "cannot use the cache directory", err) from None
        free = info.f_bavail * info.f_frsize
        if self.limit is not None:
            free = min(free, max(0, self.limit - _bytes_used(self.directory)))
        return free

    def slot_bytes(self) -> int:
        """Bytes of the backup slot (backup and stale temporary), which the next save replaces."""
        return sum(_size(path) for path in (self.backup_path, self.backup_temp_path))

    def freeable(self, protect: Iterable[str] = ()) -> list[tuple[str, int]]:
        """(path, size) of every file the cleaner may delete, in the order it deletes them."""
        keep = {os.path.realpath(p) for p in protect}
        held = _files_held_open()
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as err:
            raise cache_error(self.directory, "cannot list the cache directory", err) from None
        found = []
        for name in names:
            path = os.path.join(self.directory, name)
            if is_recovery_state(name):
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue  # gone meanwhile
            real = os.path.realpath(path)
            if stat.S_ISREG(info.st_mode) and real not in keep and real not in held:
                found.append((path, info.st_size))
        return found

    def make_free_space(self, needed: int, ops: FsOps, protect: Iterable[str] = (), *, room: int = 0) -> None:
        """Ensures `needed` bytes plus the reserve are free, deleting what may be deleted.

        `room` is what the caller will free itself before writing (a save's replaced slot). Refuses
        before deleting anything when even deleting every freeable file would not be enough.
        """
        free = self.free_bytes() + room
        if free >= needed + self.reserve:
            return
        candidates = self.freeable(protect)
        freeable = sum(size for _, size in candidates)
        if free + freeable < needed + self.reserve:
            replaced = f" (counting {room} the save replaces)" if room else ""
            raise OtaError(
                self.directory,
                f"not enough cache space: the update needs {needed} bytes plus a "
                f"{self.reserve}-byte reserve, {free} are free{replaced} and at most "
                f"{freeable} could be freed",
            )
        for path, _ in candidates:
            self._unlink(path, ops, "cannot free")
            if self.free_bytes() + room >= needed + self.reserve:
                break
        self._sync(ops)

    # -- the backup ---------------------------------------------------------------------------

    def save_backup(self, data: bytes, ops: FsOps, meta: FileMeta = FileMeta(), protect: Iterable[str] = ()) -> None:
        """Saves `data` as the backup durably, then reads it back to prove the copy is good.

        Space: the old backup and a stale temporary are replaced, so they count as room; the save
        removes them before writing so the cache never holds two backups. A backup that already
        holds `data` with `meta` is kept as it is (a rerun after a cut right after the save).
        """
        if self._holds(data, meta):
            return
        self.make_free_space(len(data), ops, protect, room=self.slot_bytes())
        temporary = self.backup_temp_path
        stale = [path for path in (temporary, self.backup_path) if os.path.lexists(path)]
        for path in stale:
            self._unlink(path, ops, "cannot replace the old backup")
        if stale:
            self._sync(ops)
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
            raise cache_error(temporary, "cannot save the source backup", err) from None
        if self.load_backup() != data:
            raise OtaError(self.backup_path, "source backup does not read back as written")

    def _holds(self, data: bytes, meta: FileMeta) -> bool:
        try:
            info = os.lstat(self.backup_path)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(data) or os.path.lexists(self.backup_temp_path):
            return False
        if (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) != (meta.mode, meta.uid, meta.gid):
            return False
        return self.load_backup() == data

    def claim_slot(self, sources: Iterable[Digest]) -> None:
        """Refuses to go on if the backup belongs to another update: it matches none of `sources`
        (the sources of what the caller may back up). Replacing it would throw away the only way
        to finish that update, so the operator decides (docs/applypatch.md, "Cache budget")."""
        backup = self.load_backup()
        if backup is not None and first_match(backup, sources) is None:
            raise OtaError(
                self.backup_path,
                "holds the source backup of another update (it matches no source "
                "this update patches); finish that update first, or delete the "
                "file if none is pending",
            )

    def load_backup(self) -> bytes | None:
        """The backup's bytes; None only if there is none. An unreadable backup is an error, not
        "no copy": the caller must not conclude the update cannot be finished from it."""
        if not os.path.lexists(self.backup_path):
            return None
        try:
            return read_bounded(self.backup_path, MAX_INPUT_BYTES)
        except OSError as err:
            raise cache_error(self.backup_path, "cannot read the source backup", err) from None

    def remove_backup(self, ops: FsOps) -> None:
        """Removes the backup and any stale temporary (an update is finished with them)."""
        present = [path for path in (self.backup_path, self.backup_temp_path) if os.path.lexists(path)]
        for path in present:
            self._unlink(path, ops, "cannot remove the source backup")
        if present:
            self._sync(ops)

    # -- helpers ------------------------------------------------------------------------------

    def _unlink(self, path: str, ops: FsOps, action: str) -> None:
        try:
            ops.unlink(path)
        except OSError as err:
            raise cache_error(path, action, err) from None

    def _sync(self, ops: FsOps) -> None:
        try:
            ops.fsync_dir(self.directory)
        except OSError as err:
            raise cache_error(self.directory, "cannot sync the cache directory", err) from None

    def check_writable(self) -> None:
        """Refuses, before anything is written, a cache that cannot be written at all."""
        try:
            read_only = os.statvfs(self.directory).f_flag & os.ST_RDONLY
        except OSError as err:
            raise cache_error(self.directory, "cannot use the cache directory", err) from None
        if read_only:
            raise cache_error(self.directory, "cannot write the cache", OSError(errno.EROFS, os.strerror(errno.EROFS)))
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise cache_error(
                self.directory, "cannot write the cache", OSError(errno.EACCES, os.strerror(errno.EACCES))
            )


def _size(path: str) -> int:
    try:
        info = os.lstat(path)
    except OSError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _bytes_used(directory: str) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            total += _size(os.path.join(root, name))
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
