"""Everything ota_apply checks before its first write: preconditions, sources, collisions, cache space.

A refusal here leaves the device exactly as it was, which is why all of it runs before the
journal is created. The source checks use applypatch's check semantics (spec §1.7, with its
partition fix): a file or partition passes if it holds the source *or* the target, or if the
cache copy holds one of them; so the same checks pass on a rerun after a cut, when part of the
device is already the target.
"""

from __future__ import annotations

import os
import stat

from ota.applypatch import protocol
from ota.applypatch.cache import BACKUP_NAME
from ota.applypatch.backends import open_partition
from ota.applypatch.spec import Digest, Pair, load_by_spec
from ota.apply.device import BuildInfo, Device
from ota.apply.plan import Op, Plan
from ota.apply.progress import VERIFY_SHARE, Progress
from ota.apply.progress import VERIFY_SHARE, Progress
from ota.apply.sysroot import SysRoot
from ota.errors import OtaError
from ota.proto import ota_manifest_pb2 as pb


def check_preconditions(plan: Plan, device: Device, current: BuildInfo, *, resuming: bool,
                        where: str) -> None:
    """Device name, source build fingerprint and timestamp policy."""
    manifest = plan.manifest
    pre, post = manifest.precondition, manifest.postcondition
    if device.name not in pre.device or current.device != device.name:
        raise OtaError(where, f"package is for device {', '.join(pre.device) or '(none)'}; "
                              f"this device is {device.name!r}")
    target_fingerprint = post.build_fingerprint[0] if post.build_fingerprint else ""
    if not plan.full and current.fingerprint not in pre.build_fingerprint and not (
            resuming and current.fingerprint == target_fingerprint):
        raise OtaError(where, f"package updates build {', '.join(pre.build_fingerprint)}; "
                              f"the device runs {current.fingerprint!r}")
    if post.timestamp < current.timestamp and not resuming:
        if not manifest.downgrade:
            raise OtaError(where, f"package build timestamp {post.timestamp} is older than the device's "
                                  f"{current.timestamp} and the package is not a downgrade package")
        if not device.policy.allow_downgrade:
            raise OtaError(where, "downgrade package refused: the device policy does not allow downgrades")


def check_sources(plan: Plan, root: SysRoot, ctx: protocol.Context, progress: Progress) -> None:
    """Every kept/patched file and every partition holds what the package expects (or its target).

    FULL packages check nothing here: they write everything, and their wipe step removes what
    the target does not list.
    """
    if plan.full:
        return
    files = [(path, op) for path, op in sorted(plan.files.items()) if op.op != Op.DELETE]
    partitions = [(name, part) for name, part in sorted(plan.partitions.items()) if part.HasField("source")]
    progress.phase(VERIFY_SHARE, sum(op.source.size for _, op in files)
                   + sum(part.source.size for _, part in partitions), len(files) + len(partitions))
    for path, op in files:
        if op.op == Op.KEEP:
            _check_kept(root, path, op)
        elif op.op == Op.PATCH:
            _check_patched(root, path, op, ctx)
        else:
            _check_no_collision(root, path, op, plan)
        progress.item("verify", path, op.source.size)
    for name, part in partitions:
        _check_partition(name, part, ctx)
        progress.item("verify", f"partition:{name}", part.source.size)


def _check_kept(root: SysRoot, path: str, op: pb.FileOperation) -> None:
    entry = root.lstat(path)
    if entry is None or entry.kind != "file":
        raise OtaError(root.where(path), "system file is missing (the package keeps it unchanged)")
    if root.content(path).sha256 != op.source.sha256:
        raise OtaError(root.where(path), "system file is modified (its SHA-256 is not the source build's)")


def _check_patched(root: SysRoot, path: str, op: pb.FileOperation, ctx: protocol.Context) -> None:
    entry = root.lstat(path)
    if entry is not None and entry.kind != "file":
        raise OtaError(root.where(path), f"is a {entry.kind}, expected the source build's regular file")
    scratch = root.lstat(_scratch_of(path))
    if scratch is not None and scratch.kind != "file":
        raise OtaError(root.where(_scratch_of(path)), f"is a {scratch.kind}; refusing to write through it")
    try:
        protocol.check(ctx, root.where(path), [Digest("sha256", op.source.sha256),
                                               Digest("sha256", op.target.sha256)])
    except OtaError:
        state = "missing" if entry is None else "modified"
        raise OtaError(root.where(path), f"system file is {state} (neither the source nor the target build's "
                                         "contents, and no matching cache copy)") from None


def _scratch_of(path: str) -> str:
    """applypatch's temporary output name for a file target."""
    return path + ".patch"


def _check_no_collision(root: SysRoot, path: str, op: pb.FileOperation, plan: Plan) -> None:
    """A path the package creates must not hold something no build put there.

    The manifest records a source only for regular files, so a directory or symlink found where
    the target has another kind may be the source build's (a kind change) and is accepted; what
    cannot be the source build's is refused: a regular file with other contents where a file
    without source is written, and anything that is not a file, directory or symlink.
    """
    try:
        entry = root.lstat(path)
    except OtaError:
        parts = path.split("/")
        for ancestor in ("/".join(parts[:i]) for i in range(1, len(parts))):
            found = root.lstat(ancestor)
            if found is not None and found.kind != "dir":
                op_there = plan.files.get(ancestor)
                if op_there is not None and op_there.op == Op.MKDIR:
                    return  # a source link or file the target turns into a directory: replaced first
                break
        raise
    if entry is None:
        return
    if entry.kind == "other":
        raise OtaError(root.where(path), "unexpected special file where the package creates a path")
    if op.op == Op.WRITE and entry.kind == "file" and root.content(path).sha256 not in (
            op.source.sha256, op.target.sha256):
        raise OtaError(root.where(path), "unexpected file where the package creates a new one "
                                         "(not the target build's contents)")


def partition_spec(name: str, part: pb.PartitionOperation) -> str:
    """The applypatch spec listing every acceptable image of the partition: source, then target."""
    pairs = [part.source] if part.HasField("source") else []
    pairs.append(part.target)
    return "EMMC:" + name + "".join(f":{info.size}:{info.sha256}" for info in pairs)


def _check_partition(name: str, part: pb.PartitionOperation, ctx: protocol.Context) -> None:
    try:
        protocol.check(ctx, partition_spec(name, part), [])
    except OtaError:
        raise OtaError(f"partition {name}", "holds neither the source nor the target image "
                                            "(and the cache holds no copy of either)") from None


def check_results(plan: Plan, root: SysRoot, ctx: protocol.Context) -> None:
    """After the apply: every target path and partition is exactly what the manifest says."""
    for path, op in sorted(plan.files.items()):
        if op.op == Op.DELETE:
            if root.reachable(path) is not None:
                raise OtaError(root.where(path), "still exists after the update deleted it")
            continue
        entry = root.lstat(path)
        kind = {Op.MKDIR: "dir", Op.SYMLINK: "symlink"}.get(op.op, "file")
        if entry is None or entry.kind != kind:
            raise OtaError(root.where(path), f"is not a {kind} after the update")
        if kind == "file" and root.content(path).sha256 != op.target.sha256:
            raise OtaError(root.where(path), "contents are not the target build's after the update")
        if kind == "symlink" and root.readlink(path) != op.symlink_target:
            raise OtaError(root.where(path), f"does not point to {op.symlink_target!r} after the update")
        if (entry.uid, entry.gid) != (op.uid, op.gid) or (kind != "symlink" and entry.mode != op.mode):
            raise OtaError(root.where(path), f"mode/uid/gid {entry.mode:o}/{entry.uid}/{entry.gid} are not "
                                             f"the target's {op.mode:o}/{op.uid}/{op.gid} after the update")
    for name, part in sorted(plan.partitions.items()):
        partition = open_partition("EMMC", name, ctx.config, ctx.ops, writable=False)
        try:
            load_by_spec(partition.read, [Pair(part.target.size, Digest("sha256", part.target.sha256))],
                         f"partition {name}")
        except OtaError:
            raise OtaError(f"partition {name}", "does not hold the target image after the update") from None
        finally:
            partition.close()


def cache_needed(plan: Plan, cache_dir: str, staged_dir: str, done: set[str]) -> int:
    """Cache bytes this update still has to write: unstaged entries plus the largest backup."""
    needed = 0
    for name, size in plan.staged.items():
        path = os.path.join(staged_dir, staged_name(name))
        if f"stage:{name}" not in done and not (os.path.isfile(path) and os.path.getsize(path) == size):
            needed += size
    backups = [part.source.size for part in plan.partitions.values()
               if part.HasField("source") and part.method != pb.WHOLE and not plan.full
               and f"partition:{part.name}" not in done]
    existing = os.path.join(cache_dir, BACKUP_NAME)
    if backups:
        needed += max(0, max(backups) - (os.path.getsize(existing) if os.path.isfile(existing) else 0))
    return needed + 4096 + 64 * len(plan.steps)  # the journal


def freeable_bytes(cache_dir: str, protect: set[str]) -> int:
    """Upper bound of what applypatch's cache cleaner may delete: loose files in the cache dir."""
    total = 0
    for name in os.listdir(cache_dir):
        if name in protect or name.startswith(BACKUP_NAME):
            continue
        st = os.lstat(os.path.join(cache_dir, name))
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total


def staged_name(entry: str) -> str:
    """A flat cache file name for a package entry (entries are '/'-separated paths)."""
    return entry.replace("%", "%25").replace("/", "%2F")
