"""Partition backends: file image, block device (a real loop device), MTD (the NAND simulator)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ota.device.applypatch import mtd
from ota.device.applypatch.backends import BLKFLSBUF, MAX_ATTEMPTS, MtdPartition, SeekablePartition, open_partition
from ota.device.applypatch.device_config import DeviceConfig, PartitionEntry, parse
from ota.device.fsops import FsOps
from ota.errors import OtaError
from ota.testing import nandsim
from ota.testing.faults import FaultPoint, FaultyFsOps
from ota.testing.nandsim import NandSim
from ota.testing.scenarios import loop_device, loop_unavailable
from tests.environment import require

IMAGE = bytes(range(251)) * 1000  # 251000 bytes: not a multiple of any piece or page


def image_file(tmp_path, size=1 << 20) -> str:
    path = str(tmp_path / "part.img")
    with open(path, "wb") as stream:
        stream.write(b"\xaa" * size)
    return path


def test_file_partition_writes_in_pieces_and_verifies(tmp_path):
    ops = FaultyFsOps()  # counts the operations
    part = SeekablePartition("EMMC:boot", image_file(tmp_path), ops, block=False, writable=True, piece=65536)
    part.write_image(IMAGE)
    assert part.read(0, len(IMAGE)) == IMAGE and part.read(len(IMAGE), 4) == b"\xaa" * 4
    assert [r.kind for r in ops.log] == ["write", "fsync"] * 4
    part.close()


def test_dropped_write_is_found_by_read_back_and_rewritten_from_the_first_mismatch(tmp_path):
    ops = FaultyFsOps(FaultPoint("lie", 3))  # the second piece is only half written
    part = SeekablePartition("EMMC:boot", image_file(tmp_path), ops, block=False, writable=True, piece=65536)
    part.write_image(IMAGE)
    assert part.read(0, len(IMAGE)) == IMAGE
    rewrites = [r.target for r in ops.log if r.kind == "write"][4:]
    assert rewrites[0] == f"EMMC:boot@{65536 + 32768}+32768"  # resumes at the first bad byte
    part.close()


def test_partition_smaller_than_target(tmp_path):
    part = SeekablePartition("EMMC:boot", image_file(tmp_path, 1000), FsOps(), block=False, writable=True)
    with pytest.raises(
        OtaError, match=r"^EMMC:boot: partition \(1000 bytes\) is smaller than the target \(251000 bytes\)$"
    ):
        part.write_image(IMAGE)
    part.close()


def test_mtd_partition_skips_bad_blocks_and_erases_the_rest(tmp_path):
    erase, page = 65536, 2048
    path = str(tmp_path / "nand.img")
    NandSim.create(path, 16 * erase, erasesize=erase, writesize=page, bad_blocks=(1, 5))
    raw = bytearray(Path(path).read_bytes())
    raw[12 * erase : 13 * erase] = b"\x00" * erase  # a stale older image's tail (a real chip had it programmed)
    Path(path).write_bytes(raw)
    ops = FaultyFsOps()  # counts the operations
    part = MtdPartition("MTD:boot", NandSim(path, ops))
    assert part.capacity() == 14 * erase
    part.write_image(IMAGE)
    assert part.read(0, len(IMAGE)) == IMAGE
    flash = Path(path).read_bytes()
    assert flash[:erase] == IMAGE[:erase]
    assert flash[erase : 2 * erase] == b"\xff" * erase  # bad block 1 untouched
    assert flash[2 * erase : 3 * erase] == IMAGE[erase : 2 * erase]  # block 2 holds the 2nd logical block
    assert flash[12 * erase : 13 * erase] == b"\xff" * erase  # the rest was erased
    kinds = [r.kind for r in ops.log]
    assert kinds.count("erase") == 14 and kinds.count("write") == 4
    part.close()


def test_mtd_torn_program_detected_by_read_back_and_retried(tmp_path):
    path = str(tmp_path / "nand.img")
    NandSim.create(path, 8 * 65536, erasesize=65536, writesize=2048)
    ops = FaultyFsOps(FaultPoint("lie", 2))  # first block's program silently torn
    part = MtdPartition("MTD:boot", NandSim(path, ops))
    part.write_image(IMAGE)
    assert part.read(0, len(IMAGE)) == IMAGE
    assert [r.kind for r in ops.log[:4]] == ["erase", "write", "erase", "write"]
    part.close()


def test_open_partition_errors(tmp_path):
    config = parse(
        f"partition boot file {tmp_path}/missing.img\npartition dir file {tmp_path}\n", "dev.cfg", str(tmp_path)
    )
    with pytest.raises(OtaError, match=r"^EMMC:boot: cannot open .*missing.img: No such file or directory$"):
        open_partition("EMMC", "boot", config, FsOps(), writable=False)
    with pytest.raises(OtaError, match=r"^EMMC:dir: cannot open .*: Is a directory$"):
        open_partition("EMMC", "dir", config, FsOps(), writable=True)
    with pytest.raises(OtaError, match=r"^MTD:nope: unknown partition name"):
        open_partition("MTD", "nope", config, FsOps(), writable=False)
    with pytest.raises(OtaError, match=r"^EMMC:/no/such: unknown partition"):
        open_partition("EMMC", "/no/such", config, FsOps(), writable=False)


def test_a_relative_name_is_never_resolved_against_the_working_directory(tmp_path, monkeypatch):
    """applypatch's discovery takes absolute device paths only; ota_apply's config (discover=False) none."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "victim").write_bytes(b"\0" * 4096)
    os.symlink(str(tmp_path / "victim"), str(tmp_path / "link"))
    config = parse("", "dev.cfg", str(tmp_path))
    for name in ("victim", "link", "./victim", "sub/../victim", "../" + tmp_path.name + "/victim"):
        with pytest.raises(OtaError, match=r"not an absolute device path \(relative names are never resolved"):
            open_partition("EMMC", name, config, FsOps(), writable=True)
    open_partition("EMMC", str(tmp_path / "victim"), config, FsOps(), writable=False).close()
    closed = dataclasses.replace(config, discover=False)
    for name in ("victim", str(tmp_path / "victim"), str(tmp_path / "link")):
        with pytest.raises(OtaError, match=r"unknown partition: the device config does not list it$"):
            open_partition("EMMC", name, closed, FsOps(), writable=True)
    assert (tmp_path / "victim").read_bytes() == b"\0" * 4096


def test_production_tools_refuse_the_simulator_kind(tmp_path):
    """Only the test bench registers `mtdsim`: a device config naming it fails in the real tools,
    so no config on a device can send a partition's writes to an image file via the simulator."""
    NandSim.create(str(tmp_path / "nand.img"), 8 * 65536, erasesize=65536, writesize=2048)
    (tmp_path / "dev.cfg").write_text("partition boot mtdsim nand.img\ncache cache\n")
    (tmp_path / "cache").mkdir()
    spec = "MTD:boot:16:" + "0" * 40
    args = [f"--device_config={tmp_path / 'dev.cfg'}", "-c", spec]
    done = subprocess.run(
        [sys.executable, "-m", "ota.cli.applypatch", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "dev.cfg:1: kind 'mtdsim' is not one of file, block, mtd\n" in done.stderr, done.stderr
    bench = [sys.executable, "-m", "ota.testing.testbench_cli", "applypatch", *args]
    assert "is not one of" not in subprocess.run(bench, capture_output=True, text=True, check=False).stderr
    nandsim.register()  # this process is a test bench from here on
    assert parse("partition boot mtdsim nand.img\n", "dev.cfg", str(tmp_path)).partitions["boot"].kind == "mtdsim"


def test_device_config_errors_name_the_line():
    known = ", ".join(("file", "block", *mtd.kinds()))
    with pytest.raises(OtaError, match=rf"^dev.cfg:2: kind 'nor' is not one of {known}$"):
        parse("# comment\npartition boot nor /dev/x\n", "dev.cfg", "/")
    with pytest.raises(OtaError, match=r"^dev.cfg:1: cache limit 'lots'"):
        parse("cache /cache lots", "dev.cfg", "/")
    config = parse("partition boot file b.img  # trailing comment\ncache c 1000\n", "dev.cfg", "/dev-root")
    assert config == DeviceConfig({"boot": PartitionEntry("boot", "file", "/dev-root/b.img")}, "/dev-root/c", 1000)


def test_block_device_backend_on_a_real_loop_device(tmp_path):
    require(loop_unavailable())
    backing = image_file(tmp_path)
    with loop_device(backing) as device:
        ops = FaultyFsOps()  # counts the operations
        part = open_partition("EMMC", device, DeviceConfig(), ops, writable=True, piece=131072)
        assert isinstance(part, SeekablePartition) and part.capacity() == 1 << 20
        part.write_image(IMAGE)
        part.close()
        assert [r.kind for r in ops.log][-1] == "ioctl" and f"{BLKFLSBUF:#x}" in ops.log[-1].target
    with open(backing, "rb") as stream:
        assert stream.read(len(IMAGE)) == IMAGE


class DroppingDisk(FaultyFsOps):
    """A device that acknowledges every write but keeps only its first half (every write "lies")."""

    def perform(self, kind, target, action, tear=None):
        return super().perform(kind, target, tear if kind == "write" and tear is not None else action, tear)


def test_read_back_retries_are_bounded(tmp_path):
    ops = DroppingDisk()
    part = SeekablePartition("EMMC:boot", image_file(tmp_path), ops, block=False, writable=True, piece=65536)
    with pytest.raises(OtaError, match=r"^EMMC:boot: read-back still differs at offset \d+ after 10 attempts$"):
        part.write_image(IMAGE)
    part.close()
    starts = [int(r.target.split("@")[1].split("+")[0]) for r in ops.log if r.kind == "write"]
    resumes = [start for start, previous in zip(starts[1:], starts, strict=False) if start <= previous]
    assert len(resumes) == MAX_ATTEMPTS - 1 and resumes == sorted(resumes)  # each retry from a later mismatch


def test_mtd_block_that_never_reads_back_fails_cleanly(tmp_path):
    path = str(tmp_path / "nand.img")
    NandSim.create(path, 8 * 65536, erasesize=65536, writesize=2048)
    part = MtdPartition("MTD:boot", NandSim(path, DroppingDisk()))
    with pytest.raises(OtaError, match=r"^MTD:boot: block at 0x0 does not read back what was written$"):
        part.write_image(IMAGE)
    part.close()


def test_loop_device_dropped_write_is_rewritten_from_the_first_mismatch(tmp_path):
    require(loop_unavailable())
    backing = image_file(tmp_path)
    with loop_device(backing) as device:
        ops = FaultyFsOps(FaultPoint("lie", 1))  # the first piece reaches the device only half written
        part = open_partition("EMMC", device, DeviceConfig(), ops, writable=True, piece=131072)
        part.write_image(IMAGE)
        part.close()
        writes = [r.target.split("@")[1] for r in ops.log if r.kind == "write"]
        assert writes == ["0+131072", "131072+119928", "65536+65536", "131072+119928"]  # resumed at the bad byte
        assert [r.kind for r in ops.log].count("ioctl") == 2  # BLKFLSBUF before each read-back
    with open(backing, "rb") as stream:
        assert stream.read(len(IMAGE)) == IMAGE


def test_mtd_names_are_found_in_proc_mtd(tmp_path):
    (tmp_path / "proc_mtd").write_text(
        'dev:    size   erasesize  name\nmtd0: 00100000 00020000 "recovery_boot"\n'
        'mtd1: 00400000 00020000 "boot"\nmtd2: 00400000 00020000 "misc"\n'
    )
    dev, legacy = tmp_path / "dev", tmp_path / "dev_mtd"
    dev.mkdir()
    legacy.mkdir()
    for name in ("mtd0", "mtd1", "mtd2"):
        (dev / name).touch()
    (legacy / "mtd2").touch()
    dirs = (str(legacy), str(dev))
    proc = str(tmp_path / "proc_mtd")
    assert mtd.find_by_name("boot", proc, dirs) == str(dev / "mtd1")
    assert mtd.find_by_name("misc", proc, dirs) == str(legacy / "mtd2")  # Android's /dev/mtd/ first
    assert mtd.find_by_name("recovery", proc, dirs) is None
    assert mtd.find_by_name("boot", str(tmp_path / "no_proc_mtd"), dirs) is None
