"""The lossy power-cut model (ota.testing.page_cache): what a real power cut keeps and loses.

The key test: a tiny update that replaces a file by temp + rename but forgets to fsync the temp
recovers at every process cut, and does NOT under the lossy model; with the fsync it does.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import pytest

from ota.device.fsops import FsOps
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss
from ota.testing.page_cache import LossModel
from ota.testing.sweep import sweep

WORST = LossModel()


def cut_at_end(tmp_path, body, loss: LossModel = WORST) -> None:
    """Runs `body(ops)` once to count its operations, then again cut after the last one."""
    ops = FaultyFsOps(loss=loss)
    body(ops)
    ops.close()
    count = len(ops.log)
    reset(tmp_path)
    cut = FaultyFsOps(FaultPoint("after", count), loss=loss)
    with pytest.raises(PowerLoss):
        body(cut)


def reset(tmp_path) -> None:
    for name in os.listdir(tmp_path):
        path = os.path.join(tmp_path, name)
        if os.path.isdir(path) and not os.path.islink(path):
            for inner in os.listdir(path):
                os.unlink(os.path.join(path, inner))
            os.rmdir(path)
        else:
            os.unlink(path)
    (tmp_path / "a").write_bytes(b"old a")
    os.chmod(tmp_path / "a", 0o644)
    os.sync()


def write(ops: FsOps, path: str, data: bytes, *, sync: bool) -> None:
    fd = ops.create(path, 0o644)
    try:
        ops.pwrite(fd, data, 0, path)
        if sync:
            ops.fsync(fd, path)
    finally:
        os.close(fd)


@dataclass
class ReplaceThenCommit:
    """Replaces `a` (temp + rename), then records "committed" durably; the rerun trusts the record."""

    directory: str
    sync_temp: bool
    raw_paths: tuple[str, ...] = ()

    def prepare(self) -> None:
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        with open(os.path.join(self.directory, "a"), "wb") as stream:
            stream.write(b"old contents")

    def run(self, ops: FsOps) -> None:
        temp, target = os.path.join(self.directory, "a.tmp"), os.path.join(self.directory, "a")
        write(ops, temp, b"new contents", sync=self.sync_temp)
        ops.rename(temp, target)
        write(ops, os.path.join(self.directory, "committed"), b"yes", sync=True)
        ops.fsync_dir(self.directory)

    def recover(self) -> str | None:
        if not os.path.exists(os.path.join(self.directory, "committed")):
            self.prepare()
            self.run(FsOps())
        return None

    def check(self, recover_error: str | None) -> str | None:
        with open(os.path.join(self.directory, "a"), "rb") as stream:
            data = stream.read()
        return None if data == b"new contents" else f"a holds {data!r}"


def test_a_missing_fsync_is_caught_by_the_lossy_model_only(tmp_path):
    scenario = ReplaceThenCommit(str(tmp_path), sync_temp=False)
    process_cut = sweep(scenario)
    assert process_cut.failures() == [] and len(process_cut.outcomes) >= 10
    lossy = sweep(scenario, loss=WORST)
    assert [str(o.point) for o in lossy.failures()] == ["after:7"]  # committed, but a's data lost
    assert all(o.problem == "a holds b''" for o in lossy.failures())
    fixed = sweep(ReplaceThenCommit(str(tmp_path), sync_temp=True), loss=WORST)
    assert fixed.failures() == []


def test_unsynced_writes_are_lost_and_synced_ones_kept(tmp_path):
    reset(tmp_path)
    a = str(tmp_path / "a")

    def body(ops: FsOps) -> None:
        fd = os.open(a, os.O_WRONLY)
        try:
            ops.pwrite(fd, b"NEW", 0, a)
            ops.fsync(fd, a)
            ops.pwrite(fd, b"tail!", 5, a)
            ops.truncate(fd, 7, a)
        finally:
            os.close(fd)

    cut_at_end(tmp_path, body)
    assert (tmp_path / "a").read_bytes() == b"NEW a"


def test_entry_changes_come_back_until_the_directory_is_synced(tmp_path):
    reset(tmp_path)
    d = str(tmp_path)

    def body(ops: FsOps) -> None:
        write(ops, os.path.join(d, "b"), b"bbb", sync=True)  # data durable, entry not
        ops.rename(os.path.join(d, "a"), os.path.join(d, "c"))
        ops.perform("mkdir", os.path.join(d, "sub"), lambda: os.mkdir(os.path.join(d, "sub")))
        ops.perform("symlink", os.path.join(d, "l"), lambda: os.symlink("a", os.path.join(d, "l")))

    cut_at_end(tmp_path, body)
    assert sorted(os.listdir(tmp_path)) == ["a"]
    assert (tmp_path / "a").read_bytes() == b"old a" and os.stat(tmp_path / "a").st_mode & 0o777 == 0o644


def test_a_directory_fsync_keeps_entries_but_not_unsynced_data(tmp_path):
    reset(tmp_path)
    d = str(tmp_path)

    def body(ops: FsOps) -> None:
        write(ops, os.path.join(d, "b"), b"bbb", sync=False)
        ops.unlink(os.path.join(d, "a"))
        ops.fsync_dir(d)

    cut_at_end(tmp_path, body)
    assert sorted(os.listdir(tmp_path)) == ["b"] and (tmp_path / "b").read_bytes() == b""


def test_replaced_and_removed_files_and_directories_are_restored_via_dir_fd(tmp_path):
    """sysroot's style: *at() calls through `perform`, a file renamed over, a directory removed."""
    reset(tmp_path)
    (tmp_path / "gone").mkdir()
    os.chmod(tmp_path / "gone", 0o751)
    os.symlink("a", tmp_path / "link")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)

    def body(ops: FsOps) -> None:
        fd = ops.perform(
            "create", "t", lambda: os.open("t", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dir_fd)
        )
        ops.pwrite(fd, b"replacement", 0, "t")
        ops.fsync(fd, "t")
        os.close(fd)
        ops.perform("rename", "t->a", lambda: os.rename("t", "a", src_dir_fd=dir_fd, dst_dir_fd=dir_fd))
        ops.perform("rmdir", "gone", lambda: os.rmdir("gone", dir_fd=dir_fd))
        ops.perform("lchown", "link", lambda: os.chown("link", 7, 8, dir_fd=dir_fd, follow_symlinks=False))

    try:
        ops = FaultyFsOps(loss=WORST)
        body(ops)
        ops.close()
        assert (tmp_path / "a").read_bytes() == b"replacement" and os.lstat(tmp_path / "link").st_uid == 7
        os.rename(tmp_path / "a", tmp_path / "t")
        (tmp_path / "a").write_bytes(b"old a")
        os.mkdir(tmp_path / "gone", 0o751)
        os.unlink(tmp_path / "t")
        os.chown(tmp_path / "link", 0, 0, follow_symlinks=False)
        cut = FaultyFsOps(FaultPoint("after", len(ops.log)), loss=WORST)
        with pytest.raises(PowerLoss):
            body(cut)
    finally:
        os.close(dir_fd)
    assert sorted(os.listdir(tmp_path)) == ["a", "gone", "link"]
    assert (tmp_path / "a").read_bytes() == b"old a"
    assert os.stat(tmp_path / "gone").st_mode & 0o777 == 0o751
    assert os.lstat(tmp_path / "link").st_uid == 0 and os.readlink(tmp_path / "link") == "a"


def test_raw_paths_keep_what_reached_them(tmp_path):
    reset(tmp_path)
    chip = str(tmp_path / "a")

    def body(ops: FsOps) -> None:
        fd = os.open(chip, os.O_WRONLY)
        try:
            ops.pwrite(fd, b"RAW", 0, chip)
        finally:
            os.close(fd)

    ops = FaultyFsOps(FaultPoint("after", 1), loss=WORST, raw_paths=(chip,))
    with pytest.raises(PowerLoss):
        body(ops)
    assert (tmp_path / "a").read_bytes() == b"RAW a"


def test_seeded_losses_are_reproducible_subsets(tmp_path):
    """Random seeds: each write is kept or lost, never anything else; the same seed, the same result."""
    a = str(tmp_path / "a")
    results: dict[int, bytes] = {}
    rng = random.Random(7)
    for seed in [rng.randrange(1 << 30) for _ in range(12)] * 2:
        reset(tmp_path)

        def body(ops: FsOps) -> None:
            fd = os.open(a, os.O_WRONLY)
            try:
                for index in range(5):
                    ops.pwrite(fd, b"X", index, a)
            finally:
                os.close(fd)

        cut_at_end(tmp_path, body, LossModel(seed))
        data = (tmp_path / "a").read_bytes()
        assert len(data) == 5 and all(c in (ord("X"), b"old a"[i]) for i, c in enumerate(data))
        assert results.setdefault(seed, data) == data
    assert len(set(results.values())) > 2  # the seeds really choose different subsets
