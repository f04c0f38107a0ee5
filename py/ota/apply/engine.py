"""ota_apply's top level: check everything, then change the device step by step under a journal.

    0. signature over manifest.pb, with the device's trusted keys (`ota.signing`);
    1. the package: every entry the manifest lists exists and hashes right (`ota.package_reader`);
    2. preconditions: device name, source build, timestamp policy; the manifest's own rules
       (`manifest_rules`: name and path lengths, parents, whole entries, metadata, source kinds);
    3. sources: every kept/patched file and every partition (applypatch check semantics), every
       other path holds nothing, the source build's entry or the target, and every patch is
       dry-run in memory against its target;
    4. cache space for what is still to be staged plus the partition backup;
    5.-7. the journaled steps (execute.py): stage, change, verify, build file, clean up.

Nothing is written before step 5 (except, in step 4, loose files applypatch's cleaner may delete,
and only once the space check knows deleting them is enough), so every refusal leaves the device
as it was. A journal in the cache names the package it belongs to: a rerun of the same package
resumes; a different package is refused until the first one is finished.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from ota import package_reader, signing
from ota.apply import verify
from ota.apply.device import Device
from ota.apply.execute import STAGED_DIR, Executor
from ota.apply.journal import Journal
from ota.apply.manifest_rules import shown
from ota.apply.plan import Plan, make_plan
from ota.apply.progress import Progress
from ota.apply.sysroot import SysRoot
from ota.applypatch import protocol
from ota.applypatch.cache import Cache
from ota.errors import OtaError
from ota.fsops import FsOps

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
        raise OtaError(package.path, f"unsigned: no {signing.SIGNATURE_ENTRY} entry")
    keys = [signing.load_public_key(path) for path in device.trusted_keys]
    signing.verify_manifest(package.manifest_bytes, package.signature, keys, where=package.path)


def apply_package(package_path: str, device: Device, *, ops: FsOps, progress: Progress,
                  log: Callable[[str], None] = lambda line: None) -> Result:
    """Applies the package at `package_path` to `device`; raises OtaError on any refusal or failure.

    No other error escapes: an OSError or MemoryError from anywhere below (a name the kernel
    refuses, a disk error, a process memory limit) becomes one line too.
    """
    try:
        with package_reader.open_package(package_path) as package:
            check_signature(package, device)
            package.verify_all()
            return _apply_opened(package, device, ops, progress, log)
    except OSError as err:
        name = err.filename if isinstance(err.filename, str) else ""
        where = name if name and len(name) <= 200 and name.isprintable() else package_path
        problem = err.strerror or type(err).__name__
        raise OtaError(where, problem if where == name else f"{problem}{f' ({shown(name)})' if name else ''}") from None
    except MemoryError:
        raise OtaError(package_path, "out of memory: the update needs more than this process may allocate "
                                     "(patching holds one file's source, patch and target at once)") from None


def _apply_opened(package: package_reader.Package, device: Device, ops: FsOps, progress: Progress,
                  log: Callable[[str], None]) -> Result:
    manifest = package.manifest
    package_id = hashlib.sha256(package.manifest_bytes).hexdigest()
    cache_dir = device.cache_dir
    journal = Journal.load(cache_dir, ops)
    if journal is not None and journal.package_id != package_id:
        raise OtaError(journal.path, f"an unfinished update of another package ({journal.package_id[:16]}) is "
                                     "in progress; rerun that package first")
    current = device.read_build()
    target = manifest.postcondition.build_fingerprint[0] if manifest.postcondition.build_fingerprint else ""
    if journal is None and current.fingerprint == target and current.device == device.name:
        progress.finish()
        return Result(ALREADY, target)
    plan = make_plan(manifest, package.path, package.payload)
    verify.check_preconditions(plan, device, current, resuming=journal is not None, where=package.path)

    root = SysRoot(device.system_root, ops)
    try:
        cache = Cache(cache_dir, device.hardware.cache_limit)
        ctx = protocol.Context(config=device.hardware, cache=cache, ops=ops, out=log)
        verify.check_sources(plan, root, ctx, progress, package.read, package.path,
                             journal.done if journal is not None else None)
        staged_dir = os.path.join(cache_dir, STAGED_DIR)
        _ensure_cache_space(plan, cache, staged_dir, journal, ops)
        resumed = journal is not None
        if journal is None:
            journal = Journal.begin(cache_dir, package_id, ops)
        Executor(plan, package.read, root, ctx, staged_dir, device.build_file, journal, progress).run()
    finally:
        root.close()
    progress.finish()
    return Result(APPLIED, target, resumed)


def _ensure_cache_space(plan: Plan, cache: Cache, staged_dir: str, journal: Journal | None, ops: FsOps) -> None:
    """Step 4: refuses (writing nothing) unless what is still to be written fits in the cache."""
    done = journal.done if journal is not None else set()
    needed = verify.cache_needed(plan, cache.directory, staged_dir, done)
    free = cache.free_bytes()
    if free >= needed + cache.reserve:
        return
    protect = {os.path.basename(Journal.location(cache.directory))}
    freeable = verify.freeable_bytes(cache.directory, protect)
    if free + freeable < needed + cache.reserve:
        raise OtaError(cache.directory, f"not enough cache space: the update needs {needed} bytes plus a "
                                        f"{cache.reserve}-byte reserve, {free} are free and at most {freeable} "
                                        "could be freed")
    cache.make_free_space(needed, ops, protect=[Journal.location(cache.directory)])
