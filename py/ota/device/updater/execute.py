"""Runs the steps of a plan against a device, each one journaled when finished.

Every step is written so that running it again, from any state a power cut can leave, finishes
it (see plan.py). Every file and symlink of the system tree is written through `SysRoot` (made in
its reserved scratch directory, fsync, renamed in, never following a symlink) -- patched files
too: applypatch's protocol (which owns the cache backup that makes a torn partition repairable)
patches them through a `RootFile`, so no path is reopened by name after it was checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ota.device.applypatch import protocol
from ota.device.fsops import FsOps
from ota.device.updater import verify
from ota.device.updater.journal import Journal
from ota.device.updater.plan import BATCHED_PHASES, Op, Plan, Step
from ota.device.updater.progress import APPLY_SHARE, Progress
from ota.device.updater.resume import result_digests
from ota.device.updater.sysroot import LOST_FOUND, SysRoot
from ota.errors import OtaError
from ota.format import jsonio
from ota.format.build_info import BuildInfo
from ota.format.paths import escape
from ota.proto import ota_manifest_pb2 as pb

STAGED_DIR = "ota_staged"
TEMP_SUFFIX = ".new"  # atomic_write's temporary: `<path>.new`
_SOURCE_KIND = {pb.FileOperation.SOURCE_FILE: "file", pb.FileOperation.SOURCE_SYMLINK: "symlink"}
_KIND_OF_OP = {Op.MKDIR: "dir", Op.SYMLINK: "symlink", Op.WRITE: "file", Op.PATCH: "file", Op.KEEP: "file"}


def atomic_write(ops: FsOps, path: str, data: bytes, piece: int = 1 << 20) -> None:
    """Writes a device-state file (staged patch, build file): temp name, fsync, rename, fsync dir."""
    temp = path + TEMP_SUFFIX
    fd = ops.create(temp, 0o644)
    try:
        ops.write_pieces(fd, data, temp, piece)
        ops.fsync(fd, temp)
    finally:
        os.close(fd)
    ops.rename(temp, path)
    ops.fsync_dir(os.path.dirname(path))


@dataclass
class Executor:
    """Everything the steps act on."""

    plan: Plan
    # A staged item's bytes, by its key in `plan.staged`; a WRITE's whole contents, checked.
    read_entry: Callable[[str], bytes]
    read_whole: Callable[[pb.FileOperation], bytes]
    root: SysRoot
    ctx: protocol.Context
    staged_dir: str
    build_file: str
    journal: Journal
    progress: Progress

    @property
    def ops(self) -> FsOps:
        return self.ctx.ops

    def run(self) -> None:
        """Runs every step not in `journal.done` in order, then removes the staged data and the journal.

        On a resumed run `journal.done` holds only the steps the device shows finished
        (ota.device.updater.resume); the check and the build file always run.
        """
        steps = [s for s in self.plan.steps if s.id not in self.journal.done]
        digests = result_digests(self.plan)
        self.progress.phase(APPLY_SHARE, sum(s.size for s in steps), sum(len(s.paths) or 1 for s in steps))
        for step in steps:
            handler = getattr(self, f"_{step.phase}")
            # What a failure names: the step id (`write:etc/x`), or for a step over many paths
            # (`delete:-`) the path it failed on, and for the build step the build file.
            where = step.id
            try:
                if step.phase in BATCHED_PHASES:
                    for path in step.paths:
                        where = f"{step.phase}:{escape(path)}"
                        handler(path)
                        self.progress.item(step.phase, path, 0)
                else:
                    if step.phase == "build":
                        where = f"{step.phase}:{self.build_file}"
                    handler(step)
                    self.progress.item(step.phase, step.key, step.size)
            except OSError as err:
                raise OtaError(where, f"{err.strerror or err}") from None
            try:
                self.journal.mark(step.id, digests[step.id])
            except OSError as err:
                raise OtaError(self.journal.path, f"recording {step.id}: {err.strerror or err}") from None
        try:
            self._clean_up()
        except OSError as err:
            failed = (
                err.filename if isinstance(err.filename, str) else self.staged_dir
            )  # staged data, backup or journal
            raise OtaError(failed, f"cleaning up: {err.strerror or err}") from None

    def staged(self, entry: str) -> str:
        return os.path.join(self.staged_dir, verify.staged_name(entry))

    # -- steps (named after the phases) ----------------------------------------------------------

    def _stage(self, step: Step) -> None:
        path = self.staged(step.key)
        if not verify.is_real_directory(self.staged_dir):
            # The name is reserved recovery state (cache.is_recovery_state): anything else there --
            # a file, or a symlink that would send the staged data out of the cache -- is not ours.
            if os.path.lexists(self.staged_dir):
                self.ops.unlink(self.staged_dir)
            self.ops.perform("mkdir", self.staged_dir, lambda: os.mkdir(self.staged_dir, 0o700))
            self.ops.fsync_dir(os.path.dirname(self.staged_dir))
        atomic_write(self.ops, path, self.read_entry(step.key))

    def _wipe(self, step: Step) -> None:
        """FULL packages: remove every path the target does not have with the same kind."""
        wanted = {path: _KIND_OF_OP[op.op] for path, op in self.plan.files.items() if op.op != Op.DELETE}
        keep = {LOST_FOUND} if self.root.has_own_lost_found(wanted) else set()
        self._wipe_under("", wanted, keep)

    def _wipe_under(
        self, directory: str, wanted: dict[str, str], keep: set[str] | frozenset[str] = frozenset()
    ) -> None:
        """Removes under `directory` what `wanted` does not list; `keep` are root names that are
        the file system's (its own lost+found), left alone with their contents unread."""
        for name in self.root.listdir(directory):
            path = f"{directory}/{name}" if directory else name
            if path in keep:
                continue
            entry = self.root.lstat(path)
            if entry is None:
                continue
            if wanted.get(path) == entry.kind:
                if entry.kind == "dir":
                    self._wipe_under(path, wanted)
                continue
            if entry.kind == "dir":
                self._wipe_under(path, {})
            self.root.remove(path)

    def _delete(self, path: str) -> None:
        self.root.remove(path)

    def _mkdir(self, path: str) -> None:
        op = self.plan.files[path]
        entry = self.root.lstat(path)
        if entry is not None and entry.kind == "dir":
            return
        if entry is not None:
            if entry.kind != _SOURCE_KIND.get(op.source_kind):  # changed since verification: not ours
                raise OtaError(
                    self.root.where(path),
                    f"is {entry.shown}; the update expected the source build's entry or a directory here",
                )
            self.root.remove(path)  # a source file or link that becomes a directory
        self.root.mkdir(path, op.mode)

    def _patch(self, step: Step) -> None:
        op = self.plan.files[step.key]
        request = verify.file_request(self.root, op, self.staged(verify.patch_key(op)))
        protocol.patch(self.ctx, request, self.root.file(step.key))

    def _write(self, step: Step) -> None:
        op = self.plan.files[step.key]
        entry = self.root.lstat(step.key)
        if entry is not None and entry.kind == "file" and self.root.content(step.key).sha256 == op.target.sha256.hex():
            return
        data = self.read_whole(op)  # checked against the target's size and SHA-256
        if entry is not None and entry.kind == "dir":
            self.root.remove(step.key)  # emptied by the delete phase: a directory that becomes a file
        self.root.write_file(step.key, [data], op.mode, op.uid, op.gid)

    def _symlink(self, path: str) -> None:
        op = self.plan.files[path]
        entry = self.root.lstat(path)
        if entry is not None and entry.kind == "symlink" and self.root.readlink(path) == op.symlink_target:
            return
        if entry is not None and entry.kind == "dir":
            self.root.remove(path)
        self.root.symlink(path, op.symlink_target, op.uid, op.gid)

    def _metadata(self, path: str) -> None:
        op = self.plan.files[path]
        self.root.set_metadata(path, op.mode, op.uid, op.gid)

    def _partition(self, step: Step) -> None:
        part = self.plan.partitions[step.key]
        staged = self.staged(part.entry)
        if part.method == pb.WHOLE:
            protocol.flash(self.ctx, staged, f"EMMC:{part.name}:{part.target.size}:{part.target.sha256}")
            return
        protocol.patch(self.ctx, verify.partition_request(part, staged))

    def _check(self, step: Step) -> None:
        verify.check_results(self.plan, self.root, self.ctx)

    def _build(self, step: Step) -> None:
        post = self.plan.manifest.postcondition
        info = BuildInfo(post.device[0] if post.device else "", post.build_fingerprint[0], post.timestamp)
        atomic_write(self.ops, self.build_file, jsonio.dumps(info.to_json()))

    def _clean_up(self) -> None:
        if os.path.lexists(self.staged_dir):
            self._remove_staged(self.staged_dir)
            self.ops.fsync_dir(os.path.dirname(self.staged_dir))
        self.ctx.cache.remove_backup(self.ops)
        self.root.drop_scratch()
        self.journal.clear()

    def _remove_staged(self, path: str) -> None:
        """Removes `path` under the staged directory, a reserved name (cache.is_recovery_state): all
        of it is this update's, whatever else was put there. A symlink is removed, never followed."""
        if not verify.is_real_directory(path):
            self.ops.unlink(path)
            return
        for name in sorted(os.listdir(path)):
            self._remove_staged(os.path.join(path, name))
        self.ops.perform("rmdir", path, lambda: os.rmdir(path))
