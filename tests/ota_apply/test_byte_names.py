"""Any name a Linux file system allows goes from tree description to device byte for byte.

Generated: every seed makes a source and a target build whose paths and link targets hold every
kind of name (py/ota/testing/byte_names.py: `\\`, UTF-8 and non-UTF-8 bytes, spaces, leading
dots, newlines, control bytes, 255-byte names, names the tools use internally). The packages are
made by the real tools (system_manifest in its own process, file_patch, the package writer), and
applied by ota_apply's engine to a real directory device; the device is then read back with
bytes names and must equal the target build exactly: names, contents, modes, owners, link
targets and empty directories. Progress and journal output stay one line per item.
"""

from __future__ import annotations

import io
import os

import pytest

from ota.device.fsops import FsOps
from ota.device.updater import device as device_mod
from ota.device.updater.engine import apply_package
from ota.device.updater.journal import Journal
from ota.device.updater.plan import Step
from ota.device.updater.progress import Progress
from ota.format import package_reader
from ota.format.paths import SCRATCH_DIR, unescape
from ota.proto import ota_manifest_pb2 as pb
from ota.testing import byte_names
from ota.testing import device_check as dc
from ota.testing.builds import make_package, write_build

SEEDS = range(8)


def _release(tmp: str, seed: int):
    v1, v2 = byte_names.tree_pair(seed)
    source = write_build(v1, os.path.join(tmp, "v1"))
    target = write_build(v2, os.path.join(tmp, "v2"))
    incremental = make_package(source, target, tmp, os.path.join(tmp, "incremental.zip"))
    full = make_package(None, target, tmp, os.path.join(tmp, "full.zip"))
    return v1, v2, source, target, incremental, full


def _device_system(directory: str) -> dict:
    return byte_names.device_tree(os.path.join(directory, "system"), skip=(SCRATCH_DIR.encode(),))


@pytest.mark.parametrize("seed", SEEDS)
def test_incremental_and_full_packages_apply_byte_exact(tmp_path, seed: int) -> None:
    v1, v2, source, target, incremental, full = _release(str(tmp_path), seed)
    assert byte_names.expected_tree(v1) != byte_names.expected_tree(v2)
    with package_reader.open_package(incremental) as opened:
        ops = {pb.FileOperation.Op.Name(op.op) for op in opened.manifest.files}
        unchanged = sum(group.count for group in opened.manifest.unchanged)
    assert {"PATCH", "WRITE", "DELETE", "SYMLINK", "MKDIR"} <= ops and unchanged > 0, (ops, unchanged)
    layout = dc.layout_for(source, target)
    for name, package in (("incremental", incremental), ("full", full)):
        directory = str(tmp_path / f"device-{name}")
        config = dc.materialize(source, directory, layout)
        assert _device_system(directory) == byte_names.expected_tree(v1)  # the source device, as built
        out = io.StringIO()
        result = apply_package(package, device_mod.load(config), ops=FsOps(), progress=Progress("lines", out))
        assert result.status
        assert _device_system(directory) == byte_names.expected_tree(v2), f"{name} package, seed {seed}"
        assert dc.compare(config, target) == []
        # One printable line per progress item, whatever the names: every line parses back.
        lines = out.getvalue().split("\n")
        assert lines[-1] == "" and all(line.isprintable() and line.isascii() for line in lines[:-1])
        items = [line.split(" ", 3)[3] for line in lines[:-1]]
        for item in items:
            unescape(item, "progress")


def test_every_kind_is_in_every_generated_pair() -> None:
    """The generator is what makes the apply test cover the class: check it does."""
    for seed in SEEDS:
        v1, v2 = byte_names.tree_pair(seed)
        for spec in (v1, v2):
            names = [p.encode("utf-8", "surrogateescape") for p in spec.items]
            assert any(b"\\" in n for n in names) and any(b"\n" in n for n in names)
            assert any(b" " in n for n in names) and any(n.split(b"/")[-1].startswith(b".") for n in names)
            assert any(len(n.split(b"/")[-1]) == byte_names.NAME_MAX for n in names) or any(
                len(c) >= 200 for n in names for c in n.split(b"/")
            )
            not_utf8 = [n for n in names if _not_utf8(n)]
            assert not_utf8, seed
            assert any(any(0 < b < 32 and b != 10 for b in n) for n in names)


def _not_utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_journal_keeps_one_line_per_step_for_any_name(tmp_path) -> None:
    """A step id is `phase:` and the escaped key: a cut run reads back exactly what it marked."""
    _, v2 = byte_names.tree_pair(99)
    names = sorted(v2.items)
    journal = Journal.begin(str(tmp_path), "a" * 64, FsOps())
    steps = [Step("write", name, 1) for name in names]
    for step in steps:
        journal.mark(step.id, "d" * 64)
    loaded = Journal.load(str(tmp_path), FsOps())
    assert loaded is not None and loaded.claimed == {step.id: "d" * 64 for step in steps}
    raw = (tmp_path / "ota_journal").read_bytes()
    assert raw.count(b"\n") == len(steps) + 1 and raw.isascii()
    assert [unescape(step.id.split(":", 1)[1], "journal") for step in steps] == names


@pytest.mark.parametrize("seed", [3])
def test_power_cuts_with_any_name_resume_to_the_target(tmp_path, seed: int) -> None:
    """Cut at evenly spread I/O points (the journal holds one escaped line per finished step):
    every rerun ends on the target build, byte for byte (device_check compares it)."""
    _, _, source, target, incremental, _ = _release(str(tmp_path), seed)
    report = dc.check_update(
        source, target, incremental, str(tmp_path / "sweep"), dc.layout_for(source, target), interrupt=True, max_cuts=60
    )
    assert report.problems == [] and report.crash_points > 60
