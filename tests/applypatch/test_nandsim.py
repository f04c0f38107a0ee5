"""The NAND simulator enforces flash rules at the MTD char-device boundary; the ioctl ABI is right."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ota.device.applypatch import mtd
from ota.device.fsops import FsOps
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss
from ota.testing.nandsim import NandSim

ERASE, PAGE = 8192, 1024


@pytest.fixture
def chip(tmp_path):
    path = str(tmp_path / "nand.img")
    NandSim.create(path, 8 * ERASE, erasesize=ERASE, writesize=PAGE, bad_blocks=(2,))
    device = NandSim(path, FsOps())
    yield device
    device.close()


def errno_of(call) -> int:
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno


def test_ioctl_numbers_and_struct_layouts_match_the_kernel_abi():
    assert (mtd.MEMGETINFO, mtd.MEMERASE, mtd.MEMGETBADBLOCK) == (0x80204D01, 0x40084D02, 0x40084D0B)
    assert (mtd.MTD_INFO_USER.size, mtd.ERASE_INFO_USER.size, mtd.LOFF_T.size) == (32, 8, 8)
    info = mtd.MtdInfo(4, 0x400, 1 << 20, ERASE, PAGE, 64)
    assert mtd.MtdInfo.unpack(info.pack()) == info and info.pack()[1:4] == b"\0\0\0"


def test_factory_state_info_and_bad_blocks(chip):
    assert chip.info() == mtd.MtdInfo(mtd.MTD_NANDFLASH, mtd.MTD_WRITEABLE, 8 * ERASE, ERASE, PAGE, 64)
    assert chip.read(0, ERASE) == b"\xff" * ERASE
    assert [chip.is_bad(b * ERASE) for b in range(4)] == [False, False, True, False]
    assert errno_of(lambda: chip.read(2 * ERASE, 10)) == errno.EIO
    assert errno_of(lambda: chip.erase(2 * ERASE, ERASE)) == errno.EIO
    assert errno_of(lambda: chip.write(2 * ERASE, b"\0" * PAGE)) == errno.EIO


def test_program_rules(chip):
    chip.write(0, b"\x0f" * PAGE)
    assert chip.read(0, PAGE) == b"\x0f" * PAGE
    assert errno_of(lambda: chip.write(0, b"\x00" * PAGE)) == errno.EIO  # programmed page
    assert errno_of(lambda: chip.write(PAGE + 1, b"\x00" * PAGE)) == errno.EINVAL  # unaligned
    assert errno_of(lambda: chip.write(PAGE, b"\x00" * 100)) == errno.EINVAL  # partial page
    assert errno_of(lambda: chip.erase(100, ERASE)) == errno.EINVAL
    assert errno_of(lambda: chip.erase(0, 8 * ERASE + ERASE)) == errno.EINVAL
    chip.erase(0, ERASE)
    assert chip.read(0, PAGE) == b"\xff" * PAGE
    chip.write(0, b"\x00" * PAGE)


def test_torn_program_leaves_a_partial_page_that_fails_ecc(tmp_path, chip):
    torn = NandSim(chip.path, FaultyFsOps(FaultPoint("tear", 1)))
    data = bytes(range(256)) * (4 * PAGE // 256)
    with pytest.raises(PowerLoss):
        torn.write(0, data)
    torn.close()
    after = NandSim(chip.path, FsOps())  # state survives the "reboot"
    assert after.read(0, 2 * PAGE) == data[: 2 * PAGE]
    assert errno_of(lambda: after.read(2 * PAGE, PAGE)) == errno.EBADMSG
    raw = Path(chip.path).read_bytes()
    assert raw[2 * PAGE : 2 * PAGE + PAGE // 2] == data[2 * PAGE : 2 * PAGE + PAGE // 2]
    assert raw[2 * PAGE + PAGE // 2 : 3 * PAGE] == b"\xff" * (PAGE // 2)
    assert errno_of(lambda: after.write(2 * PAGE, b"\0" * PAGE)) == errno.EIO
    after.erase(0, ERASE)  # erasing heals the block
    assert after.read(0, ERASE) == b"\xff" * ERASE
    after.close()


def test_torn_erase_leaves_a_half_erased_block(chip):
    chip.write(ERASE, b"\x00" * ERASE)
    torn = NandSim(chip.path, FaultyFsOps(FaultPoint("tear", 1)))
    with pytest.raises(PowerLoss):
        torn.erase(ERASE, ERASE)
    torn.close()
    after = NandSim(chip.path, FsOps())
    assert after.read(ERASE, ERASE // 2) == b"\xff" * (ERASE // 2)
    assert errno_of(lambda: after.read(ERASE + ERASE // 2, PAGE)) == errno.EBADMSG
    after.close()
