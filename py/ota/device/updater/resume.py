"""Which journaled steps a resumed update may skip: only those the device shows done.

Why: the journal lives in the cache, and whoever can write the cache can write a journal. If a
line saying "done" were enough, a forged journal could skip every step and have the build file
say the target build while the system is still the source. So a journal line is only a claim:

1. it must carry the step's result digest (`result_digests`: what the step produces, derived
   from the signed manifest alone), so a line names one step of this package with one outcome;
2. a step with real work (stage, patch, write, partition) is skipped only if the device shows
   that result now: the staged file, the patched or written file, the partition image hashes to
   the manifest's value. Otherwise it runs again; every step is idempotent (plan.py);
3. the cheap phases (wipe, delete, mkdir, symlink, metadata) always run again: each item looks at
   the device first and changes only what differs, so redoing them is their verification;
4. the final check and the build file never come from the journal: they run on every resume.

So a forged journal can at worst make a step run twice; the build file is written only after
the check of every path and partition against the manifest has passed on this run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from ota.device.applypatch import protocol
from ota.device.applypatch.backends import open_partition
from ota.device.applypatch.spec import Digest, Pair, load_by_spec
from ota.device.updater import verify
from ota.device.updater.journal import Journal
from ota.device.updater.plan import Plan, Step
from ota.device.updater.sysroot import SysRoot
from ota.errors import OtaError
from ota.format import hashing
from ota.format.paths import escape, from_bytes

# Steps whose result is checked on the device before they are skipped; every other step reruns.
SKIPPABLE_PHASES = ("stage", "patch", "write", "partition")


def result_digests(plan: Plan) -> dict[str, str]:
    """What each step produces (by step id), as one SHA-256 over a text derived from the manifest
    (never from the device). One pass over the plan: linear in its size."""
    files, payload = plan.files, {entry.name: entry for entry in plan.manifest.payload}
    digests = {}
    for step in plan.steps:
        if step.phase == "stage" and step.key in plan.slices:
            text = f"{plan.slices[step.key].offset} {plan.slices[step.key].length}"
        elif step.phase == "stage":
            text = f"{payload[step.key].size} {payload[step.key].sha256}"
        elif step.phase in ("patch", "write"):
            text = f"{files[step.key].target.size} {files[step.key].target.sha256.hex()}"
        elif step.phase == "partition":
            target = plan.partitions[step.key].target
            text = f"{target.size} {target.sha256}"
        else:
            text = "\n".join(
                f"{escape(path)} {files[path].op} {files[path].mode:o} {files[path].uid} {files[path].gid} "
                f"{escape(from_bytes(files[path].symlink_target))}"
                for path in step.paths
            )
        digests[step.id] = hashlib.sha256(f"{step.id}\n{text}".encode()).hexdigest()
    return digests


@dataclass(frozen=True)
class Resume:
    """A journal read against the plan and the device.

    `claimed`: steps whose journal line carries this plan's result digest (what the journal says
    finished; decides only which step a cut may have left half done). `confirmed`: of those, the
    skippable steps the device shows done; only these are skipped.
    """

    claimed: frozenset[str]
    confirmed: frozenset[str]


def examine(
    plan: Plan,
    journal: Journal,
    root: SysRoot,
    ctx: protocol.Context,
    staged_dir: str,
    read_staged: Callable[[str], bytes],
) -> Resume:
    """Checks each journal claim against the plan and the device (reads only).

    `read_staged` reads a staged item out of the package (engine.staged_reader): a file patch's
    slice of the payload blob has no digest of its own in the manifest, so its staged copy is
    compared with the slice itself, from the blob this run has hashed.
    """
    digests = result_digests(plan)
    claimed = frozenset(step.id for step in plan.steps if journal.claimed.get(step.id) == digests[step.id])
    staged = {entry.name: (entry.size, entry.sha256) for entry in plan.manifest.payload}
    for key in plan.slices:
        if f"stage:{escape(key)}" in claimed:
            data = read_staged(key)
            staged[key] = (len(data), hashlib.sha256(data).hexdigest())
    confirmed = frozenset(
        step.id
        for step in plan.steps
        if step.id in claimed
        and step.phase in SKIPPABLE_PHASES
        and _device_shows(plan, step, root, ctx, staged_dir, staged)
    )
    return Resume(claimed, confirmed)


def _device_shows(
    plan: Plan, step: Step, root: SysRoot, ctx: protocol.Context, staged_dir: str, staged: dict[str, tuple[int, str]]
) -> bool:
    """Whether the device holds `step`'s result now (`staged`: staged key -> size, SHA-256)."""
    if step.phase == "stage":
        path = os.path.join(staged_dir, verify.staged_name(step.key))
        if not verify.is_real_directory(staged_dir) or not os.path.isfile(path) or os.path.islink(path):
            return False
        info = hashing.of_file(path)
        return (info.size, info.sha256) == staged[step.key]
    if step.phase in ("patch", "write"):
        entry = root.reachable(step.key)
        return (
            entry is not None
            and entry.kind == "file"
            and root.content(step.key).sha256 == plan.files[step.key].target.sha256.hex()
        )
    target = plan.partitions[step.key].target
    partition = open_partition("EMMC", step.key, ctx.config, ctx.ops, writable=False)
    try:
        load_by_spec(partition.read, [Pair(target.size, Digest("sha256", target.sha256))], f"partition {step.key}")
    except OtaError:
        return False
    finally:
        partition.close()
    return True
