"""ota_apply's top level: check everything, cheapest first, then change the device step by step.

    0. the signature over manifest.pb, with the device's trusted keys (`ota.format.signing`); before it,
       only the zip's end record, directory and the two signed entries are read, each bounded
       (`ota.format.package_reader.read_signed_parts`);
    1. the manifest's own structure (`ota.format.package_reader`), the journal, and the preconditions:
       device name, source build, timestamp policy, partitions the device config lists, each on
       its own device, whole images that fit (`verify.check_preconditions`) - all on the
       manifest's header;
    2. the zip against the manifest (entries, sizes), then the manifest's rules and the plan
       (`manifest_rules`, `plan`), then every payload entry hashed;
    3. sources: every whole file's data against its target, every unchanged directory's digest
       (`unchanged_paths`), every kept/patched file and every partition (applypatch check
       semantics), every
       other path holds nothing, the source build's entry or the target, every check-only
       partition already holds its target, and every patch is dry-run;
    4. cache space for what is still to be staged plus the partition backup;
    5.-7. the journaled steps (execute.py): stage, change, verify, build file, clean up.

Everything that can make an update fail is decided before step 5 (except, in step 4, loose
files applypatch's cleaner may delete, and only once the space check knows deleting them is
enough), so every refusal leaves the device as it was; each check after the writes
(`verify.check_results`) has its counterpart before them. A journal in the cache names the
package it belongs to: a rerun of the same package resumes, skipping only the steps the device
shows finished (resume.py); a different incremental package is
refused until the first one is finished, and a FULL package (which checks nothing it does not
rewrite) replaces the unfinished update: the way out of every stuck state (docs/ota_apply.md,
"Stuck states and the way out").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from ota.device.applypatch import protocol
from ota.device.applypatch.cache import Cache, exclusive
from ota.device.fsops import FsOps
from ota.device.updater import resume, verify
from ota.device.updater.device import Device
from ota.device.updater.execute import STAGED_DIR, TEMP_SUFFIX, Executor
from ota.device.updater.journal import Journal
from ota.device.updater.manifest_rules import shown
from ota.device.updater.plan import Plan, make_plan
from ota.device.updater.progress import Progress
from ota.device.updater.sysroot import SysRoot
from ota.errors import OtaError
from ota.format import layout, package_reader, signing
from ota.format.paths import from_bytes
from ota.proto import ota_manifest_pb2 as pb

ALREADY = "already"
APPLIED = "applied"


@dataclass(frozen=True)
class Result:
    """What a run did: `status` ALREADY or APPLIED, the target build, whether it resumed a cut run."""

    status: str
    fingerprint: str
    resumed: bool = False


def check_signature(package: package_reader.Package, device: Device) -> None:
    """Step 0: the signature over the manifest bytes the reader parsed, by a key the device trusts.

    Verifying the reader's own `manifest_bytes` (not a second read of the file) means the bytes
    authenticated are the bytes applied. Skipped only on a device whose policy does not require
    signatures and that lists no trusted key (a development device).
    """
    if not device.trusted_keys and not device.policy.require_signature:
        return
    if package.signature is None:
        raise OtaError(package.path, f"unsigned: no {layout.SIGNATURE_ENTRY} entry")
    keys = [signing.load_public_key(path) for path in device.trusted_keys]
    signing.verify_manifest(package.manifest_bytes, package.signature, keys, where=package.path)


def apply_package(
    package_path: str, device: Device, *, ops: FsOps, progress: Progress, log: Callable[[str], None] = lambda line: None
) -> Result:
    """Applies the package at `package_path` to `device`; raises OtaError on any refusal or failure.

    No other error escapes: an OSError or MemoryError from anywhere below (a name the kernel
    refuses, a disk error, a process memory limit) becomes one line too.
    """
    try:
        with package_reader.open_package(package_path) as package:
            check_signature(package, device)
            with exclusive(device.cache_dir):
                return _apply_opened(package, device, ops, progress, log)
    except OSError as err:
        name = err.filename if isinstance(err.filename, str) else ""
        where = name if name and len(name) <= 200 and name.isprintable() else package_path
        problem = err.strerror or type(err).__name__
        raise OtaError(where, problem if where == name else f"{problem}{f' ({shown(name)})' if name else ''}") from None
    except MemoryError:
        raise OtaError(
            package_path,
            "out of memory: the update needs more than this process may allocate "
            "(patching holds one file's source, patch and target at once)",
        ) from None


def _apply_opened(
    package: package_reader.Package, device: Device, ops: FsOps, progress: Progress, log: Callable[[str], None]
) -> Result:
    header = package.header
    package_id = hashlib.sha256(package.manifest_bytes).hexdigest()
    cache_dir = device.cache_dir
    full = header.type == pb.OtaManifest.FULL
    try:
        journal = Journal.load(cache_dir, ops)
        unfinished = journal is not None
    except OtaError:
        if not full:
            raise
        # An unreadable journal: only a FULL package, which rewrites everything, replaces it.
        journal, unfinished = None, True
    if journal is not None and journal.package_id != package_id:
        if not full:
            raise OtaError(
                journal.path,
                f"an unfinished update of another package ({journal.package_id[:16]}) is "
                "in progress; rerun that package, or apply a full package",
            )
        journal = None  # a FULL package rewrites everything: it takes over (Journal.begin replaces it)
    current = device.read_build()
    target = header.postcondition.build_fingerprint[0] if header.postcondition.build_fingerprint else ""
    # "Already there" only when no update is unfinished: the build file is written last.
    if not unfinished and current.fingerprint == target and current.device == device.name:
        progress.finish()
        return Result(ALREADY, target)
    verify.check_preconditions(header, device, current, resuming=journal is not None, where=package.path, ops=ops)
    manifest = package.manifest
    package.check_contents()
    plan = make_plan(manifest, package.path, package.payload)
    verify.check_plan(plan, package.path)
    package.verify_all()
    root = SysRoot(device.system_root, ops)
    try:
        cache = Cache(cache_dir, device.hardware.cache_limit)
        ctx = protocol.Context(config=verify.partition_map(device), cache=cache, ops=ops, out=log)
        staged_dir = os.path.join(cache_dir, STAGED_DIR)
        claimed = None
        read_staged = staged_reader(package, plan)
        if journal is not None:  # a claim counts only where the device shows it (resume.py)
            found = resume.examine(plan, journal, root, ctx, staged_dir, read_staged)
            claimed, journal.done = set(found.claimed), set(found.confirmed)
        read_whole = whole_reader(package)
        verify.check_sources(plan, root, ctx, progress, read_staged, read_whole, package.path, claimed)
        _refuse_directories_at_state_files(plan, cache, staged_dir, device.build_file)
        _ensure_cache_space(plan, cache, staged_dir, journal, ops)
        resumed = journal is not None
        if journal is None:
            journal = Journal.begin(cache_dir, package_id, ops)
        Executor(plan, read_staged, read_whole, root, ctx, staged_dir, device.build_file, journal, progress).run()
    finally:
        root.close()
    progress.finish()
    return Result(APPLIED, target, resumed)


def staged_reader(package: package_reader.Package, plan: Plan) -> Callable[[str], bytes]:
    """Reads a staged item by its plan key: a file patch's slice of the payload blob, or a
    partition's entry (hash-checked by the reader)."""

    def read(key: str) -> bytes:
        data = plan.slices.get(key)
        return package.read(key) if data is None else package.read_slice(data, data.length)

    return read


def whole_reader(package: package_reader.Package) -> Callable[[pb.FileOperation], bytes]:
    """Reads a WRITE's whole contents out of the blob and checks them against its target, so the
    bytes written are the signed target's even if the package file changed after `verify_all`."""

    def read(op: pb.FileOperation) -> bytes:
        data = package.read_slice(op.data, op.target.size)
        if hashlib.sha256(data).digest() != op.target.sha256:
            raise OtaError(
                package.path,
                f"{layout.slice_key(op.data.offset, op.data.length)} (the data of {shown(from_bytes(op.path))}) "
                "is not the target contents",
            )
        return data

    return read


def _refuse_directories_at_state_files(plan: Plan, cache: Cache, staged_dir: str, build_file: str) -> None:
    """Refuses, before the first write, a directory at a name the steps create as a file.

    Each such file is made as a temporary and renamed into place (execute.atomic_write,
    Journal.begin, Cache.save_backup), and whatever other entry sits at those names is replaced;
    a directory is not, as it may hold what is not the update's. Found only at its step, it would
    stop the update half way, and again on every rerun.
    """
    names = [Journal.temp_location(cache.directory), cache.backup_temp_path, build_file + TEMP_SUFFIX]
    if verify.is_real_directory(staged_dir):
        staged = [os.path.join(staged_dir, verify.staged_name(key)) for key in plan.staged]
        names += staged + [path + TEMP_SUFFIX for path in staged]
    for name in names:
        if verify.is_real_directory(name):
            raise OtaError(name, "is a directory where the update writes a file of its own; remove it, then rerun")


def _ensure_cache_space(plan: Plan, cache: Cache, staged_dir: str, journal: Journal | None, ops: FsOps) -> None:
    """Step 4: refuses (writing nothing) unless the cache is writable and what is still to be written
    fits in it, and no other update's backup is in the slot; then frees loose files if that is needed (never recovery state: cache.is_recovery_state)."""
    cache.check_writable()
    sources = verify.backup_sources(plan)
    if sources:  # an update that never saves a backup (a FULL package writes every image whole) keeps the slot as it is
        cache.claim_slot(sources)
    done = journal.done if journal is not None else set()
    cache.make_free_space(verify.cache_needed(plan, cache, staged_dir, done), ops)
