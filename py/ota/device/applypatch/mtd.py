"""The kernel MTD character-device interface (/dev/mtdN): the boundary the NAND simulator replaces.

An MTD partition is raw flash: it must be erased (to 0xFF) before it is written, erases and
writes work in erase blocks and pages, and some blocks are bad. The kernel exposes this through
a character device: `pread`/`pwrite` for data and three ioctls for the rest. `MtdDevice` is
exactly that surface; `KernelMtd` implements it with real syscalls. The test bench's NAND
simulator (`ota.testing.nandsim.NandSim`) implements it over an image file with the same rules, so
the partition backend above it cannot tell them apart.

Which device-config kinds open an `MtdDevice` is a table (`open_device`): a production tool knows
only ``mtd``. The test bench adds its simulator's kind with `register_kind` before it runs a tool
(`ota.testing.testbench_cli`); nothing on a device calls it, so a device config can never point a
partition at a simulator.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ota.device.fsops import FsOps


def _ioc(direction: int, kind: str, number: int, size: int) -> int:
    """The Linux _IOC encoding: dir(2 bits) size(14) type(8) nr(8)."""
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | number


_IOC_WRITE, _IOC_READ = 1, 2

# struct mtd_info_user { u8 type; u32 flags; u32 size; u32 erasesize; u32 writesize;
#                        u32 oobsize; u64 padding; }  (natural alignment: 3 pad bytes after type)
MTD_INFO_USER = struct.Struct("=BxxxIIIIIQ")
# struct erase_info_user { u32 start; u32 length; }
ERASE_INFO_USER = struct.Struct("=II")
# __kernel_loff_t
LOFF_T = struct.Struct("=q")

MEMGETINFO = _ioc(_IOC_READ, "M", 1, MTD_INFO_USER.size)  # 0x80204d01
MEMERASE = _ioc(_IOC_WRITE, "M", 2, ERASE_INFO_USER.size)  # 0x40084d02
MEMGETBADBLOCK = _ioc(_IOC_WRITE, "M", 11, LOFF_T.size)  # 0x40084d0b

MTD_NANDFLASH = 4
MTD_WRITEABLE = 0x400


@dataclass(frozen=True)
class MtdInfo:
    """MEMGETINFO's answer: flash type, flags, total size, erase block, page and OOB sizes."""

    type: int
    flags: int
    size: int
    erasesize: int
    writesize: int
    oobsize: int

    def pack(self) -> bytes:
        return MTD_INFO_USER.pack(self.type, self.flags, self.size, self.erasesize, self.writesize, self.oobsize, 0)

    @classmethod
    def unpack(cls, raw: bytes) -> MtdInfo:
        kind, flags, size, erasesize, writesize, oobsize, _ = MTD_INFO_USER.unpack(raw)
        return cls(kind, flags, size, erasesize, writesize, oobsize)


class MtdDevice(Protocol):
    """What an MTD char device offers. Errors are OSError with the kernel's errno."""

    path: str

    def info(self) -> MtdInfo:
        """MEMGETINFO."""

    def is_bad(self, offset: int) -> bool:
        """MEMGETBADBLOCK for the erase block at `offset`."""

    def erase(self, offset: int, length: int) -> None:
        """MEMERASE of whole erase blocks (an FsOps operation)."""

    def read(self, offset: int, size: int) -> bytes:
        """pread."""

    def write(self, offset: int, data: bytes) -> None:
        """pwrite of whole pages into erased flash (an FsOps operation)."""

    def close(self) -> None:
        """Releases the device."""


class KernelMtd:
    """A real /dev/mtdN through the kernel's MTD ioctls."""

    def __init__(self, path: str, ops: FsOps, *, writable: bool) -> None:
        self.path = path
        self._ops = ops
        self._fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)

    def info(self) -> MtdInfo:
        buffer = bytearray(MTD_INFO_USER.size)
        fcntl.ioctl(self._fd, MEMGETINFO, buffer)
        return MtdInfo.unpack(bytes(buffer))

    def is_bad(self, offset: int) -> bool:
        # A mutable buffer makes fcntl.ioctl return the ioctl's own return value: 1 = bad.
        return fcntl.ioctl(self._fd, MEMGETBADBLOCK, bytearray(LOFF_T.pack(offset))) > 0

    def erase(self, offset: int, length: int) -> None:
        self._ops.ioctl(self._fd, MEMERASE, bytearray(ERASE_INFO_USER.pack(offset, length)), self.path, kind="erase")

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def write(self, offset: int, data: bytes) -> None:
        self._ops.pwrite(self._fd, data, offset, self.path)

    def close(self) -> None:
        os.close(self._fd)


MtdOpener = Callable[[str, FsOps, bool], MtdDevice]
"""Opens the device at a path, writable or not: a device-config kind's constructor."""

_OPENERS: dict[str, MtdOpener] = {"mtd": lambda path, ops, writable: KernelMtd(path, ops, writable=writable)}


def kinds() -> tuple[str, ...]:
    """The device-config kinds that name an MTD device, ``mtd`` first."""
    return tuple(_OPENERS)


def register_kind(kind: str, opener: MtdOpener) -> None:
    """Adds a device-config kind that opens an `MtdDevice` (the test bench's simulator)."""
    if kind in ("file", "block", "mtd"):
        raise ValueError(f"kind {kind!r} is built in")
    _OPENERS[kind] = opener


def open_device(kind: str, path: str, ops: FsOps, *, writable: bool) -> MtdDevice:
    """The `MtdDevice` of a device-config entry of kind `kind` (one of `kinds()`)."""
    return _OPENERS[kind](path, ops, writable)


def find_by_name(
    name: str, proc_mtd: str = "/proc/mtd", dev_dirs: tuple[str, ...] = ("/dev/mtd", "/dev")
) -> str | None:
    """Maps an MTD partition name to /dev/mtdN via /proc/mtd (lines: `mtdN: size erasesize "name"`).

    This is how an AOSP script's `MTD:boot:...` finds its device with no device config, as the
    recovery's mtd_scan_partitions did; `dev_dirs` are searched in order (Android used /dev/mtd/).
    """
    try:
        with open(proc_mtd, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    for line in lines[1:]:
        device, _, rest = line.partition(":")
        if rest.strip().endswith(f'"{name}"') and device.startswith("mtd"):
            for candidate in (os.path.join(directory, device) for directory in dev_dirs):
                if os.path.exists(candidate):
                    return candidate
    return None
