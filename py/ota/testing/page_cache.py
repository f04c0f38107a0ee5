"""What a real power cut loses: every change not yet made durable by an fsync.

Why: cutting the *process* (ota.testing.faults' default) leaves every write in the kernel's page
cache, which then reaches the disk; a missing fsync is invisible. A real power cut loses

* every write (and truncate, chmod, chown) to a file since the last fsync of that file;
* every directory entry change (create, rename, unlink, mkdir, rmdir, symlink, link) since the
  last fsync of that directory.

`PageCache` keeps an undo record for each such change while an operation runs (`watch`) and, on
the cut (`lose`), rolls back every change no later fsync made durable: all of them (the worst
case, `LossModel()`), or a seeded random part (`LossModel(seed)`: each file keeps a random subset
of its unsynced writes, each directory a random prefix of its entry changes, as a journaling
filesystem commits them in order).

How it sees the changes: operations are lambdas over the `os` module (named FsOps methods and
the *at()-style calls sysroot passes to `perform`, with `dir_fd`), so during an operation the
state-changing `os` functions are wrapped; each wrapper notes the state it is about to change,
then calls the real function. Files and directories are identified by inode, and held open by
descriptor, so a rollback finds them after a rename and can restore an unlinked one. A symlink
cannot be fsync'ed: its owner change counts as an entry change of its directory.

Limits: only changes made through `os` during an FsOps operation are modelled (a write outside
FsOps is durable at once); raw devices without a page cache (the NAND simulator's chip image)
are named in `raw_paths` and are durable at once; a lost write is rolled back whole (no torn
sectors: that is what ``tear:N`` is for).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Key = tuple[int, int]  # (st_dev, st_ino)

_WRAPPED = (
    "open",
    "pwrite",
    "write",
    "ftruncate",
    "fchmod",
    "fchown",
    "chmod",
    "chown",
    "rename",
    "replace",
    "unlink",
    "remove",
    "rmdir",
    "mkdir",
    "symlink",
    "link",
    "fsync",
    "fdatasync",
)


class ModelError(Exception):
    """The harness met a change it cannot model (a test bug, never a device outcome)."""


@dataclass(frozen=True)
class LossModel:
    """Which unsynced changes a cut loses: all (seed None, the worst case) or a seeded random part."""

    seed: int | None = None

    def __str__(self) -> str:
        return "lossy (worst case)" if self.seed is None else f"lossy (seed {self.seed})"


@dataclass
class _Entry:
    """What a directory entry held before a change: kind, inode, and what restoring it needs."""

    kind: str  # "file", "dir", "symlink"
    key: Key
    mode: int
    uid: int
    gid: int
    link_target: str = ""


@dataclass
class _EntryChange:
    """One directory change (a rename in one directory changes two names at once)."""

    before: dict[str, _Entry | None]


@dataclass
class _DataChange:
    """Old bytes of a file range (or old owner/mode) and its old size, for rollback."""

    offset: int = 0
    old: bytes = b""
    size: int = -1  # old size of a regular file; -1: a device (no size to restore)
    meta: tuple[int, int, int] | None = None  # (mode, uid, gid)


@dataclass
class PageCache:
    """Undo records of the changes not yet durable, per inode and per directory (see module doc)."""

    model: LossModel
    raw_paths: tuple[str, ...] = ()
    _files: dict[Key, list[_DataChange]] = field(default_factory=dict)
    _dirs: dict[Key, list[_EntryChange]] = field(default_factory=dict)
    _held: dict[Key, int] = field(default_factory=dict)
    _real: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.raw_paths = tuple(os.path.realpath(path) for path in self.raw_paths)
        self._real = {name: getattr(os, name) for name in _WRAPPED}

    # -- watching an operation ----------------------------------------------------------------

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """While the block runs, the state-changing `os` functions note what they change."""
        for name in _WRAPPED:
            setattr(os, name, getattr(self, f"_{name}"))
        try:
            yield
        finally:
            for name, function in self._real.items():
                setattr(os, name, function)

    # -- the power cut ------------------------------------------------------------------------

    def lose(self) -> None:
        """Rolls back every change no fsync made durable (all, or the model's random part)."""
        rng = random.Random(self.model.seed) if self.model.seed is not None else None
        for key, changes in self._files.items():
            lost = [c for c in changes if rng is None or rng.random() < 0.5]
            for change in reversed(lost):
                self._undo_data(self._held[key], change)
        self._undo_entries(rng)
        self.close()

    def close(self) -> None:
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()
        self._files.clear()
        self._dirs.clear()

    def _undo_data(self, fd: int, change: _DataChange) -> None:
        if change.meta is not None:
            mode, uid, gid = change.meta
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            return
        if change.old:
            os.pwrite(fd, change.old, change.offset)
        if change.size >= 0:
            os.ftruncate(fd, change.size)

    def _undo_entries(self, rng: random.Random | None) -> None:
        """Puts back what each directory held at its last fsync (or before its first lost change).

        A directory removed by the rollback of its parent is gone with its entries; one restored
        by it is recreated first, so directories are done in rounds until none is left whose
        descriptor is still alive.
        """
        wanted: dict[Key, dict[str, _Entry | None]] = {}
        for key, changes in self._dirs.items():
            kept = rng.randrange(len(changes) + 1) if rng is not None else 0
            names: dict[str, _Entry | None] = {}
            for change in changes[kept:]:
                for name, before in change.before.items():
                    names.setdefault(name, before)
            wanted[key] = names
        moved: dict[Key, int] = {}  # a directory recreated by the rollback: its new descriptor
        pending = dict(wanted)
        while pending:
            ready = [key for key in pending if _alive(moved.get(key, self._held[key]))]
            if not ready:
                break  # the rest hung below directories the cut took away
            for key in ready:
                dir_fd = moved.get(key, self._held[key])
                for name, before in sorted(pending.pop(key).items()):
                    self._restore(dir_fd, name, before, moved)
        for fd in moved.values():
            os.close(fd)

    def _restore(self, dir_fd: int, name: str, before: _Entry | None, moved: dict[Key, int]) -> None:
        try:
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if (
            now is not None
            and before is not None
            and (now.st_dev, now.st_ino) == before.key
            and (before.kind != "symlink" or (now.st_uid, now.st_gid) == (before.uid, before.gid))
        ):
            return
        if now is not None:
            if stat.S_ISDIR(now.st_mode):
                shutil.rmtree(name, dir_fd=dir_fd)
            else:
                os.unlink(name, dir_fd=dir_fd)
        if before is None:
            return
        if before.kind == "symlink":
            os.symlink(before.link_target, name, dir_fd=dir_fd)
            os.chown(name, before.uid, before.gid, dir_fd=dir_fd, follow_symlinks=False)
        elif before.kind == "dir":
            os.mkdir(name, 0o700, dir_fd=dir_fd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.fchown(fd, before.uid, before.gid)
            os.fchmod(fd, before.mode)
            moved[before.key] = fd
        else:
            self._restore_file(dir_fd, name, before)

    def _restore_file(self, dir_fd: int, name: str, before: _Entry) -> None:
        """Links the inode back if it still has a name, else rewrites its bytes under `name`."""
        held = self._held[before.key]
        try:
            os.link(f"/proc/self/fd/{held}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
            return
        except FileNotFoundError:
            pass  # the inode has no name left: recreate it from the descriptor
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            offset = 0
            while piece := os.pread(held, 1 << 20, offset):
                os.pwrite(fd, piece, offset)
                offset += len(piece)
            os.fchown(fd, before.uid, before.gid)
            os.fchmod(fd, before.mode)
        finally:
            os.close(fd)

    # -- noting changes -----------------------------------------------------------------------

    def _is_raw(self, path: str) -> bool:
        return any(path == raw or path.startswith(raw + ".") for raw in self.raw_paths)

    def _hold_fd(self, fd: int) -> Key | None:
        """The inode behind `fd`, held open for rollback; None for a raw device."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key not in self._held:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if self._is_raw(path):
                return None
            flags = os.O_RDONLY | os.O_DIRECTORY if stat.S_ISDIR(st.st_mode) else os.O_RDWR
            self._held[key] = self._open_held(f"/proc/self/fd/{fd}", flags, None)
        return key

    def _note_data(self, fd: int, offset: int, length: int) -> None:
        key = self._hold_fd(fd)
        if key is None:
            return
        held = self._held[key]
        st = os.fstat(held)
        size = st.st_size if stat.S_ISREG(st.st_mode) else -1
        old = os.pread(held, length, offset) if length > 0 else b""
        self._files.setdefault(key, []).append(_DataChange(offset, old, size))

    def _note_meta(self, fd: int) -> None:
        key = self._hold_fd(fd)
        if key is None:
            return
        st = os.fstat(self._held[key])
        self._files.setdefault(key, []).append(_DataChange(meta=(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)))

    def _parent(self, path: Any, dir_fd: int | None) -> tuple[Key, int, str] | None:
        """(key, held descriptor, name) of the directory holding `path`; None for a raw path."""
        path = os.fsdecode(path)
        parent, name = os.path.split(path)
        fd = self._real["open"](parent or ".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
        try:
            if self._is_raw(os.path.join(os.readlink(f"/proc/self/fd/{fd}"), name)):
                return None
            key = self._hold_fd(fd)
        finally:
            os.close(fd)
        assert key is not None
        return key, self._held[key], name

    def _entry(self, dir_fd: int, name: str) -> _Entry | None:
        """What `name` holds now (held open if a file or directory), or None."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        key = (st.st_dev, st.st_ino)
        meta = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        if stat.S_ISLNK(st.st_mode):
            return _Entry("symlink", key, *meta, link_target=os.readlink(name, dir_fd=dir_fd))
        if stat.S_ISDIR(st.st_mode):
            kind, flags = "dir", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        elif stat.S_ISREG(st.st_mode):
            kind, flags = "file", os.O_RDWR | os.O_NOFOLLOW
        else:
            raise ModelError(f"cannot model a change of {name!r}: neither file, directory nor symlink")
        if key not in self._held:
            self._held[key] = self._open_held(name, flags, dir_fd)
        return _Entry(kind, key, *meta)

    def _open_held(self, path: str, flags: int, dir_fd: int | None) -> int:
        """Opens an inode to hold; read-only where it cannot be written (then nothing writes it)."""
        try:
            return self._real["open"](path, flags, dir_fd=dir_fd)
        except OSError as err:
            if not flags & os.O_RDWR or err.errno not in (errno.EROFS, errno.EACCES, errno.ETXTBSY):
                raise
            return self._real["open"](path, flags & ~os.O_RDWR, dir_fd=dir_fd)

    def _changing(self, *names: tuple[Any, int | None]) -> Callable[[], None] | None:
        """Notes the entries about to change; returns the commit to run once the change succeeded."""
        by_dir: dict[Key, _EntryChange] = {}
        for path, dir_fd in names:
            located = self._parent(path, dir_fd)
            if located is None:
                continue
            key, held, name = located
            change = by_dir.setdefault(key, _EntryChange({}))
            change.before.setdefault(name, self._entry(held, name))
        if not by_dir:
            return None

        def commit() -> None:
            for key, change in by_dir.items():
                self._dirs.setdefault(key, []).append(change)

        return commit

    def _call(self, name: str, commit: Callable[[], None] | None, *args: Any, **kwargs: Any) -> Any:
        result = self._real[name](*args, **kwargs)
        if commit is not None:
            commit()
        return result

    # -- the wrapped os functions ---------------------------------------------------------------

    def _open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if not flags & (os.O_CREAT | os.O_TRUNC):
            return self._real["open"](path, flags, mode, dir_fd=dir_fd)
        commit = None
        if flags & os.O_CREAT:
            commit = self._changing((path, dir_fd))
        fd = self._real["open"](path, flags & ~os.O_TRUNC, mode, dir_fd=dir_fd)
        if flags & os.O_TRUNC:
            size = os.fstat(fd).st_size
            self._note_data(fd, 0, size)
            self._real["ftruncate"](fd, 0)
        if commit is not None:
            commit()
        return fd

    def _pwrite(self, fd: int, data: Any, offset: int) -> int:
        self._note_data(fd, offset, len(data))
        return self._real["pwrite"](fd, data, offset)

    def _write(self, fd: int, data: Any) -> int:
        self._note_data(fd, os.lseek(fd, 0, os.SEEK_CUR), len(data))
        return self._real["write"](fd, data)

    def _ftruncate(self, fd: int, length: int) -> None:
        size = os.fstat(fd).st_size
        self._note_data(fd, length, max(0, size - length))
        self._real["ftruncate"](fd, length)

    def _fchmod(self, fd: int, mode: int) -> None:
        self._note_meta(fd)
        self._real["fchmod"](fd, mode)

    def _fchown(self, fd: int, uid: int, gid: int) -> None:
        self._note_meta(fd)
        self._real["fchown"](fd, uid, gid)

    def _by_path(self, name: str, path: Any, follow_symlinks: bool, dir_fd: int | None, *args: Any) -> None:
        """chmod/chown by name: of a symlink itself, an entry change; else the inode's metadata."""
        st = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
        if stat.S_ISLNK(st.st_mode):
            self._call(name, self._changing((path, dir_fd)), path, *args, dir_fd=dir_fd, follow_symlinks=False)
            return
        fd = self._real["open"](path, os.O_RDONLY | (0 if follow_symlinks else os.O_NOFOLLOW), dir_fd=dir_fd)
        try:
            self._note_meta(fd)
        finally:
            os.close(fd)
        self._real[name](path, *args, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def _chmod(self, path: Any, mode: int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
        self._by_path("chmod", path, follow_symlinks, dir_fd, mode)

    def _chown(self, path: Any, uid: int, gid: int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
        self._by_path("chown", path, follow_symlinks, dir_fd, uid, gid)

    def _rename(self, src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        self._call(
            "rename",
            self._changing((src, src_dir_fd), (dst, dst_dir_fd)),
            src,
            dst,
            src_dir_fd=src_dir_fd,
            dst_dir_fd=dst_dir_fd,
        )

    def _replace(self, src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        self._call(
            "replace",
            self._changing((src, src_dir_fd), (dst, dst_dir_fd)),
            src,
            dst,
            src_dir_fd=src_dir_fd,
            dst_dir_fd=dst_dir_fd,
        )

    def _unlink(self, path: Any, *, dir_fd: int | None = None) -> None:
        self._call("unlink", self._changing((path, dir_fd)), path, dir_fd=dir_fd)

    def _remove(self, path: Any, *, dir_fd: int | None = None) -> None:
        self._call("remove", self._changing((path, dir_fd)), path, dir_fd=dir_fd)

    def _rmdir(self, path: Any, *, dir_fd: int | None = None) -> None:
        self._call("rmdir", self._changing((path, dir_fd)), path, dir_fd=dir_fd)

    def _mkdir(self, path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        self._call("mkdir", self._changing((path, dir_fd)), path, mode, dir_fd=dir_fd)

    def _symlink(self, src: Any, dst: Any, target_is_directory: bool = False, *, dir_fd: int | None = None) -> None:
        self._call("symlink", self._changing((dst, dir_fd)), src, dst, target_is_directory, dir_fd=dir_fd)

    def _link(
        self,
        src: Any,
        dst: Any,
        *,
        src_dir_fd: int | None = None,
        dst_dir_fd: int | None = None,
        follow_symlinks: bool = True,
    ) -> None:
        self._call(
            "link",
            self._changing((dst, dst_dir_fd)),
            src,
            dst,
            src_dir_fd=src_dir_fd,
            dst_dir_fd=dst_dir_fd,
            follow_symlinks=follow_symlinks,
        )

    def _fsync(self, fd: int) -> None:
        self._real["fsync"](fd)
        self._durable(fd)

    def _fdatasync(self, fd: int) -> None:
        self._real["fdatasync"](fd)
        self._durable(fd)

    def _durable(self, fd: int) -> None:
        """An fsync made the file's data and metadata, or the directory's entries, durable."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        self._files.pop(key, None)
        self._dirs.pop(key, None)


def _alive(fd: int) -> bool:
    """Whether a held directory still has a name (an rmdir'ed one has no links left)."""
    return os.fstat(fd).st_nlink > 0
