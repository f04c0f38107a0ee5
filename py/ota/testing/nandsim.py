"""A NAND flash simulator behind the same interface as a kernel /dev/mtdN (`mtd.MtdDevice`).

No MTD chip or nandsim module exists on the machines that test rules_ota, so the MTD backend is
tested against this simulator. It enforces the rules real NAND imposes, at the syscall boundary
(the MTD ioctls plus pread/pwrite), so a backend that breaks a rule fails here as it would on a
device:

* erase works on whole, aligned erase blocks and sets them to 0xFF (EINVAL otherwise);
* a write (page program) must be page-aligned, whole pages, into erased pages only (EIO if a page
  was already programmed), and can only clear bits;
* bad blocks: MEMGETBADBLOCK reports them, erasing, writing or reading them fails with EIO;
* power loss mid-operation (``tear:N`` in `ota.testing.faults`) leaves what flash leaves: a program cut
  half way leaves earlier pages programmed and one partially programmed page; an erase cut half
  way leaves a half-erased block. Such pages fail ECC on read (EBADMSG), as on a real chip,
  until their block is erased again.

State lives in two files so that it survives the simulated power cut and the rerun: the raw
image (`<path>`) and a small text sidecar (`<path>.nand`: ``erasesize N``, ``writesize N``,
``bad <block>...``, ``torn <page>...``). The simulator's own bookkeeping writes are the
"hardware" and are not FsOps operations; each erase and each program is one operation.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from ota.device.applypatch import mtd
from ota.device.applypatch.mtd import MTD_NANDFLASH, MTD_WRITEABLE, MtdInfo
from ota.device.fsops import FsOps

KIND = "mtdsim"
"""The device-config kind of a simulated chip, known only to processes that called `register`."""
SIDECAR_SUFFIX = ".nand"
OOB_SIZE = 64


@dataclass
class Geometry:
    """The chip's shape and its persistent defects."""

    erasesize: int
    writesize: int
    bad_blocks: set[int] = field(default_factory=set)
    torn_pages: set[int] = field(default_factory=set)

    def dump(self) -> str:
        return (
            f"erasesize {self.erasesize}\nwritesize {self.writesize}\n"
            f"bad {' '.join(map(str, sorted(self.bad_blocks)))}\n"
            f"torn {' '.join(map(str, sorted(self.torn_pages)))}\n"
        )

    @classmethod
    def parse(cls, text: str, where: str) -> Geometry:
        values: dict[str, list[int]] = {}
        for number, line in enumerate(text.splitlines(), 1):
            key, *rest = line.split() or [""]
            if key not in ("erasesize", "writesize", "bad", "torn") or not all(x.isdigit() for x in rest):
                raise ValueError(f"{where}:{number}: expected 'erasesize|writesize|bad|torn <numbers>'")
            values[key] = [int(x) for x in rest]
        erasesize, writesize = values.get("erasesize", [0])[:1], values.get("writesize", [0])[:1]
        if not erasesize or not writesize or not writesize[0] or erasesize[0] % writesize[0]:
            raise ValueError(f"{where}: erasesize must be a non-zero multiple of writesize")
        return cls(erasesize[0], writesize[0], set(values.get("bad", [])), set(values.get("torn", [])))


def _fail(code: int, what: str) -> OSError:
    return OSError(code, os.strerror(code), what)


class NandSim:
    """A simulated /dev/mtdN over an image file; see the module docstring for the rules."""

    def __init__(self, path: str, ops: FsOps) -> None:
        self.path = path
        self._ops = ops
        with open(path + SIDECAR_SUFFIX, encoding="utf-8") as stream:
            self.geometry = Geometry.parse(stream.read(), path + SIDECAR_SUFFIX)
        self._fd = os.open(path, os.O_RDWR)
        self.size = os.fstat(self._fd).st_size
        if self.size % self.geometry.erasesize:
            os.close(self._fd)
            raise ValueError(f"{path}: size {self.size} is not a multiple of the erase block size")

    @classmethod
    def create(
        cls,
        path: str,
        size: int,
        *,
        erasesize: int = 128 * 1024,
        writesize: int = 2048,
        bad_blocks: tuple[int, ...] = (),
    ) -> None:
        """Makes a factory-fresh chip: every block erased (0xFF), the given blocks marked bad."""
        with open(path, "wb") as stream:
            stream.write(b"\xff" * size)
        with open(path + SIDECAR_SUFFIX, "w", encoding="utf-8") as stream:
            stream.write(Geometry(erasesize, writesize, set(bad_blocks)).dump())

    # -- MtdDevice -----------------------------------------------------------------------------

    def info(self) -> MtdInfo:
        g = self.geometry
        return MtdInfo(MTD_NANDFLASH, MTD_WRITEABLE, self.size, g.erasesize, g.writesize, OOB_SIZE)

    def is_bad(self, offset: int) -> bool:
        self._check_range(offset, 1, "MEMGETBADBLOCK")
        return offset // self.geometry.erasesize in self.geometry.bad_blocks

    def erase(self, offset: int, length: int) -> None:
        g = self.geometry
        if offset % g.erasesize or length % g.erasesize or length <= 0:
            raise _fail(errno.EINVAL, f"{self.path}: MEMERASE {offset}+{length} not erase-block aligned")
        self._check_range(offset, length, "MEMERASE")
        self._check_good(offset, length, "MEMERASE")
        blocks = range(offset // g.erasesize, (offset + length) // g.erasesize)

        def erase_all() -> None:
            healed = [self._erase_pages(block, g.erasesize // g.writesize) for block in blocks]
            if any(healed):
                self._save()

        def erase_half() -> None:
            # The cut comes in the middle block: earlier blocks erased, that one half erased and
            # its other pages left weakly programmed (ECC fails on them), later ones untouched.
            middle = blocks[len(blocks) // 2]
            pages_per_block = g.erasesize // g.writesize
            for block in blocks:
                if block == middle:
                    self._erase_pages(block, pages_per_block // 2)
                    first = block * pages_per_block
                    self.geometry.torn_pages.update(range(first + pages_per_block // 2, first + pages_per_block))
                    break
                self._erase_pages(block, pages_per_block)
            self._save()

        self._ops.perform("erase", f"{self.path}@{offset}+{length}", erase_all, tear=erase_half)

    def read(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        self._check_good(offset, size, "read")
        g = self.geometry
        for page in range(offset // g.writesize, (offset + size - 1) // g.writesize + 1):
            if page in g.torn_pages:
                raise _fail(errno.EBADMSG, f"{self.path}: uncorrectable ECC error in page {page}")
        return os.pread(self._fd, size, offset)

    def write(self, offset: int, data: bytes) -> None:
        g = self.geometry
        if offset % g.writesize or len(data) % g.writesize or not data:
            raise _fail(errno.EINVAL, f"{self.path}: write {offset}+{len(data)} is not whole pages")
        self._check_range(offset, len(data), "write")
        self._check_good(offset, len(data), "write")
        first_page = offset // g.writesize
        pages = len(data) // g.writesize
        for page in range(first_page, first_page + pages):
            current = os.pread(self._fd, g.writesize, page * g.writesize)
            if page in g.torn_pages or current.count(0xFF) != g.writesize:
                raise _fail(errno.EIO, f"{self.path}: program of page {page}, which is not erased")

        def program(count: int, partial: bool) -> None:
            for index in range(count):
                self._program(first_page + index, data[index * g.writesize : (index + 1) * g.writesize])
            if partial and count < pages:
                page = first_page + count
                half = data[count * g.writesize : count * g.writesize + g.writesize // 2]
                self._program(page, half)
                self.geometry.torn_pages.add(page)
                self._save()

        self._ops.perform(
            "write",
            f"{self.path}@{offset}+{len(data)}",
            lambda: program(pages, False),
            tear=lambda: program(pages // 2, True),
        )

    def close(self) -> None:
        os.close(self._fd)

    # -- the "hardware" ------------------------------------------------------------------------

    def _program(self, page: int, chunk: bytes) -> None:
        """Clears bits only: the new contents are old AND data."""
        where = page * self.geometry.writesize
        old = os.pread(self._fd, len(chunk), where)
        cleared = int.from_bytes(old, "big") & int.from_bytes(chunk, "big")
        os.pwrite(self._fd, cleared.to_bytes(len(chunk), "big"), where)

    def _erase_pages(self, block: int, count: int) -> bool:
        """Erases the block's first `count` pages; says whether any of them had been torn."""
        g = self.geometry
        first = block * (g.erasesize // g.writesize)
        os.pwrite(self._fd, b"\xff" * (count * g.writesize), block * g.erasesize)
        healed = not g.torn_pages.isdisjoint(range(first, first + count))
        g.torn_pages.difference_update(range(first, first + count))
        return healed

    def _save(self) -> None:
        sidecar = self.path + SIDECAR_SUFFIX
        with open(sidecar + ".tmp", "w", encoding="utf-8") as stream:
            stream.write(self.geometry.dump())
        os.replace(sidecar + ".tmp", sidecar)

    def _check_range(self, offset: int, length: int, what: str) -> None:
        if offset < 0 or offset + length > self.size:
            raise _fail(errno.EINVAL, f"{self.path}: {what} {offset}+{length} beyond the chip ({self.size})")

    def _check_good(self, offset: int, length: int, what: str) -> None:
        g = self.geometry
        for block in range(offset // g.erasesize, (offset + length - 1) // g.erasesize + 1):
            if block in g.bad_blocks:
                raise _fail(errno.EIO, f"{self.path}: {what} touches bad block {block}")


def register() -> None:
    """Lets this process's device configs name simulated chips: ``partition <name> mtdsim <image>``.

    Called by the test bench's entry point and scenarios, never by a production module (the
    import-linter contract "no-test-code" in .importlinter), so a device never opens a simulator.
    """
    mtd.register_kind(KIND, lambda path, ops, writable: NandSim(path, ops))
