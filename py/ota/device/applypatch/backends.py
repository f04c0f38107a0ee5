"""Partition backends: a partition image file, a block device, an MTD flash partition.

Each backend reads by logical offset and writes a whole image with verification, every write
going through `ota.device.fsops` so power-loss tests can cut it anywhere:

* file and block device: write in bounded pieces, fsync each (a block device is also opened
  O_SYNC), drop the cached pages (BLKFLSBUF on a block device), read back and compare, and if
  anything differs rewrite from the first differing offset, up to MAX_ATTEMPTS times;
* MTD: skip bad blocks (logical offsets count good blocks only), erase each block before writing
  it, write whole pages, read each block back, then erase the rest of the partition so no stale
  tail of an older image stays behind.
"""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod

from ota.device.applypatch import mtd
from ota.device.applypatch.device_config import DeviceConfig, PartitionEntry
from ota.device.fsops import FsOps
from ota.errors import OtaError

DEFAULT_PIECE = 1 << 20
MAX_ATTEMPTS = 10
BLKFLSBUF = 0x1261  # _IO(0x12, 97): write back and drop a block device's buffer cache


class Partition(ABC):
    """A raw partition addressed by logical offset."""

    where: str

    @abstractmethod
    def capacity(self) -> int:
        """Usable bytes (for MTD: good blocks only)."""

    @abstractmethod
    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`; fewer only at the end. OSError on a read failure."""

    @abstractmethod
    def write_image(self, data: bytes) -> None:
        """Writes `data` at offset 0 and verifies it; raises OtaError if it cannot."""

    @abstractmethod
    def close(self) -> None:
        """Releases the device."""

    def check_fits(self, size: int) -> None:
        if size > self.capacity():
            raise OtaError(self.where, f"partition ({self.capacity()} bytes) is smaller than the target ({size} bytes)")


class SeekablePartition(Partition):
    """A regular partition-image file or a block device."""

    def __init__(
        self, where: str, path: str, ops: FsOps, *, block: bool, writable: bool, piece: int = DEFAULT_PIECE
    ) -> None:
        self.where, self.path, self._ops, self._block, self._piece = where, path, ops, block, piece
        flags = (os.O_RDWR | (os.O_SYNC if block else 0)) if writable else os.O_RDONLY
        self._fd = _open(where, path, flags)
        mode = os.fstat(self._fd).st_mode
        if not (stat.S_ISBLK(mode) if block else stat.S_ISREG(mode)):
            os.close(self._fd)
            raise OtaError(where, f"{path} is not a {'block device' if block else 'regular file'}")
        try:
            self._size = os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as err:  # a file with no size to seek to (a /proc or sysfs file): not a partition
            os.close(self._fd)
            raise OtaError(where, f"cannot find the size of {path}: {err.strerror or err}") from None

    def capacity(self) -> int:
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, max(0, min(size, self._size - offset)), offset)

    def write_image(self, data: bytes) -> None:
        self.check_fits(len(data))
        start: int | None = 0
        for _ in range(MAX_ATTEMPTS):
            try:
                self._write_from(start, data)
                start = self._first_mismatch(data)
            except OSError as err:
                raise OtaError(self.where, f"write failed: {err.strerror or err}") from None
            if start is None:
                return
        raise OtaError(self.where, f"read-back still differs at offset {start} after {MAX_ATTEMPTS} attempts")

    def _write_from(self, start: int, data: bytes) -> None:
        self._ops.write_pieces(self._fd, data, self.where, self._piece, start=start, fsync_each=True)
        if self._block:
            self._ops.ioctl(self._fd, BLKFLSBUF, 0, self.where)
        else:
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def _first_mismatch(self, data: bytes) -> int | None:
        for offset in range(0, len(data), self._piece):
            expected = data[offset : offset + self._piece]
            actual = os.pread(self._fd, len(expected), offset)
            if actual != expected:
                return offset + next(
                    (i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b),
                    min(len(actual), len(expected)),
                )
        return None

    def close(self) -> None:
        os.close(self._fd)


class MtdPartition(Partition):
    """An MTD partition (kernel or simulated) with bad-block skipping."""

    def __init__(self, where: str, device: mtd.MtdDevice) -> None:
        self.where, self._device = where, device
        info = device.info()
        if not info.erasesize or not info.writesize or info.erasesize % info.writesize:
            raise OtaError(where, f"MTD geometry unusable (erasesize {info.erasesize}, writesize {info.writesize})")
        self._erasesize, self._writesize = info.erasesize, info.writesize
        self._good = [
            block for block in range(info.size // info.erasesize) if not device.is_bad(block * info.erasesize)
        ]

    def capacity(self) -> int:
        return len(self._good) * self._erasesize

    def read(self, offset: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size and offset < self.capacity():
            index, inside = divmod(offset, self._erasesize)
            want = min(size - len(out), self._erasesize - inside)
            piece = self._device.read(self._good[index] * self._erasesize + inside, want)
            if not piece:
                break
            out += piece
            offset += len(piece)
        return bytes(out)

    def write_image(self, data: bytes) -> None:
        self.check_fits(len(data))
        try:
            for index, block in enumerate(self._good):
                chunk = data[index * self._erasesize : (index + 1) * self._erasesize]
                start = block * self._erasesize
                self._device.erase(start, self._erasesize)  # erase first; also clears the tail
                if chunk:
                    self._program_block(start, chunk + b"\xff" * (-len(chunk) % self._writesize))
        except OSError as err:
            raise OtaError(self.where, f"flash write failed: {err.strerror or err}") from None

    def _program_block(self, start: int, padded: bytes) -> None:
        """Writes one erased block and reads it back; one erase-and-retry on a mismatch."""
        for attempt in (1, 2):
            self._device.write(start, padded)
            try:
                if self._device.read(start, len(padded)) == padded:
                    return
            except OSError:
                pass
            if attempt == 1:
                self._device.erase(start, self._erasesize)
        raise OtaError(self.where, f"block at {start:#x} does not read back what was written")

    def close(self) -> None:
        self._device.close()


def _open(where: str, path: str, flags: int) -> int:
    try:
        return os.open(path, flags)
    except OSError as err:
        raise OtaError(where, f"cannot open {path}: {err.strerror or err}") from None


def open_partition(
    kind: str, name: str, config: DeviceConfig, ops: FsOps, *, writable: bool, piece: int = DEFAULT_PIECE
) -> Partition:
    """Opens the partition a spec names (`kind` MTD or EMMC).

    Lookup: the device config; then, only if the config allows discovery (the `applypatch` CLI;
    never ota_apply), for MTD the name in /proc/mtd, for EMMC an absolute device path such as
    /dev/block/by-name/boot. A name is never resolved against the working directory: a relative
    EMMC name that the config does not list is an unknown partition (docs/applypatch.md,
    "Partition names").
    """
    where = f"{kind}:{name}"
    entry = config.partitions.get(name)
    if entry is None:
        if not config.discover:
            raise OtaError(where, "unknown partition: the device config does not list it")
        entry = _discover(kind, name, where)
    if entry.kind in ("file", "block"):
        return SeekablePartition(where, entry.path, ops, block=entry.kind == "block", writable=writable, piece=piece)
    try:
        device = mtd.open_device(entry.kind, entry.path, ops, writable=writable)
    except (OSError, ValueError) as err:
        raise OtaError(where, f"cannot open {entry.path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        return MtdPartition(where, device)
    except OSError as err:
        device.close()
        raise OtaError(where, f"cannot query {entry.path}: {err.strerror or err}") from None


def _discover(kind: str, name: str, where: str) -> PartitionEntry:
    """The device of a name the config does not list: /proc/mtd for MTD, an absolute path for EMMC.

    An absolute EMMC path is the operator's own command-line argument (AOSP scripts name
    /dev/block/... directly), so it is opened as given, symlinks such as /dev/block/by-name/*
    included; a relative one would depend on the working directory and is refused.
    """
    if kind == "MTD":
        path = mtd.find_by_name(name)
        if path is None:
            raise OtaError(where, "unknown partition name (not in the device config nor in /proc/mtd)")
        return PartitionEntry(name, "mtd", path)
    if not os.path.isabs(name):
        raise OtaError(
            where,
            "unknown partition: not in the device config, and not an absolute device path "
            "(relative names are never resolved against the working directory)",
        )
    try:
        mode = os.stat(name).st_mode
    except OSError as err:
        raise OtaError(where, f"unknown partition (not in the device config; {name}: {err.strerror})") from None
    if stat.S_ISBLK(mode):
        return PartitionEntry(name, "block", name)
    if stat.S_ISREG(mode):
        return PartitionEntry(name, "file", name)
    raise OtaError(where, f"{name} is neither a block device nor a regular file")
