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
from collections.abc import Callable

from ota.apply.device import BuildInfo, Device
from ota.apply.manifest_rules import PATCH_SCRATCH_SUFFIX, shown
from ota.apply.plan import Op, Plan
from ota.apply.progress import VERIFY_SHARE, Progress
from ota.apply.sysroot import SysRoot
from ota.applypatch import protocol
from ota.applypatch.backends import open_partition
from ota.applypatch.cache import BACKUP_NAME
from ota.applypatch.spec import Digest, Pair, load_by_spec
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


def check_sources(plan: Plan, root: SysRoot, ctx: protocol.Context, progress: Progress,
                  read_entry: Callable[[str], bytes], package_path: str, done: set[str] | None) -> None:
    """Everything the steps will find on the device, checked before the first write.

    `done` is the journal's finished steps on a resumed run, None on a fresh one: a partition
    flashed whole may then hold a torn image (neither source nor target) if its step was cut.

    Incremental packages: every kept/patched file and every partition holds what the package
    expects (or its target); every other path holds nothing, what the source build has there, or
    the target; every patch is dry-run. FULL packages write everything and their wipe step
    removes what the target does not list, so only their partition images are checked (that they
    fit).
    """
    files = [] if plan.full else sorted(plan.files.items())
    partitions = sorted(plan.partitions.items())
    progress.phase(VERIFY_SHARE, sum(_verify_bytes(op.source, op.target, op.op == Op.PATCH) for _, op in files)
                   + sum(_verify_bytes(part.source, part.target, bool(part.entry)) for _, part in partitions),
                   len(files) + len(partitions))
    for path, op in files:
        if op.op == Op.KEEP:
            _check_kept(root, path, op)
        elif op.op == Op.PATCH:
            _check_patched(root, path, op, ctx)
            _dry_run(ctx, file_request(root, op, _label(package_path, op.entry)), op.entry, read_entry)
        else:
            _check_kind(root, path, op, plan)
        progress.item("verify", path, _verify_bytes(op.source, op.target, op.op == Op.PATCH))
    for name, part in partitions:
        torn_whole = part.method == pb.WHOLE and _may_have_begun(plan, f"partition:{name}", done)
        if part.HasField("source") and not torn_whole:
            _check_partition(name, part, ctx)
        if part.entry and part.method == pb.WHOLE:
            _check_fits(name, part, ctx)
        elif part.entry:
            _dry_run(ctx, partition_request(part, _label(package_path, part.entry)), part.entry, read_entry)
        progress.item("verify", f"partition:{name}", _verify_bytes(part.source, part.target, bool(part.entry)))


def _may_have_begun(plan: Plan, step_id: str, done: set[str] | None) -> bool:
    """Whether a resumed run's step may have been cut mid-write: every step before it finished, it did not.

    Steps run in order, so only that one step can have left its target torn; a fresh run (no
    journal) has written nothing, and a finished step left its target whole.
    """
    if done is None or step_id in done:
        return False
    ids = [step.id for step in plan.steps]
    return all(earlier in done for earlier in ids[:ids.index(step_id)])


def _verify_bytes(source: pb.ContentInfo, target: pb.ContentInfo, patched: bool) -> int:
    """Progress weight: the source is read; a patched target is built in memory too."""
    return source.size + (target.size if patched else 0)


def _label(package_path: str, entry: str) -> str:
    """How a patch not yet staged is named in errors: the package and its entry."""
    return f"{package_path}: zip entry {entry}"


def _dry_run(ctx: protocol.Context, request: protocol.PatchRequest, entry: str,
             read_entry: Callable[[str], bytes]) -> None:
    """Applies the patch in memory and checks the result against the target, writing nothing.

    This costs one more patch application per patched file or partition, and it is what makes a
    broken or hostile patch a refusal instead of a device left half updated. Memory: one file's
    (or partition's) source, patch and target at a time, as the apply itself needs.
    A path already at its target (a rerun after a cut) passes without patching.
    """
    protocol.dry_run(ctx, request, read_patch=lambda _label: read_entry(entry))


def file_request(root: SysRoot, op: pb.FileOperation, patch: str) -> protocol.PatchRequest:
    """applypatch's file request for a PATCH operation; `patch` names the patch file."""
    location = root.where(op.path)
    return protocol.PatchRequest(source=location, target=location, target_size=op.target.size,
                                 target_digest=Digest("sha256", op.target.sha256),
                                 patches=((Digest("sha256", op.source.sha256), patch),))


def partition_request(part: pb.PartitionOperation, patch: str) -> protocol.PatchRequest:
    """applypatch's partition request for a patched partition; `patch` names the patch file."""
    spec = partition_spec(part.name, part)
    return protocol.PatchRequest(source=spec, target=spec, target_size=part.target.size,
                                 target_digest=Digest("sha256", part.target.sha256),
                                 patches=((Digest("sha256", part.source.sha256), patch),))


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
    scratch = root.lstat(path + PATCH_SCRATCH_SUFFIX)
    if scratch is not None and scratch.kind != "file":
        raise OtaError(root.where(path + PATCH_SCRATCH_SUFFIX), f"is a {scratch.kind}; refusing to write through it")
    try:
        protocol.check(ctx, root.where(path), [Digest("sha256", op.source.sha256),
                                               Digest("sha256", op.target.sha256)])
    except OtaError:
        state = "missing" if entry is None else "modified"
        raise OtaError(root.where(path), f"system file is {state} (neither the source nor the target build's "
                                         "contents, and no matching cache copy)") from None


_SOURCE_KIND = {Op.SOURCE_FILE: "file", Op.SOURCE_DIR: "dir", Op.SOURCE_SYMLINK: "symlink"}
_TARGET_KIND = {Op.WRITE: "file", Op.MKDIR: "dir", Op.SYMLINK: "symlink"}


def _check_kind(root: SysRoot, path: str, op: pb.FileOperation, plan: Plan) -> None:
    """A path the update creates, replaces or deletes holds nothing, the source build's entry
    (`source_kind`; a file with the source contents, except that a deleted file's contents do not
    matter) or, on a rerun, the target's.

    Unreachable (a parent that the plan turns from a link or file into a directory) counts as
    nothing: that parent's own operation was checked the same way. A directory the update
    removes must hold only paths the package deletes, or removing it would fail half way.
    """
    entry = root.reachable(path)
    if entry is None:
        return
    source, target = _SOURCE_KIND.get(op.source_kind), _TARGET_KIND.get(op.op)
    where = root.where(path)
    if entry.kind == "other":
        raise OtaError(where, "unexpected special file where the package changes a path")
    if entry.kind not in (source, target):
        builds = (f"the source and target builds have {_a(source)}" if source == target else
                  f"the source build has {_a(source)} and the target {_a(target)}")
        raise OtaError(where, f"is {_a(entry.kind)}; {builds} here")
    if entry.kind == "file" and op.op != Op.DELETE:
        allowed = {info.sha256 for kind, info in ((source, op.source), (target, op.target)) if kind == "file"}
        if root.content(path).sha256 not in allowed:
            if source == "file":
                raise OtaError(where, "system file is modified (neither the source nor the target build's contents)")
            raise OtaError(where, "unexpected file where the package creates a new one (not the target build's "
                                  "contents)")
    if entry.kind == "dir" and target != "dir":
        for name in root.listdir(path):
            if f"{path}/{name}" not in plan.files:
                raise OtaError(where, f"directory holds {shown(name)}, which no build has there; the update "
                                      "would fail removing the directory")


def _a(kind: str | None) -> str:
    return {None: "nothing", "dir": "a directory"}.get(kind, f"a {kind}")


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


def _check_fits(name: str, part: pb.PartitionOperation, ctx: protocol.Context) -> None:
    """A whole image must fit the partition (flash checks it too, but only at its step)."""
    partition = open_partition("EMMC", name, ctx.config, ctx.ops, writable=False)
    try:
        partition.check_fits(part.target.size)
    finally:
        partition.close()


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
