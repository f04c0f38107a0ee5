"""The safety protocol's order of operations, metadata on the cache path, and bad input on the MTD backend."""

from __future__ import annotations

import os

import pytest

from applypatch_helpers import Small, contents_mode_owner, run_testbench_cli, setuid_source, sha1_of
from ota.device.applypatch import protocol
from ota.device.applypatch.backends import MtdPartition
from ota.device.applypatch.cache import Cache
from ota.device.applypatch.device_config import DeviceConfig, PartitionEntry
from ota.device.applypatch.spec import Digest
from ota.device.fsops import FsOps
from ota.testing.faults import FaultyFsOps
from ota.testing.nandsim import NandSim
from tests.environment import require, root_missing

PIECE = 65536


def pieces(size: int) -> int:
    return -(-size // PIECE)


def request(small: Small, source: str, target: str, patch: str) -> protocol.PatchRequest:
    return protocol.PatchRequest(
        source, target, len(small.target), Digest.of(small.target), ((Digest.of(small.source), patch),)
    )


def test_partition_patch_order_backup_durable_before_the_partition_backup_deleted_last(tmp_path, small: Small):
    """Backup: write, fsync, rename, fsync dir; only then the partition (each piece fsync'ed); unlink last."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "boot.img").write_bytes(small.source + b"\0" * 8192)
    (tmp_path / "p").write_bytes(small.patch)
    ops = FaultyFsOps()  # counts the operations
    config = DeviceConfig({"boot": PartitionEntry("boot", "file", str(tmp_path / "boot.img"))})
    context = protocol.Context(config, Cache(str(tmp_path / "cache"), piece=PIECE), ops, PIECE, out=lambda _: None)
    spec = small.spec("EMMC", "boot")
    assert protocol.patch(context, request(small, spec, spec, str(tmp_path / "p"))) == protocol.PATCHED
    cache, tmp, saved = (
        str(tmp_path / "cache"),
        str(tmp_path / "cache" / "saved.file.tmp"),
        str(tmp_path / "cache" / "saved.file"),
    )
    expected = (
        [("create", tmp)]
        + [("write", tmp)] * pieces(len(small.source))
        + [("chmod", tmp), ("fsync", tmp), ("rename", f"{tmp}->{saved}"), ("fsync_dir", cache)]
        + [("write", "EMMC:boot"), ("fsync", "EMMC:boot")] * pieces(len(small.target))
        + [("unlink", saved), ("fsync_dir", cache)]
    )
    where = {"write": lambda t: t.split("@")[0], "chmod": lambda t: t.rsplit(":", 1)[0]}  # drop offsets, modes
    assert [(r.kind, where.get(r.kind, str)(r.target)) for r in ops.log] == expected
    assert (tmp_path / "boot.img").read_bytes()[: len(small.target)] == small.target


def test_low_space_cache_path_keeps_setuid_mode_and_owner(tmp_path, small: Small):
    """Source parked in the cache and unlinked: the backup and then the target keep its mode and owner."""
    require(root_missing("giving a file another owner"))
    tool = setuid_source(tmp_path, small, 0o4755)
    ops = FaultyFsOps()  # counts the operations
    context = protocol.Context(
        DeviceConfig(), Cache(str(tmp_path / "cache")), ops, target_free=lambda _: 0, out=lambda _: None
    )
    protocol.patch(context, request(small, tool, tool, str(tmp_path / "p")))
    assert ("unlink", tool) in [(r.kind, r.target) for r in ops.log]  # the cache path was taken
    assert contents_mode_owner(tool) == (small.target, 0o4755, 1000, 2000)
    assert os.listdir(tmp_path / "cache") == []


def mtd_device(tmp_path, small: Small, *, erasesize: int, chip_blocks: int, bad_blocks=()):
    """A NAND simulator partition holding the source, a device config naming it, a cache and the patch."""
    path = str(tmp_path / "nand.img")
    NandSim.create(path, chip_blocks * erasesize, erasesize=erasesize, writesize=1024, bad_blocks=bad_blocks)
    flash = MtdPartition("MTD:boot", NandSim(path, FsOps()))
    flash.write_image(small.source)
    flash.close()
    (tmp_path / "cache").mkdir()
    (tmp_path / "p").write_bytes(small.patch)
    (tmp_path / "dev.cfg").write_text("partition boot mtdsim nand.img\ncache cache\n")
    return path


def mtd_state(tmp_path, path: str):
    return sha1_of(path), (tmp_path / "nand.img.nand").read_text(), os.listdir(tmp_path / "cache")


@pytest.mark.parametrize("case", ["unreadable_source", "too_small_after_bad_blocks"])
def test_mtd_bad_input_is_one_line_exit_1_and_writes_nothing(tmp_path, small: Small, case):
    if case == "unreadable_source":
        path = mtd_device(tmp_path, small, erasesize=65536, chip_blocks=8)
        sidecar = tmp_path / "nand.img.nand"
        sidecar.write_text(sidecar.read_text().replace("torn \n", "torn 70\n"))  # an ECC failure at 70 KiB
        expected = "MTD:boot: holds none of the listed images (read error at offset 0: Bad message)"
    else:  # 76 blocks of 4 KiB, 1 bad: exactly the source's 300 KiB, 920 bytes short of the target
        path = mtd_device(tmp_path, small, erasesize=4096, chip_blocks=76, bad_blocks=(40,))
        expected = f"MTD:boot: partition (307200 bytes) is smaller than the target ({len(small.target)} bytes)"
    before = mtd_state(tmp_path, path)
    spec = small.spec("MTD", "boot")
    result = run_testbench_cli(
        [],
        spec,
        "-",
        small.tgt_sha,
        str(len(small.target)),
        f"{small.src_sha}:{tmp_path / 'p'}",
        f"--device_config={tmp_path / 'dev.cfg'}",
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert mtd_state(tmp_path, path) == before
