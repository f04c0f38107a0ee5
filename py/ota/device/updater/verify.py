"""Everything ota_apply checks before its first write: preconditions, sources, collisions, cache space.

A refusal here leaves the device exactly as it was, which is why all of it runs before the
journal is created. The source checks use applypatch's check semantics (docs/applypatch.md, with its
partition fix): a file or partition passes if it holds the source *or* the target, or if the
cache copy holds one of them; so the same checks pass on a rerun after a cut, when part of the
device is already the target.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable

from google.protobuf.message import Message

from ota.device.applypatch import protocol
from ota.device.applypatch.backends import open_partition
from ota.device.applypatch.cache import Cache
from ota.device.applypatch.device_config import DeviceConfig
from ota.device.applypatch.spec import Digest, Pair, load_by_spec
from ota.device.fsops import FsOps
from ota.device.updater import unchanged_paths
from ota.device.updater.device import BuildInfo, Device
from ota.device.updater.journal import Journal
from ota.device.updater.manifest_rules import shown
from ota.device.updater.plan import Op, Plan
from ota.device.updater.progress import VERIFY_SHARE, Progress
from ota.device.updater.sysroot import SysRoot
from ota.errors import OtaError
from ota.format.layout import MANIFEST_ENTRY, slice_key
from ota.format.paths import escape, from_bytes
from ota.proto import ota_manifest_pb2 as pb


def partition_map(device: Device) -> DeviceConfig:
    """The device's partition config as ota_apply uses it: names it lists, nothing discovered.

    ota_apply's partition names come from a package, so no name may lead to a device the config
    does not list (docs/applypatch.md, "Partition names").
    """
    return dataclasses.replace(device.hardware, discover=False)


def check_preconditions(
    manifest: Message, device: Device, current: BuildInfo, *, resuming: bool, where: str, ops: FsOps
) -> None:
    """The cheap checks, on the manifest's header alone (`package_reader.Package.header`, or the
    whole OtaManifest), before anything is parsed in full, planned, hashed or patched.

    Device name, source build fingerprint and timestamp policy; then what the manifest asks of
    the device's hardware: every partition is one the device config lists (ota_apply never looks
    a name up anywhere else), no two of them share a device, and every whole image fits its
    partition (capacity against declared size). Nothing here walks the files or reads a payload.
    """
    pre, post = manifest.precondition, manifest.postcondition
    if device.name not in pre.device or current.device != device.name:
        raise OtaError(
            where, f"package is for device {', '.join(pre.device) or '(none)'}; this device is {device.name!r}"
        )
    target_fingerprint = post.build_fingerprint[0] if post.build_fingerprint else ""
    full = manifest.type == pb.OtaManifest.FULL
    if (
        not full
        and current.fingerprint not in pre.build_fingerprint
        and not (resuming and current.fingerprint == target_fingerprint)
    ):
        raise OtaError(
            where, f"package updates build {', '.join(pre.build_fingerprint)}; the device runs {current.fingerprint!r}"
        )
    if post.timestamp < current.timestamp and not resuming:
        if not manifest.downgrade:
            raise OtaError(
                where,
                f"package build timestamp {post.timestamp} is older than the device's "
                f"{current.timestamp} and the package is not a downgrade package",
            )
        if not device.policy.allow_downgrade:
            raise OtaError(where, "downgrade package refused: the device policy does not allow downgrades")
    hardware = partition_map(device)
    check_partitions_known(manifest, hardware, where)
    for part in manifest.partitions:
        if part.entry and part.method == pb.WHOLE:
            _check_fits(part.name, part, hardware, ops)


def check_plan(plan: Plan, where: str) -> None:
    """What `check_results` will require of files that no device check covers: a kept file's
    target is its source (else the final check could only fail, after every write)."""
    for path, op in plan.files.items():
        if op.op == Op.KEEP and (op.source.size, op.source.sha256) != (op.target.size, op.target.sha256):
            raise OtaError(where, f"{MANIFEST_ENTRY} files: {shown(path)}: a KEEP's target is not its source")


def check_partitions_known(manifest: Message, hardware: DeviceConfig, where: str) -> None:
    """Every partition the manifest names is in the device config, each on a device of its own.

    A name is looked up in the config only: never as a path (relative to the working directory or
    not), never through a symlink the package could have anticipated. Two names on one device
    would make one step undo the other, so the final check would fail after both writes.
    """
    devices: dict[tuple[int, int], str] = {}
    for part in manifest.partitions:
        entry = hardware.partitions.get(part.name)
        if entry is None:
            known = ", ".join(sorted(hardware.partitions)) or "none"
            raise OtaError(
                where,
                f"{MANIFEST_ENTRY} partitions: {shown(part.name)} is not a partition of this "
                f"device (its config lists {known})",
            )
        identity = _device_identity(entry.path)
        if identity is not None and identity in devices:
            raise OtaError(
                where,
                f"{MANIFEST_ENTRY} partitions: {part.name} and {devices[identity]} are the same "
                f"device ({entry.path}) in the device config",
            )
        if identity is not None:
            devices[identity] = part.name


def _device_identity(path: str) -> tuple[int, int] | None:
    """What makes two config paths one device: the device number of a device node, else the inode.

    None if the path cannot be stat'ed; opening it later reports that as one line.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return (-1, st.st_rdev)
    return (st.st_dev, st.st_ino)


def check_sources(
    plan: Plan,
    root: SysRoot,
    ctx: protocol.Context,
    progress: Progress,
    read_entry: Callable[[str], bytes],
    read_whole: Callable[[pb.FileOperation], bytes],
    package_path: str,
    done: set[str] | None,
) -> None:
    """Everything the steps will find on the device, and every whole file's data, checked before
    the first write.

    `done` is the journal's finished steps on a resumed run, None on a fresh one: a partition
    flashed whole may then hold a torn image (neither source nor target) if its step was cut.

    Incremental packages: every unchanged group holds the source build's entries
    (unchanged_paths.py); every kept/patched file and every partition holds what the package
    expects (or its target); every other path holds nothing, what the source build has there, or
    the target; every patch is dry-run. FULL packages write everything and their wipe step
    removes what the target does not list, so only their whole files' data and partition images
    are checked (that they fit).
    """
    files = [] if plan.full else sorted(plan.files.items())
    partitions = sorted(plan.partitions.items())
    progress.phase(
        VERIFY_SHARE,
        sum(_verify_bytes(op.source, op.target, op.op == Op.PATCH) for _, op in files)
        + sum(_verify_bytes(part.source, part.target, bool(part.entry)) for _, part in partitions),
        len(files) + len(partitions),
    )
    for op in plan.files.values():
        if op.op == Op.WRITE:
            read_whole(op)  # inflates and hashes against the target, so the write step cannot fail on it
    if not plan.full:
        unchanged_paths.check(plan, root)
    for path, op in files:
        if op.op == Op.KEEP:
            _check_kept(root, path, op)
        elif op.op == Op.PATCH:
            _check_patched(root, path, op, ctx)
            key = patch_key(op)
            _dry_run(ctx, file_request(root, op, _label(package_path, key)), key, read_entry, root.file(path))
        else:
            _check_kind(root, path, op, plan)
        progress.item("verify", path, _verify_bytes(op.source, op.target, op.op == Op.PATCH))
    for name, part in partitions:
        _check_partition_before(plan, name, part, ctx, read_entry, package_path, done)
        progress.item("verify", f"partition:{name}", _verify_bytes(part.source, part.target, bool(part.entry)))


def _check_partition_before(
    plan: Plan,
    name: str,
    part: pb.PartitionOperation,
    ctx: protocol.Context,
    read_entry: Callable[[str], bytes],
    package_path: str,
    done: set[str] | None,
) -> None:
    """The pre-write counterpart of `check_results` for one partition.

    A check-only partition (no entry: nothing writes it) must hold the target now, because
    nothing will make it do so later. A written one must hold the source or the target (or have
    its cache copy), and a patch must apply (a dry run, which also checks that the target fits).
    """
    if not part.entry:
        _check_holds(
            name,
            part.target,
            ctx,
            "does not hold the target image, and the package does not write it (a check-only partition)",
        )
        return
    torn_whole = part.method == pb.WHOLE and _may_have_begun(plan, f"partition:{name}", done)
    if part.HasField("source") and not torn_whole:
        _check_partition(name, part, ctx)
    if part.method != pb.WHOLE:  # a whole image's fit is a precondition; the dry run checks a patch's
        _dry_run(ctx, partition_request(part, _label(package_path, part.entry)), part.entry, read_entry)


def _may_have_begun(plan: Plan, step_id: str, done: set[str] | None) -> bool:
    """Whether a resumed run's step may have been cut mid-write: every step before it finished, it did not.

    Steps run in order, so only that one step can have left its target torn; a fresh run (no
    journal) has written nothing, and a finished step left its target whole.
    """
    if done is None or step_id in done:
        return False
    ids = [step.id for step in plan.steps]
    return all(earlier in done for earlier in ids[: ids.index(step_id)])


def patch_key(op: pb.FileOperation) -> str:
    """A file patch's key among the plan's staged items (`Plan.staged`, `Plan.slices`)."""
    return slice_key(op.data.offset, op.data.length)


def _verify_bytes(
    source: pb.ContentInfo | pb.FileContent, target: pb.ContentInfo | pb.FileContent, patched: bool
) -> int:
    """Progress weight: the source is read; a patched target is built in memory too."""
    return source.size + (target.size if patched else 0)


def _label(package_path: str, entry: str) -> str:
    """How a patch not yet staged is named in errors: the package and its entry (or blob slice)."""
    return f"{package_path}: {entry}"


def _dry_run(
    ctx: protocol.Context,
    request: protocol.PatchRequest,
    entry: str,
    read_entry: Callable[[str], bytes],
    file: protocol.TargetFile | None = None,
) -> None:
    """Applies the patch in memory and checks the result against the target, writing nothing.

    This costs one more patch application per patched file or partition, and it is what makes a
    broken or hostile patch a refusal instead of a device left half updated. Memory: one file's
    (or partition's) source, patch and target at a time, as the apply itself needs.
    A path already at its target (a rerun after a cut) passes without patching.
    """
    protocol.dry_run(ctx, request, read_patch=lambda _label: read_entry(entry), file=file)


def file_request(root: SysRoot, op: pb.FileOperation, patch: str) -> protocol.PatchRequest:
    """applypatch's file request for a PATCH operation; `patch` names the patch file."""
    location = root.where(from_bytes(op.path))
    return protocol.PatchRequest(
        source=location,
        target=location,
        target_size=op.target.size,
        target_digest=Digest("sha256", op.target.sha256.hex()),
        patches=((Digest("sha256", op.source.sha256.hex()), patch),),
    )


def partition_request(part: pb.PartitionOperation, patch: str) -> protocol.PatchRequest:
    """applypatch's partition request for a patched partition; `patch` names the patch file."""
    spec = partition_spec(part.name, part)
    return protocol.PatchRequest(
        source=spec,
        target=spec,
        target_size=part.target.size,
        target_digest=Digest("sha256", part.target.sha256),
        patches=((Digest("sha256", part.source.sha256), patch),),
    )


def _check_kept(root: SysRoot, path: str, op: pb.FileOperation) -> None:
    entry = root.lstat(path)
    if entry is None or entry.kind != "file":
        raise OtaError(root.where(path), "system file is missing (the package keeps it unchanged)")
    if root.content(path).sha256 != op.source.sha256.hex():
        raise OtaError(root.where(path), "system file is modified (its SHA-256 is not the source build's)")


def _check_patched(root: SysRoot, path: str, op: pb.FileOperation, ctx: protocol.Context) -> None:
    """Source or target contents (or a cache copy of either), read through the root's no-follow
    descriptors. No neighbouring name matters: the patch step writes through the scratch
    directory (sysroot.py), so a `<path>.patch` beside it is just another path of the tree."""
    entry = root.lstat(path)
    if entry is not None and entry.kind != "file":
        raise OtaError(root.where(path), f"is {entry.shown}, expected the source build's regular file")
    try:
        protocol.check(
            ctx,
            root.where(path),
            [Digest("sha256", op.source.sha256.hex()), Digest("sha256", op.target.sha256.hex())],
            root.file(path),
        )
    except OtaError:
        state = "missing" if entry is None else "modified"
        raise OtaError(
            root.where(path),
            f"system file is {state} (neither the source nor the target build's contents, and no matching cache copy)",
        ) from None


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
        builds = (
            f"the source and target builds have {_a(source)}"
            if source == target
            else f"the source build has {_a(source)} and the target {_a(target)}"
        )
        raise OtaError(where, f"is {_a(entry.kind)}; {builds} here")
    if entry.kind == "file" and op.op != Op.DELETE:
        allowed = {info.sha256.hex() for kind, info in ((source, op.source), (target, op.target)) if kind == "file"}
        if root.content(path).sha256 not in allowed:
            if source == "file":
                raise OtaError(where, "system file is modified (neither the source nor the target build's contents)")
            raise OtaError(
                where, "unexpected file where the package creates a new one (not the target build's contents)"
            )
    if entry.kind == "dir" and target != "dir":
        for name in root.listdir(path):
            if f"{path}/{name}" not in plan.files:
                raise OtaError(
                    where,
                    f"directory holds {shown(name)}, which no build has there; the update "
                    "would fail removing the directory",
                )


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
        raise OtaError(
            f"partition {name}", "holds neither the source nor the target image (and the cache holds no copy of either)"
        ) from None


def _check_fits(name: str, part: pb.PartitionOperation, hardware: DeviceConfig, ops: FsOps) -> None:
    """A whole image must fit the partition (flash checks it too, but only at its step)."""
    partition = open_partition("EMMC", name, hardware, ops, writable=False)
    try:
        partition.check_fits(part.target.size)
    finally:
        partition.close()


def check_results(plan: Plan, root: SysRoot, ctx: protocol.Context) -> None:
    """After the apply: every target path and partition is exactly what the manifest says, and
    every unchanged group still holds the source build's entries."""
    if not plan.full:
        unchanged_paths.check(plan, root, " after the update")
    for path, op in sorted(plan.files.items()):
        if op.op == Op.DELETE:
            if root.reachable(path) is not None:
                raise OtaError(root.where(path), "still exists after the update deleted it")
            continue
        entry = root.lstat(path)
        kind = {Op.MKDIR: "dir", Op.SYMLINK: "symlink"}.get(op.op, "file")
        if entry is None or entry.kind != kind:
            raise OtaError(root.where(path), f"is not a {kind} after the update")
        if kind == "file" and root.content(path).sha256 != op.target.sha256.hex():
            raise OtaError(root.where(path), "contents are not the target build's after the update")
        if kind == "symlink" and root.readlink(path) != op.symlink_target:
            raise OtaError(
                root.where(path), f'does not point to "{escape(from_bytes(op.symlink_target))}" after the update'
            )
        if (entry.uid, entry.gid) != (op.uid, op.gid) or (kind != "symlink" and entry.mode != op.mode):
            raise OtaError(
                root.where(path),
                f"mode/uid/gid {entry.mode:o}/{entry.uid}/{entry.gid} are not "
                f"the target's {op.mode:o}/{op.uid}/{op.gid} after the update",
            )
    for name, part in sorted(plan.partitions.items()):
        _check_holds(name, part.target, ctx, "does not hold the target image after the update")


def _check_holds(name: str, target: pb.ContentInfo, ctx: protocol.Context, problem: str) -> None:
    """The partition itself (not a cache copy) holds `target`; else OtaError(partition <name>, problem)."""
    partition = open_partition("EMMC", name, ctx.config, ctx.ops, writable=False)
    try:
        load_by_spec(partition.read, [Pair(target.size, Digest("sha256", target.sha256))], f"partition {name}")
    except OtaError:
        raise OtaError(f"partition {name}", problem) from None
    finally:
        partition.close()


def cache_needed(plan: Plan, cache: Cache, staged_dir: str, done: set[str]) -> int:
    """Cache bytes this update still has to add: unstaged entries, the backup slot, the journal.

    The rule (docs/ota_apply.md, "Cache budget"): every entry not yet staged, less what a cut
    staging left behind in the staged directory (staging rewrites it); the largest source of a
    partition still to be patched, less what the backup slot already holds (a save replaces the
    old backup and a stale temporary); and a bound on the journal, less what it and a temporary of
    it hold already.
    """
    complete = {
        staged_name(name)
        for name, size in plan.staged.items()
        if f"stage:{name}" in done or _file_size(os.path.join(staged_dir, staged_name(name))) == size
    }
    unstaged = sum(size for name, size in plan.staged.items() if staged_name(name) not in complete)
    leftovers = sum(_file_size(os.path.join(staged_dir, name)) for name in _listdir(staged_dir) if name not in complete)
    needed = max(0, unstaged - leftovers)
    backups = [
        part.source.size
        for part in plan.partitions.values()
        if part.HasField("source")
        and part.method != pb.WHOLE
        and not plan.full
        and f"partition:{part.name}" not in done
    ]
    if backups:
        needed += max(0, max(backups) - cache.slot_bytes())
    # The whole journal (Journal.room_for: the header and a line per step) bounds what it can take;
    # the journal and any temporary of it (a cut creation) are rewritten, not added to.
    journal = Journal.room_for(step.id for step in plan.steps)
    prefix = os.path.basename(Journal.location(cache.directory))
    written = sum(
        _file_size(os.path.join(cache.directory, name)) for name in _listdir(cache.directory) if name.startswith(prefix)
    )
    return needed + max(0, journal - written)


def backup_sources(plan: Plan) -> list[Digest]:
    """Every source this update may save as the cache backup: patched partitions' and patched
    files' (the low-space path); a backup matching one of them is this update's own."""
    digests = [part.source.sha256 for part in plan.partitions.values() if part.HasField("source")]
    digests += [op.source.sha256.hex() for op in plan.files.values() if op.op == Op.PATCH]
    return [Digest("sha256", digest) for digest in digests]


def is_real_directory(path: str) -> bool:
    """Whether `path` is a directory itself, not a symlink to one: a cache entry such as the staged
    directory is only ours if it is (anyone who can write the cache can plant a link there)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _listdir(directory: str) -> list[str]:
    return os.listdir(directory) if is_real_directory(directory) else []


def _file_size(path: str) -> int:
    """Size of a regular file at `path`, 0 if there is none."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # no file, or no directory to hold one
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def staged_name(entry: str) -> str:
    """A flat cache file name for a package entry (entries are '/'-separated paths)."""
    return entry.replace("%", "%25").replace("/", "%2F")
