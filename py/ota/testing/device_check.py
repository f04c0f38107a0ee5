"""End-to-end device checks: materialize a device from one build, apply a package, compare with another.

This is what the `ota_test` Bazel rule runs (and what the ota_apply tests use directly):

1. make a device in a scratch directory from the *source* build: the system tree with every
   file's bytes, mode, uid/gid and symlink, each partition (an image file, or an MTD NAND
   simulator) holding the source image, an empty cache, the build file;
2. apply the package with ota_apply's engine;
3. compare the device with the *target* build: every path (kind, bytes, mode, uid/gid, link
   target), nothing extra, every partition's image, the build file, a clean cache;
4. rerun: it must say "already" and change nothing;
5. with interruptions: cut the apply at every I/O operation it performs (ota.testing.sweep: power
   lost before each operation and half way through each tearable one; with a `LossModel`, each
   cut also loses what was not yet fsync'ed), rerun, and check the same end state each time;
   prints ``interruptions: N, recovered: N``.

uid/gid need a real root (chown to any id). Bazel's linux-sandbox is not one: it maps a single
uid and gid into its user namespace, and chown to any other id fails with EINVAL. So tests that
materialize devices run unsandboxed (tag "no-sandbox"; the ota_test rule sets it), as root.
Elsewhere `materialize` refuses with a clear message rather than comparing something weaker.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field

from ota.actions import tree
from ota.device.applypatch import backends, device_config
from ota.device.applypatch.spec import Digest, Pair, load_by_spec
from ota.device.fsops import FsOps
from ota.device.updater import device as device_mod
from ota.device.updater.engine import ALREADY, apply_package
from ota.device.updater.progress import Progress
from ota.errors import OtaError
from ota.format import jsonio
from ota.format.build_info import BuildInfo
from ota.format.hashing import ContentInfo, of_file
from ota.format.paths import escape
from ota.testing import nandsim
from ota.testing.faults import FaultPoint, FaultyFsOps
from ota.testing.nandsim import NandSim
from ota.testing.page_cache import LossModel
from ota.testing.sweep import SweepResult, sweep

MTD_ERASESIZE = 16 * 1024
MTD_WRITESIZE = 2048


@dataclass(frozen=True)
class Build:
    """One build as the check needs it: identity, tree entries with their bytes, partition images."""

    info: BuildInfo
    entries: tuple[tree.TreeEntry, ...]
    files: dict[str, str]  # install path -> file holding its bytes
    partitions: dict[str, str]  # partition name -> image file


@dataclass(frozen=True)
class Layout:
    """How the test device is set up: partitions backed by "file" | "mtdsim" and their capacity,
    the cache budget, and the public keys it trusts.

    With no `trusted_keys` the device is a development device (signatures not checked); with keys
    it requires a package signed by one of them, as a production device does.
    """

    kinds: dict[str, str]
    capacity: dict[str, int]
    cache_limit: int | None = None
    mtd_bad_blocks: tuple[int, ...] = ()
    trusted_keys: tuple[str, ...] = ()


def layout_for(
    source: Build,
    target: Build,
    mtd: tuple[str, ...] = (),
    cache_limit: int | None = None,
    mtd_bad_blocks: tuple[int, ...] = (),
    trusted_keys: tuple[str, ...] = (),
) -> Layout:
    """Partitions big enough for either image (plus one erase block, so MTD can lose a block)."""
    names = sorted(set(source.partitions) | set(target.partitions))
    capacity = {}
    for name in names:
        biggest = max(os.path.getsize(b.partitions[name]) for b in (source, target) if name in b.partitions)
        blocks = -(-biggest // MTD_ERASESIZE) + 1 + len(mtd_bad_blocks)
        capacity[name] = blocks * MTD_ERASESIZE
    kinds = {name: (nandsim.KIND if name in mtd else "file") for name in names}
    if mtd:
        nandsim.register()  # this process opens the simulated partitions; tools run via testbench_cli
    return Layout(kinds, capacity, cache_limit, mtd_bad_blocks, trusted_keys)


def _chown(path: str, uid: int, gid: int) -> None:
    try:
        os.chown(path, uid, gid, follow_symlinks=False)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        raise OtaError(
            path,
            f"chown to {uid}:{gid}: the id is not mapped in this user namespace "
            f"(a sandbox such as Bazel's linux-sandbox); run the test unsandboxed as "
            f'root (tag "no-sandbox")',
        ) from None


def materialize(build: Build, directory: str, layout: Layout) -> str:
    """Creates a device holding `build` in `directory`; returns its config path (device.json)."""
    if os.geteuid() != 0 and any((e.uid, e.gid) != (os.geteuid(), os.getegid()) for e in build.entries):
        raise OtaError(
            directory,
            "materializing a device with other owners needs root (chown); run the test as root (Bazel's sandbox does)",
        )
    os.makedirs(directory)
    root = os.path.join(directory, "system")
    os.mkdir(root, 0o755)
    for entry in sorted(build.entries, key=lambda e: e.path):
        path = os.path.join(root, entry.path)
        if entry.kind == tree.DIR:
            os.mkdir(path)
        elif entry.kind == tree.SYMLINK:
            os.symlink(entry.target, path)
        else:
            shutil.copyfile(build.files[entry.path], path)
        _chown(path, entry.uid, entry.gid)
        if entry.kind != tree.SYMLINK:
            os.chmod(path, entry.mode)
    lines = ["cache cache" + (f" {layout.cache_limit}" if layout.cache_limit is not None else "")]
    os.mkdir(os.path.join(directory, "cache"))
    os.mkdir(os.path.join(directory, "partitions"))
    for name, kind in sorted(layout.kinds.items()):
        image = os.path.join(directory, "partitions", f"{name}.img")
        lines.append(f"partition {name} {kind} partitions/{name}.img")
        if kind == nandsim.KIND:
            NandSim.create(
                image,
                layout.capacity[name],
                erasesize=MTD_ERASESIZE,
                writesize=MTD_WRITESIZE,
                bad_blocks=layout.mtd_bad_blocks,
            )
        else:
            with open(image, "wb") as stream:
                stream.truncate(layout.capacity[name])
    with open(os.path.join(directory, "partitions.conf"), "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")
    hardware = device_config.load(os.path.join(directory, "partitions.conf"))
    for name, image in sorted(build.partitions.items()):
        with open(image, "rb") as stream:
            data = stream.read()
        partition = backends.open_partition("EMMC", name, hardware, FsOps(), writable=True)
        try:
            partition.write_image(data)
        finally:
            partition.close()
    with open(os.path.join(directory, "build.json"), "wb") as stream:
        stream.write(jsonio.dumps(build.info.to_json()))
    keys = []
    if layout.trusted_keys:
        os.mkdir(os.path.join(directory, "keys"))
    for index, key in enumerate(layout.trusted_keys):
        keys.append(f"keys/{index}.pub.pem")
        shutil.copyfile(key, os.path.join(directory, keys[-1]))
    config = os.path.join(directory, "device.json")
    device_mod.write_config(
        config,
        {
            "name": build.info.device,
            "system_root": "system",
            "build_file": "build.json",
            "partitions": "partitions.conf",
            "trusted_keys": keys,
            "policy": {"require_signature": bool(keys)},
        },
    )
    return config


def snapshot(directory: str) -> dict[str, str]:
    """Everything on a materialized device, one line per path (the device's "full hash" input)."""
    state: dict[str, str] = {}
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(base, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, directory)
            meta = f"{stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid}"
            if stat.S_ISLNK(st.st_mode):
                state[rel] = f"symlink {st.st_uid} {st.st_gid} -> {os.readlink(path)}"
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = f"dir {meta}"
            else:
                state[rel] = f"file {meta} {of_file(path).sha256}"
    return state


def device_hash(directory: str) -> str:
    """One SHA-256 over `snapshot`: equal before and after a refused update. Names are `escape`d,
    so any bytes a name holds (a newline, a byte that is not UTF-8) count, unambiguously."""
    text = "\n".join(f"{escape(k)}\t{escape(v)}" for k, v in sorted(snapshot(directory).items()))
    return hashlib.sha256(text.encode()).hexdigest()


def compare(config: str, target: Build) -> list[str]:
    """What differs between the device and the target build (empty: the device is the target)."""
    device = device_mod.load(config)
    problems: list[str] = []
    expected = {e.path: e for e in target.entries}
    actual = {
        k.removeprefix("system/"): v for k, v in snapshot(os.path.dirname(config)).items() if k.startswith("system/")
    }
    for path in sorted(set(expected) | set(actual)):
        entry = expected.get(path)
        if entry is None:
            problems.append(f"{path}: on the device but not in the target build")
            continue
        if entry.kind == tree.SYMLINK:
            want = f"symlink {entry.uid} {entry.gid} -> {entry.target}"
        elif entry.kind == tree.DIR:
            want = f"dir {entry.mode:o} {entry.uid} {entry.gid}"
        else:
            want = f"file {entry.mode:o} {entry.uid} {entry.gid} {of_file(target.files[path]).sha256}"
        if actual.get(path) != want:
            problems.append(f"{path}: device has {actual.get(path) or 'nothing'}, target build has {want}")
    for name, image in sorted(target.partitions.items()):
        info: ContentInfo = of_file(image)
        partition = backends.open_partition("EMMC", name, device.hardware, FsOps(), writable=False)
        try:
            load_by_spec(partition.read, [Pair(info.size, Digest("sha256", info.sha256))], name)
        except OtaError:
            problems.append(f"partition {name}: does not hold the target image")
        finally:
            partition.close()
    if device.read_build() != target.info:
        problems.append(f"build file: {device.read_build()} is not {target.info}")
    leftovers = sorted(os.listdir(device.cache_dir))
    if leftovers:
        problems.append(f"cache: not empty after the update ({', '.join(leftovers)})")
    return problems


def apply(config: str, package: str, ops: FsOps | None = None) -> str:
    """Runs ota_apply's engine on a materialized device; returns the result status."""
    return apply_package(package, device_mod.load(config), ops=ops or FsOps(), progress=Progress("none")).status


@dataclass
class ApplyScenario:
    """ota_apply under the power-loss harness (`ota.testing.sweep.Scenario`)."""

    source: Build
    target: Build
    package: str
    directory: str
    layout: Layout
    runs: int = 0

    @property
    def config(self) -> str:
        return os.path.join(self.directory, "device.json")

    @property
    def raw_paths(self) -> tuple[str, ...]:
        """The NAND simulator chips: raw flash has no page cache to lose."""
        return tuple(
            os.path.join(self.directory, "partitions", f"{name}.img")
            for name, kind in sorted(self.layout.kinds.items())
            if kind == nandsim.KIND
        )

    def prepare(self) -> None:
        if os.path.exists(self.directory):
            shutil.rmtree(self.directory)
        materialize(self.source, self.directory, self.layout)

    def run(self, ops: FsOps) -> None:
        self.runs += 1
        apply(self.config, self.package, ops)

    def recover(self) -> str | None:
        try:
            apply(self.config, self.package)
        except OtaError as err:
            return str(err)
        return None

    def check(self, recover_error: str | None) -> str | None:
        if recover_error is not None:
            return f"rerun refused: {recover_error}"
        problems = compare(self.config, self.target)
        return "; ".join(problems[:3]) if problems else None


@dataclass
class Report:
    """What `check_update` found; `problems` empty means it passed."""

    problems: list[str] = field(default_factory=list)
    sweep: SweepResult | None = None
    crash_points: int = 0  # of the clean run; the sweep may cover fewer (max_cuts)


def spread(points: list[FaultPoint], limit: int | None) -> list[FaultPoint]:
    """All `points`, or `limit` of them evenly spread over the run (first and last included)."""
    if limit is None or len(points) <= limit:
        return points
    if limit < 2:
        return points[-limit:] if limit > 0 else []
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def check_update(
    source: Build,
    target: Build,
    package: str,
    scratch: str,
    layout: Layout,
    *,
    interrupt: bool,
    max_cuts: int | None = None,
    loss: LossModel | None = None,
) -> Report:
    """Steps 1-5 of the module docstring; `max_cuts` bounds the sweep (None: every crash point),
    `loss` makes each cut a real power cut (None: a process cut)."""
    report = Report()
    scenario = ApplyScenario(source, target, package, os.path.join(scratch, "device"), layout)
    scenario.prepare()
    clean = FaultyFsOps()
    try:
        apply(scenario.config, package, clean)
    except OtaError as err:
        report.problems.append(f"apply failed: {err}")
        return report
    report.problems += compare(scenario.config, target)
    before = device_hash(scenario.directory)
    status = apply(scenario.config, package)
    if status != ALREADY or device_hash(scenario.directory) != before:
        report.problems.append(
            f"rerun after success: status {status!r}, device changed: {device_hash(scenario.directory) != before}"
        )
    if interrupt:
        report.crash_points = len(clean.crash_points())
        report.sweep = sweep(scenario, spread(clean.crash_points(), max_cuts), loss=loss)
        for outcome in report.sweep.failures():
            report.problems.append(f"cut at {outcome.point}: {outcome.problem}")
    return report
