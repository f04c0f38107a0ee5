"""Power-loss scenarios for applypatch: a real boot-image update on each backend, cut at every step.

Shared by the tests and `bench/applypatch_crash_points.py`. Each scenario owns a small "device"
in a work directory (a partition on a file, a loop device or the NAND simulator, a cache
directory, the patch) and implements `ota.testing.sweep.Scenario`: `prepare` restores the source state,
`run` applies the update through an `FsOps` that may cut it, `recover` reruns it cleanly, `check`
demands the target bytes in place, the backup gone and no scratch file left.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import random
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ota.actions import imgdiff
from ota.device.applypatch import protocol
from ota.device.applypatch.backends import MtdPartition, open_partition
from ota.device.applypatch.cache import Cache
from ota.device.applypatch.device_config import DeviceConfig, PartitionEntry
from ota.device.applypatch.spec import Digest
from ota.device.fsops import FsOps
from ota.errors import OtaError
from ota.format import bootimg
from ota.testing import nandsim
from ota.testing.nandsim import NandSim

MIB = 1 << 20


@dataclass(frozen=True)
class BootUpdate:
    """Two Android boot images (v0: raw kernel + gzip ramdisk) and the IMGDIFF2 patch between them."""

    source: bytes
    target: bytes
    patch: bytes

    @classmethod
    def make(cls, kernel_size: int = 4 * MIB, seed: int = 2009) -> BootUpdate:
        rng = random.Random(seed)
        kernel = bytearray(rng.randbytes(kernel_size))
        new_kernel = bytearray(kernel)
        for _ in range(16):  # scattered small changes, like a rebuilt kernel with a few fixes
            at = rng.randrange(kernel_size - 4096)
            new_kernel[at : at + 64] = rng.randbytes(64)
        new_kernel[kernel_size // 2 : kernel_size // 2] = rng.randbytes(20_000)
        files = b"".join(b"/init.rc line %d: service %d\n" % (i, rng.randrange(1 << 20)) for i in range(4_000))
        images = []
        for kernel_bytes, ramdisk in ((kernel, files), (new_kernel, files.replace(b"service 1", b"service 9"))):
            boot = bootimg.BootImage(
                header_version=0,
                kernel=bytes(kernel_bytes),
                ramdisk=gzip.compress(ramdisk, 6, mtime=0),
                cmdline=b"console=ttyS0",
            )
            images.append(bootimg.build(boot))
        source, target = images
        return cls(source, target, imgdiff.make_image_patch(source, target))

    def spec(self, kind: str, name: str) -> str:
        """The AOSP-style spec listing both images, as the OTA script passes it."""
        return (
            f"{kind}:{name}:{len(self.source)}:{hashlib.sha1(self.source).hexdigest()}"
            f":{len(self.target)}:{hashlib.sha1(self.target).hexdigest()}"
        )

    def request(self, source: str, target: str, patch_path: str) -> protocol.PatchRequest:
        return protocol.PatchRequest(
            source, target, len(self.target), Digest.of(self.target), ((Digest.of(self.source), patch_path),)
        )


def _losetup() -> str | None:
    """util-linux puts losetup in /usr/sbin, which Bazel's strict action PATH leaves out."""
    return shutil.which("losetup", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def loop_unavailable() -> str | None:
    """Why loop-device tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "loop devices need root (losetup)"
    if _losetup() is None:
        return "losetup is not installed"
    if not os.path.exists("/dev/loop-control"):
        return "/dev/loop-control is missing (sandbox or container without loop devices)"
    return None


@contextlib.contextmanager
def loop_device(backing: str) -> Iterator[str]:
    """Attaches `backing` to a free loop device and always detaches it."""
    result = subprocess.run([_losetup(), "--find", "--show", backing], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise OSError(f"losetup failed: {result.stderr.strip()}")
    device = result.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run([_losetup(), "--detach", device], check=False)


def rerun(run: Callable[[FsOps], None]) -> str | None:
    """Runs a scenario again with no fault (the rerun after power returns); its error, or None."""
    try:
        run(FsOps())
    except OtaError as err:
        return str(err)
    return None


class PartitionScenario:
    """A boot partition patched in place on backend "file", "block" (a loop device) or "mtdsim"."""

    def __init__(
        self,
        workdir: str,
        update: BootUpdate,
        backend: str,
        *,
        partition_size: int = 6 * MIB,
        piece: int = MIB,
        device_path: str | None = None,
        erasesize: int = 256 * 1024,
        writesize: int = 4096,
        bad_blocks: tuple[int, ...] = (3, 10),
    ) -> None:
        self.update, self.backend, self.piece = update, backend, piece
        self.partition_size, self.erasesize, self.writesize, self.bad_blocks = (
            partition_size,
            erasesize,
            writesize,
            bad_blocks,
        )
        self.cache_dir = os.path.join(workdir, "cache")
        self.patch_path = os.path.join(workdir, "boot.img.p")
        os.makedirs(self.cache_dir, exist_ok=True)
        with open(self.patch_path, "wb") as stream:
            stream.write(update.patch)
        if backend == "block":
            if device_path is None:
                raise ValueError("the block backend needs device_path (an attached loop device)")
            self.device_path = device_path
        else:
            self.device_path = os.path.join(workdir, "boot.part")
        if backend == nandsim.KIND:
            nandsim.register()
        self.config = DeviceConfig({"boot": PartitionEntry("boot", backend, self.device_path)})
        # Raw NAND has no page cache: what a program or erase reaches stays (the lossy power cut).
        self.raw_paths = (self.device_path,) if backend == "mtdsim" else ()
        self.spec = update.spec("MTD" if backend == "mtdsim" else "EMMC", "boot")

    def context(self, ops: FsOps) -> protocol.Context:
        return protocol.Context(
            self.config, Cache(self.cache_dir, piece=self.piece), ops, self.piece, out=lambda _: None
        )

    def prepare(self) -> None:
        for name in os.listdir(self.cache_dir):
            os.unlink(os.path.join(self.cache_dir, name))
        image = self.update.source
        if self.backend == "mtdsim":
            NandSim.create(
                self.device_path,
                self.partition_size,
                erasesize=self.erasesize,
                writesize=self.writesize,
                bad_blocks=self.bad_blocks,
            )
            flash = MtdPartition("MTD:boot", NandSim(self.device_path, FsOps()))
            try:
                flash.write_image(image)
            finally:
                flash.close()
            return
        flags = os.O_WRONLY | (0 if self.backend == "block" else os.O_CREAT | os.O_TRUNC)
        fd = os.open(self.device_path, flags, 0o644)
        try:
            os.pwrite(fd, image + bytes(self.partition_size - len(image)), 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def run(self, ops: FsOps) -> None:
        protocol.patch(self.context(ops), self.update.request(self.spec, self.spec, self.patch_path))

    def recover(self) -> str | None:
        return rerun(self.run)

    def check(self, recover_error: str | None) -> str | None:
        if recover_error is not None:
            return f"rerun failed: {recover_error}"
        partition = open_partition("EMMC", "boot", self.config, FsOps(), writable=False)
        try:
            head = partition.read(0, len(self.update.target))
        finally:
            partition.close()
        if head != self.update.target:
            return "partition does not hold the target image"
        if os.listdir(self.cache_dir):
            return f"cache not cleaned up: {sorted(os.listdir(self.cache_dir))}"
        return None


class FileScenario:
    """A system file patched in place (`applypatch <file> - ...`), optionally through the low-space path."""

    MODE = 0o640
    raw_paths: tuple[str, ...] = ()

    def __init__(self, workdir: str, update: BootUpdate, *, low_space: bool, piece: int = MIB) -> None:
        self.update, self.low_space, self.piece = update, low_space, piece
        self.cache_dir = os.path.join(workdir, "cache")
        self.system_dir = os.path.join(workdir, "system")
        self.path = os.path.join(self.system_dir, "boot.img")
        self.patch_path = os.path.join(workdir, "boot.img.p")
        os.makedirs(self.cache_dir, exist_ok=True)
        os.makedirs(self.system_dir, exist_ok=True)
        with open(self.patch_path, "wb") as stream:
            stream.write(update.patch)

    def prepare(self) -> None:
        for directory in (self.cache_dir, self.system_dir):
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
        with open(self.path, "wb") as stream:
            stream.write(self.update.source)
        os.chmod(self.path, self.MODE)

    def run(self, ops: FsOps) -> None:
        context = protocol.Context(
            DeviceConfig(),
            Cache(self.cache_dir, piece=self.piece),
            ops,
            self.piece,
            target_free=(lambda _: 0) if self.low_space else protocol.filesystem_free,
            out=lambda _: None,
        )
        protocol.patch(context, self.update.request(self.path, self.path, self.patch_path))

    def recover(self) -> str | None:
        return rerun(self.run)

    def check(self, recover_error: str | None) -> str | None:
        if recover_error is not None:
            return f"rerun failed: {recover_error}"
        try:
            with open(self.path, "rb") as stream:
                data = stream.read()
        except OSError:
            return "target file missing"
        if data != self.update.target:
            return "target file does not hold the target"
        if stat.S_IMODE(os.stat(self.path).st_mode) != self.MODE:
            return "target lost the source's mode"
        leftovers = os.listdir(self.cache_dir) + [n for n in os.listdir(self.system_dir) if n != "boot.img"]
        return f"left behind: {sorted(leftovers)}" if leftovers else None
