"""The ordered steps of an update, derived from the package manifest alone.

Every step has a stable id (its journal key) and is idempotent: run again after a cut, it finds
either its work not started, half done (temporary names, a torn partition with a cache backup) or
done, and finishes it. That is what lets the journal be a plain list of finished steps.

Order (AOSP's, docs/formats.md#update-order, adjusted where our manifest allows better):
  stage     copy every patch (a file's slice of the payload blob, or a partition's entry) and
            partition image into the cache;
  wipe      FULL packages only: remove everything the target does not list (AOSP formats /system);
  delete    paths only in the source, deepest first;
  mkdir     directories, parents first (new files may live in new directories, so before writing);
  patch     changed files, from staged patches (applypatch's file protocol);
  write     whole files from the package;
  symlink   links, created atomically (temp link + rename);
  metadata  mode/uid/gid of every target path, deepest first;
  partition raw partitions (applypatch's cache-backup protocol);
  check     every target path and partition against the manifest;
  build     the device's build file, last, so a cut update still reports the source build.
"""

from __future__ import annotations

from dataclasses import dataclass

from ota.device.updater.manifest_rules import check_manifest
from ota.format.layout import slice_key
from ota.format.paths import escape, from_bytes, sort_key
from ota.proto import ota_manifest_pb2 as pb

Op = pb.FileOperation
PHASES = ("stage", "wipe", "delete", "mkdir", "patch", "write", "symlink", "metadata", "partition", "check", "build")
BATCHED_PHASES = ("delete", "mkdir", "symlink", "metadata")


@dataclass(frozen=True)
class Step:
    """One journaled unit of work: `phase` + `key` (a path, entry or partition name).

    Cheap phases (delete, mkdir, symlink, metadata) are one step over all their `paths`: each
    item is idempotent and quick to redo, so a journal line (and an fsync) per item would cost
    more than redoing the phase after a cut.
    """

    phase: str
    key: str
    size: int
    paths: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """`phase:key`, the key `escape`d: one printable line whatever bytes a path holds, so a
        journal line (py/ota/device/updater/journal.py) stays one line per step."""
        return f"{self.phase}:{escape(self.key)}"


@dataclass(frozen=True)
class Plan:
    """The manifest, indexed for the apply: ops by path, partitions by name, steps in order.

    `files` keys are the paths as `str` (`paths.from_bytes` of the manifest's bytes).
    """

    manifest: pb.OtaManifest
    files: dict[str, pb.FileOperation]
    partitions: dict[str, pb.PartitionOperation]
    steps: tuple[Step, ...]
    # What is copied into the cache -> size: file patches (by `slice_key`), partition patches/images
    # (by entry name).
    staged: dict[str, int]
    # The file patches among `staged`: slice key -> where the patch lies in the payload blob.
    slices: dict[str, pb.DataSlice]

    @property
    def full(self) -> bool:
        return self.manifest.type == pb.OtaManifest.FULL


def _depth_first(paths: list[str]) -> list[str]:
    return sorted(paths, key=lambda p: (-p.count("/"), sort_key(p)))


def _parents_first(paths: list[str]) -> list[str]:
    return sorted(paths, key=lambda p: (p.count("/"), sort_key(p)))


def make_plan(manifest: pb.OtaManifest, where: str, payload: dict[str, pb.PayloadEntry]) -> Plan:
    """Orders the manifest's operations into steps, after `manifest_rules` accepted it.

    The package reader has already refused unsafe or repeated paths, unknown ops and operations
    naming entries the package lacks; `payload` are its payload entries by name.
    """
    check_manifest(manifest, where, payload)
    files = {from_bytes(op.path): op for op in manifest.files}
    deletes = [path for path, op in files.items() if op.op == Op.DELETE]
    partitions = {part.name: part for part in manifest.partitions}

    def of(kind: int) -> list[pb.FileOperation]:
        return [op for op in files.values() if op.op == kind]

    def of_paths(kind: int) -> list[str]:
        return [path for path, op in files.items() if op.op == kind]

    slices = {slice_key(op.data.offset, op.data.length): op.data for op in of(Op.PATCH)}
    staged = {key: data.length for key, data in slices.items()}
    staged.update({p.entry: payload[p.entry].size for p in partitions.values() if p.entry})
    steps = [Step("stage", name, size) for name, size in sorted(staged.items())]
    if manifest.type == pb.OtaManifest.FULL:
        steps.append(Step("wipe", "-", 0))
    steps.append(Step("delete", "-", 0, tuple(_depth_first(deletes))))
    steps.append(Step("mkdir", "-", 0, tuple(_parents_first(of_paths(Op.MKDIR)))))
    steps += [Step("patch", path, op.target.size) for path, op in files.items() if op.op == Op.PATCH]
    steps += [Step("write", path, op.target.size) for path, op in files.items() if op.op == Op.WRITE]
    steps.append(Step("symlink", "-", 0, tuple(sorted(of_paths(Op.SYMLINK), key=sort_key))))
    steps.append(Step("metadata", "-", 0, tuple(p for p in _depth_first(list(files)) if files[p].op != Op.DELETE)))
    steps += [Step("partition", name, part.target.size) for name, part in sorted(partitions.items()) if part.entry]
    steps += [Step("check", "-", sum(op.target.size for op in files.values())), Step("build", "-", 0)]
    return Plan(manifest, files, partitions, tuple(steps), staged, slices)
