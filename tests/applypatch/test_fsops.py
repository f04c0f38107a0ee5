"""The fault injector (ota.testing.faults): counting, crash modes, crash points, the child-process
path; and that the production I/O layer and tools have no way to turn it on."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import ota
from ota.device.fsops import FsOps
from ota.testing.faults import CRASH_EXIT_CODE, FaultPoint, FaultyFsOps, PowerLoss, read_fault_log
from tests.environment import require, root_missing


def write_file(ops: FsOps, path: str, data: bytes) -> None:
    fd = ops.create(path)
    try:
        ops.write_pieces(fd, data, path, 4)
        ops.fsync(fd, path)
    finally:
        os.close(fd)
    ops.rename(path, path + ".done")
    ops.fsync_dir(os.path.dirname(path))


def test_clean_run_counts_and_lists_crash_points(tmp_path):
    ops = FaultyFsOps()
    write_file(ops, str(tmp_path / "f"), b"0123456789")
    assert [r.kind for r in ops.log] == ["create", "write", "write", "write", "fsync", "rename", "fsync_dir"]
    assert [r.tearable for r in ops.log] == [False, True, True, True, False, False, False]
    points = [str(p) for p in ops.crash_points()]
    assert points == [
        "before:1",
        "before:2",
        "tear:2",
        "before:3",
        "tear:3",
        "before:4",
        "tear:4",
        "before:5",
        "before:6",
        "before:7",
        "after:7",
    ]
    assert (tmp_path / "f.done").read_bytes() == b"0123456789"


@pytest.mark.parametrize(
    "point, expected",
    [
        ("before:3", b"0123"),  # second piece never written
        ("tear:3", b"012345"),  # half of the second piece
        ("after:3", b"01234567"),  # second piece written, then the cut
    ],
)
def test_cut_leaves_exactly_what_was_done(tmp_path, point, expected):
    ops = FaultyFsOps(FaultPoint.parse(point))
    with pytest.raises(PowerLoss):
        write_file(ops, str(tmp_path / "f"), b"0123456789")
    assert (tmp_path / "f").read_bytes() == expected
    with pytest.raises(PowerLoss):  # nothing may reach the disk after the cut
        ops.unlink(str(tmp_path / "f"))
    assert (tmp_path / "f").exists()


def test_lie_and_errno_modes(tmp_path):
    ops = FaultyFsOps(FaultPoint("lie", 2))
    write_file(ops, str(tmp_path / "f"), b"0123456789")
    assert (tmp_path / "f.done").read_bytes() == b"01\0\x004567" + b"89"
    with pytest.raises(OSError) as info:
        write_file(FaultyFsOps(FaultPoint("enospc", 3)), str(tmp_path / "g"), b"0123456789")
    assert info.value.errno == 28


def test_fault_point_parse_rejects_garbage():
    for text in ("before", "before:0", "smash:3", "tear:x"):
        with pytest.raises(ValueError, match="is not <mode>:<N>"):
            FaultPoint.parse(text)


CHILD = """
import os, sys
from ota.testing.faults import FaultPoint, FaultyFsOps
ops = FaultyFsOps(FaultPoint.parse(sys.argv[2]), on_crash="exit", log_path=sys.argv[3])
fd = ops.create(sys.argv[1])
ops.write_pieces(fd, b"abcdefgh", sys.argv[1], 2)
ops.fsync(fd, sys.argv[1])
print("finished")
"""


def test_a_child_crashes_with_os_exit_and_logs_ops(tmp_path):
    log = tmp_path / "ops.log"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "f"), "after:3", str(log)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == CRASH_EXIT_CODE and "finished" not in result.stdout
    assert (tmp_path / "f").read_bytes() == b"abcd"
    assert [(r.index, r.kind) for r in read_fault_log(str(log))] == [(1, "create"), (2, "write"), (3, "write")]


def test_chmod_keeps_setuid_when_the_owner_changes(tmp_path):
    require(root_missing("changing a file's owner"))
    # Linux clears setuid/setgid on chown, so the owner must be set before the mode.
    path = tmp_path / "su"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        FsOps().chmod(fd, 0o6755, 1000, 2000, "su")
    finally:
        os.close(fd)
    stat = os.stat(path)
    assert (stat.st_mode & 0o7777, stat.st_uid, stat.st_gid) == (0o6755, 1000, 2000)


def _tool(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_production_tools_ignore_the_fault_environment_and_reject_a_fault_flag(tmp_path, small):
    """A stray OTA_FAULT on a device changes nothing; --fault is an unknown flag (exit 2)."""
    source = tmp_path / "f"
    source.write_bytes(small.source)
    (tmp_path / "p").write_bytes(small.patch)
    (tmp_path / "cache").mkdir()
    target = small.target
    args = [
        f"--cache_dir={tmp_path / 'cache'}",
        str(source),
        "-",
        small.tgt_sha,
        str(len(target)),
        f"{small.src_sha}:{tmp_path / 'p'}",
    ]
    hostile = {"OTA_FAULT": "lie:2", "OTA_FAULT_LOG": str(tmp_path / "log")}
    done = _tool("ota.cli.applypatch", *args, env=hostile)
    assert done.returncode == 0, done.stderr
    assert source.read_bytes() == target and not (tmp_path / "log").exists()
    for module, extra in (("ota.cli.applypatch", args), ("ota.cli.ota_apply", ["--package=x", "--device=y"])):
        refused = _tool(module, "--fault=lie:2", *extra)
        assert refused.returncode == 2 and "Unknown command line flag 'fault'" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    ota_apply = _tool("ota.cli.ota_apply", "--package=x", "--device=y", env=hostile)
    assert ota_apply.returncode == 1 and "Traceback" not in ota_apply.stderr
    assert not (tmp_path / "log").exists()


def test_no_production_module_imports_the_injector():
    """Only ota.testing may import ota.testing: the device tools cannot reach the injector."""
    package = pathlib.Path(ota.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "testing":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            offenders += [f"{relative}: {name}" for name in names if name.split(".")[:2] == ["ota", "testing"]]
    assert offenders == []
    assert not hasattr(FsOps, "crash_points") and not hasattr(FsOps(), "fault")
