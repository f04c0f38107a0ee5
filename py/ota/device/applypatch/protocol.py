"""applypatch's patch, check, flash and free-space modes: the order of operations that survives power loss.

Partition target (docs/applypatch.md, hardened):
  1. open the target partition; refuse a target larger than it;
  2. already holds the target -> done (and drop our stale backup);
  3. find the source: the partition/file by its spec, else the cache copy if it matches a listed
     source digest, else fail;
  4. build the target in memory and verify its size and digest -- nothing has been written yet;
  5. if the source came from the device: free cache space, save the backup durably;
  6. write the partition (read back and verified by the backend);
  7. only then delete the backup.
A cut anywhere leaves either the source intact (rerun patches it), or a torn partition plus a
good backup (rerun patches from the backup), or the complete target (rerun says "already").

Regular-file target: build the target in memory, then write it where no existing name is
touched, fsync, give it the source's mode and owner, rename it over the target, fsync the
directory (`TargetFile.replace`). On the command line (`PathFile`) that is an anonymous
O_TMPFILE in the target's directory, linked to a fresh random name just before the rename: AOSP's
``<target>.patch`` would overwrite (and then delete) a user's file of that name. ota_apply passes
its own `TargetFile` that writes through the system root's reserved scratch directory. When the
target's filesystem is short of space (free <= 1.5 x target size, or below the reserve), or
writing runs out of space, the source is first copied to the cache and unlinked (only when the
target replaces the source: a file that is not being replaced is never deleted).

Check mode fixes AOSP's gap (docs/applypatch.md) on purpose: for a partition spec, the cache copy is
also compared with the spec's own listed digests, so a torn partition whose backup is intact
passes and the retried update is not refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ota.device.applypatch.backends import DEFAULT_PIECE, Partition, open_partition
from ota.device.applypatch.cache import Cache, FileMeta
from ota.device.applypatch.device_config import DeviceConfig
from ota.device.applypatch.spec import Digest, Pair, first_match, is_partition_spec, load_by_spec, parse_partition_spec
from ota.device.fsops import FsOps
from ota.errors import OtaError
from ota.format import imgpatch
from ota.format import patch as patch_engine
from ota.io.fileio import os_problem, read_file, read_optional

ALREADY = "already target"
PATCHED = "patched"
# A command-line target's scratch name: made fresh (random, linked with no-replace semantics) so it
# is never a name the user had. Only a cut between its link and the rename leaves one behind; the
# next run on that target removes it if it holds exactly the target's bytes (see PathFile).
SCRATCH_NAME = re.compile(r"\.applypatch-[0-9a-f]{32}\.tmp")


def filesystem_free(path: str) -> int:
    """Free bytes for unprivileged writers on the filesystem holding `path` (a directory)."""
    try:
        info = os.statvfs(path)
    except OSError as err:
        raise OtaError(path, f"cannot use the target's directory: {os_problem(err)}") from None
    return info.f_bavail * info.f_frsize


@dataclass
class Context:
    """Everything a mode needs besides its arguments.

    `target_free` measures the target file's filesystem; tests replace it to reach the
    low-space path without filling a real disk.
    """

    config: DeviceConfig
    cache: Cache
    ops: FsOps = field(default_factory=FsOps)
    piece: int = DEFAULT_PIECE
    target_free: Callable[[str], int] = filesystem_free
    out: Callable[[str], None] = print


@dataclass(frozen=True)
class PatchRequest:
    """One patch command. `source`/`target` are file paths or partition specs (target '-' resolved)."""

    source: str
    target: str
    target_size: int
    target_digest: Digest
    patches: tuple[tuple[Digest, str], ...] = ()
    bonus: str | None = None

    def protected(self) -> list[str]:
        """Files the cache cleaner must never delete."""
        files = [path for _, path in self.patches] + [p for p in (self.bonus,) if p]
        return files + [p for p in (self.source, self.target) if not is_partition_spec(p)]


class TargetFile(Protocol):
    """A regular-file target: how the file protocol reads it and replaces it atomically."""

    @property
    def where(self) -> str:
        """The file as errors name it."""

    @property
    def directory(self) -> str:
        """A path on the file's filesystem, where free space is measured."""

    def read(self) -> bytes | None:
        """The file's bytes, or None if it is not there."""

    def meta(self) -> FileMeta:
        """The file's mode and owner."""

    def replace(self, data: bytes, meta: FileMeta) -> None:
        """Makes the file hold `data` with `meta`, durably, atomically, never touching another name."""

    def remove(self) -> None:
        """Unlinks the file, durably (the low-space path, once the cache holds a copy)."""

    def discard_scratch(self, target: bytes) -> None:
        """Drops scratch a cut run left for this file (called once the file holds `target`)."""


@dataclass(frozen=True)
class PathFile:
    """A regular-file target named by a path (the applypatch command line)."""

    path: str
    ops: FsOps
    piece: int = DEFAULT_PIECE

    @property
    def where(self) -> str:
        return self.path

    @property
    def directory(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def read(self) -> bytes | None:
        return _read_optional(self.path)

    def meta(self) -> FileMeta:
        try:
            return FileMeta.of(self.path)
        except OSError as err:
            raise OtaError(self.path, f"cannot stat: {err.strerror}") from None

    def replace(self, data: bytes, meta: FileMeta) -> None:
        """O_TMPFILE (nameless until complete), fsync, link to a fresh name, rename over, fsync dir.

        A cut before the link leaves nothing; linkat never replaces an existing name, so the
        scratch name is one this run created.
        """
        ops, scratch_label = self.ops, f"{self.path}~"
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self.discard_scratch(data, dir_fd)
            fd = ops.perform(
                "create", scratch_label, lambda: os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o600, dir_fd=dir_fd)
            )
            if fd is None:  # a device that "lied" about the create: nothing to write into
                raise OSError(errno.EIO, "create did not happen", self.path)
            try:
                ops.write_pieces(fd, data, scratch_label, self.piece)
                ops.chmod(fd, meta.mode, meta.uid, meta.gid, scratch_label)
                ops.fsync(fd, scratch_label)
                scratch = f".applypatch-{secrets.token_hex(16)}.tmp"
                ops.perform(
                    "link",
                    f"{scratch_label}->{scratch}",
                    lambda: os.link(f"/proc/self/fd/{fd}", scratch, dst_dir_fd=dir_fd, follow_symlinks=True),
                )
            finally:
                os.close(fd)
            try:
                ops.perform(
                    "rename",
                    f"{scratch}->{self.path}",
                    lambda: os.rename(scratch, os.path.basename(self.path), src_dir_fd=dir_fd, dst_dir_fd=dir_fd),
                )
            except OSError:
                with contextlib.suppress(FileNotFoundError):
                    ops.perform("unlink", scratch, lambda: os.unlink(scratch, dir_fd=dir_fd))
                raise
            ops.fsync(dir_fd, self.directory)
        finally:
            os.close(dir_fd)

    def remove(self) -> None:
        self.ops.unlink(self.path)
        self.ops.fsync_dir(self.directory)

    def discard_scratch(self, target: bytes, dir_fd: int | None = None) -> None:
        """Unlinks scratch names (`SCRATCH_NAME`) beside the file that hold exactly `target`.

        Such a file is what a run cut between its link and its rename leaves; one with other
        bytes is not ours to judge and stays. Deleting a copy of bytes the target itself holds
        loses nothing.
        """
        own = dir_fd is None
        if own:
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in os.listdir(dir_fd):
                if SCRATCH_NAME.fullmatch(name) and _holds(dir_fd, name, target):
                    self.ops.perform(
                        "unlink", os.path.join(self.directory, name), lambda name=name: os.unlink(name, dir_fd=dir_fd)
                    )
        finally:
            if own:
                os.close(dir_fd)


def _holds(dir_fd: int, name: str, data: bytes) -> bool:
    """Whether `name` in `dir_fd` is a regular file (not followed if a link) holding exactly `data`."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(data):
            return False
        with os.fdopen(os.dup(fd), "rb") as stream:
            return stream.read(len(data) + 1) == data
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Source:
    data: bytes
    digest: Digest
    patch_path: str
    from_cache: bool


def patch(ctx: Context, request: PatchRequest, file: TargetFile | None = None) -> str:
    """Patch mode; returns ALREADY or PATCHED, raises OtaError on failure.

    `file` is how a regular-file target is read and written (default: `PathFile` of the target).
    """
    if is_partition_spec(request.target):
        return _patch_partition(ctx, request)
    return _patch_file(ctx, request, file or _path_file(ctx, request.target))


def _path_file(ctx: Context, path: str) -> PathFile:
    return PathFile(path, ctx.ops, ctx.piece)


def _open(ctx: Context, text: str, *, writable: bool) -> tuple[Partition, tuple[Pair, ...], str]:
    spec = parse_partition_spec(text)
    return (
        open_partition(spec.kind, spec.name, ctx.config, ctx.ops, writable=writable, piece=ctx.piece),
        spec.pairs,
        spec.device,
    )


def _patch_partition(ctx: Context, request: PatchRequest) -> str:
    partition, pairs, device = _open(ctx, request.target, writable=True)
    try:
        partition.check_fits(request.target_size)
        if _holds_target(partition, pairs, request, device):
            _drop_stale_backup(ctx, request)
            ctx.out(f"{device}: already target")
            return ALREADY
        source = _find_source(ctx, request)
        target = _build(request, source)
        if not source.from_cache:
            ctx.cache.claim_slot(digest for digest, _ in request.patches)
            ctx.cache.save_backup(source.data, ctx.ops, protect=request.protected())
        partition.write_image(target)
        ctx.cache.remove_backup(ctx.ops)
    finally:
        partition.close()
    ctx.out(f"{device}: patched ({request.target_size} bytes)")
    return PATCHED


def _patch_file(ctx: Context, request: PatchRequest, file: TargetFile) -> str:
    current = file.read()
    if _is_target(current, request):
        file.discard_scratch(current)
        _drop_stale_backup(ctx, request)
        ctx.out(f"{file.where}: already target")
        return ALREADY
    source = _find_source(ctx, request, current)
    del current  # the source holds it if it is the same file; otherwise free it before patching
    target = _build(request, source)
    meta = _source_meta(ctx, request, source, file)
    free = ctx.target_free(file.directory)
    moved_to_cache = False
    if not source.from_cache and (free <= request.target_size * 3 // 2 or free <= ctx.cache.reserve):
        _move_source_to_cache(ctx, request, source, meta, file)
        moved_to_cache = True
    while True:
        try:
            file.replace(target, meta)
            break
        except OSError as err:
            if err.errno != errno.ENOSPC or moved_to_cache or source.from_cache:
                raise OtaError(file.where, f"cannot write: {err.strerror or err}") from None
            # Out of space although statfs said otherwise (AOSP's "yaffs lies"): retry once
            # through the cache copy, which frees the source's blocks.
            _move_source_to_cache(ctx, request, source, meta, file)
            moved_to_cache = True
    if moved_to_cache or source.from_cache:
        ctx.cache.remove_backup(ctx.ops)
    ctx.out(f"{file.where}: patched ({request.target_size} bytes)")
    return PATCHED


def _holds_target(partition: Partition, pairs: tuple[Pair, ...], request: PatchRequest, device: str) -> bool:
    wanted = Pair(request.target_size, request.target_digest)
    try:
        return load_by_spec(partition.read, pairs + (wanted,), device).pair == wanted
    except OtaError:
        return False


def _is_target(data: bytes | None, request: PatchRequest) -> bool:
    return data is not None and len(data) == request.target_size and request.target_digest.matches(data)


def dry_run(
    ctx: Context, request: PatchRequest, read_patch: Callable[[str], bytes] = read_file, file: TargetFile | None = None
) -> str:
    """Patch mode up to its first write: returns ALREADY if the target is there, else PATCHED once
    the patch, applied in memory to the source (or the cache copy), gives exactly the target.

    Writes nothing and keeps nothing: an updater calls it for every patch before it changes
    anything, so a patch that cannot work is refused while the device is still untouched.
    `read_patch` maps each of `request.patches`' paths to the patch bytes (an updater passes
    patches it has not staged yet); `file` reads a regular-file target, as in `patch`.
    """
    if is_partition_spec(request.target):
        partition, pairs, device = _open(ctx, request.target, writable=False)
        try:
            partition.check_fits(request.target_size)
            if _holds_target(partition, pairs, request, device):
                return ALREADY
        finally:
            partition.close()
        current = None
    else:
        current = (file or _path_file(ctx, request.target)).read()
        if _is_target(current, request):
            return ALREADY
    _build(request, _find_source(ctx, request, current), read_patch)
    return PATCHED


def _move_source_to_cache(
    ctx: Context, request: PatchRequest, source: _Source, meta: FileMeta, file: TargetFile
) -> None:
    """Frees the source's space on the target filesystem by parking it in the cache."""
    if is_partition_spec(request.source):
        raise OtaError(request.target, "not enough free space for the target, and the source is a partition")
    if os.path.realpath(request.source) != os.path.realpath(request.target):
        raise OtaError(
            request.target,
            "not enough free space for the target (the source is a different file, which applypatch does not delete)",
        )
    ctx.cache.claim_slot(digest for digest, _ in request.patches)
    ctx.cache.save_backup(source.data, ctx.ops, meta, request.protected())
    try:
        file.remove()  # the source is the target file (checked above)
    except OSError as err:
        raise OtaError(request.source, f"cannot remove the source after saving it: {err.strerror}") from None


def _source_meta(ctx: Context, request: PatchRequest, source: _Source, file: TargetFile) -> FileMeta:
    if not source.from_cache and _same_file(request.source, request.target):
        return file.meta()
    path = ctx.cache.backup_path if source.from_cache else request.source
    if is_partition_spec(path):
        return FileMeta()
    try:
        return FileMeta.of(path)
    except OSError as err:
        raise OtaError(path, f"cannot stat: {err.strerror}") from None


def _load(ctx: Context, location: str, file: TargetFile | None = None) -> tuple[bytes | None, str]:
    """Loads a file (through `file` if given) or a partition by its spec; returns (data, "") or (None, why not)."""
    if is_partition_spec(location):
        partition, pairs, device = _open(ctx, location, writable=False)
        try:
            return load_by_spec(partition.read, pairs, device).data, ""
        except OtaError as err:
            return None, str(err)
        finally:
            partition.close()
    data = (file or _path_file(ctx, location)).read()
    return (data, "") if data is not None else (None, f"{location}: cannot read")


def _find_source(ctx: Context, request: PatchRequest, target_bytes: bytes | None = None) -> _Source:
    """The source to patch from: `request.source` if it matches a listed hash, else the cache copy.

    `target_bytes` is the target file as already read for the "already target?" test; when the
    target is the source (the usual in-place patch), it is the source too and is not read again.
    """
    digests = [digest for digest, _ in request.patches]
    if _same_file(request.source, request.target):
        data, why = target_bytes, f"{request.source}: cannot read"
    else:
        data, why = _load(ctx, request.source)
    if data is not None:
        match = first_match(data, digests)
        if match is not None:
            return _Source(data, match, _patch_for(request, match), False)
        why = f"{request.source}: SHA-1 {Digest.of(data)} matches no listed source"
    backup = ctx.cache.load_backup()
    if backup is not None:
        match = first_match(backup, digests)
        if match is not None:
            ctx.out(f"{request.source}: using the cache copy {ctx.cache.backup_path}")
            return _Source(backup, match, _patch_for(request, match), True)
    cache_state = "no cache copy" if backup is None else "the cache copy matches no listed source either"
    raise OtaError(request.source, f"no usable source ({why.removeprefix(request.source + ': ')}; {cache_state})")


def _same_file(source: str, target: str) -> bool:
    return not is_partition_spec(source) and os.path.realpath(source) == os.path.realpath(target)


def _patch_for(request: PatchRequest, digest: Digest) -> str:
    return next(path for candidate, path in request.patches if candidate == digest)


def _build(request: PatchRequest, source: _Source, read_patch: Callable[[str], bytes] = read_file) -> bytes:
    """Applies the patch in memory and verifies the result before anything is written."""
    patch_bytes = read_patch(source.patch_path)
    bonus = read_file(request.bonus) if request.bonus else None
    expand_limit = imgpatch.expand_limit(request.target_size)
    target = patch_engine.apply_patch(
        source.data,
        patch_bytes,
        bonus=bonus,
        where=source.patch_path,
        limit=request.target_size,
        expand_limit=expand_limit,
    )
    if len(target) != request.target_size or not request.target_digest.matches(target):
        raise OtaError(
            source.patch_path,
            f"patch result ({len(target)} bytes, "
            f"{request.target_digest.algorithm} {Digest.of(target, request.target_digest.algorithm)}) "
            f"is not the expected target ({request.target_size} bytes, {request.target_digest})",
        )
    return target


def _drop_stale_backup(ctx: Context, request: PatchRequest) -> None:
    """After a finished update, a backup of this update's source is no longer needed.

    Only tidying: the target is already in place, so a cache that cannot be read or written
    (read-only, failing) leaves the copy where it is and the run still succeeds, with a note.
    """
    try:
        backup = ctx.cache.load_backup()
        if backup is not None and first_match(backup, [digest for digest, _ in request.patches]):
            ctx.cache.remove_backup(ctx.ops)
    except OtaError as err:
        ctx.out(f"note: stale cache copy left in place: {err}")


def _read_optional(path: str) -> bytes | None:
    """A file source or target, bounded; None if nothing is there (a missing target is normal)."""
    return read_optional(path)


def check(ctx: Context, location: str, digests: Sequence[Digest], file: TargetFile | None = None) -> str:
    """Check mode: passes if the file/partition (or, failing that, the cache copy) matches.

    `file` reads a regular file, as in `patch`."""
    candidates = list(digests)
    data, why = _load(ctx, location, file)
    if is_partition_spec(location):
        candidates += [pair.digest for pair in parse_partition_spec(location).pairs]  # the check-mode fix
    if data is not None and (not digests or first_match(data, digests)):
        return f"{location}: ok"
    if data is not None:
        why = f"SHA-1 {Digest.of(data)} is not one of the listed"
    backup = ctx.cache.load_backup()
    match = first_match(backup, candidates) if backup is not None else None
    if match is not None:
        return f"{location}: does not match, but the cache copy matches {match}; a rerun will patch from it"
    cache_state = "no cache copy" if backup is None else "the cache copy matches none either"
    raise OtaError(location, f"check failed ({why.removeprefix(location + ': ')}; {cache_state})")


def flash(ctx: Context, image_path: str, target: str) -> str:
    """Flash mode: writes `image_path` to the partition if the image has the spec's digest."""
    partition, pairs, device = _open(ctx, target, writable=True)
    try:
        if len(pairs) != 1:
            raise OtaError(target, "--flash needs a target spec with exactly one size:sha1 pair")
        wanted = pairs[0]
        partition.check_fits(wanted.size)
        try:
            load_by_spec(partition.read, pairs, device)
            ctx.out(f"{device}: already target")
            return ALREADY
        except OtaError:
            pass
        image = read_file(image_path)
        if len(image) != wanted.size or not wanted.digest.matches(image):
            raise OtaError(
                image_path,
                f"image ({len(image)} bytes) does not match the target spec ({wanted.size} bytes, {wanted.digest})",
            )
        partition.write_image(image)
    finally:
        partition.close()
    ctx.out(f"{device}: flashed ({wanted.size} bytes)")
    return PATCHED
