"""Scratch names and held directory handles (docs/ota_apply.md, "Scratch space"): the updater's scratch state never touches a path a package may name,
and a parent swapped for a symlink after verification cannot redirect a write.

Generated tree pairs (tests/ota_apply/tree_pairs.py: scratch-like names, kind changes, deep
nesting) are built into real packages by the build tools (ota.testing.builds) and applied to a
device made from v1, cleanly and with a power cut at random crash points plus a rerun; the device
must then be byte-exact v2 every time. The reserved name is refused by the build tools and, in a
hand-crafted manifest, by ota_apply before its first write.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tree_pairs
from ota.actions.zipwrite import Compression, ZipSource, write_zip
from ota.device.updater.engine import APPLIED
from ota.errors import OtaError
from ota.format import layout as package_layout
from ota.format.paths import SCRATCH_DIR, check_path
from ota.proto import ota_manifest_pb2 as pb
from ota.testing import device_check as dc
from ota.testing import package_edit
from ota.testing.builds import Spec, make_package, write_build
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAIRS = 24  # generated tree pairs
CUTS_PER_PAIR = 3  # random crash points per pair (plus one clean apply)


def _release(tmp: str, v1: Spec, v2: Spec) -> tuple[dc.Build, dc.Build, str, dc.Layout]:
    source = write_build(v1, os.path.join(tmp, "v1"))
    target = write_build(v2, os.path.join(tmp, "v2"))
    package = make_package(source, target, tmp, os.path.join(tmp, "update.zip"))
    return source, target, package, dc.layout_for(source, target)


def _apply_and_compare(
    source: dc.Build, target: dc.Build, package: str, layout: dc.Layout, directory: str, fault: FaultPoint | None
) -> list[str]:
    """Applies (cut at `fault` if given, then rerun) and returns how the device differs from v2."""
    if os.path.exists(directory):
        shutil.rmtree(directory)
    config = dc.materialize(source, directory, layout)
    if fault is not None:
        with contextlib.suppress(PowerLoss):
            dc.apply(config, package, FaultyFsOps(fault))
    status = dc.apply(config, package)
    assert status == APPLIED or fault is not None
    return dc.compare(config, target)


def _issue_example() -> tuple[Spec, Spec]:
    """The issue's tree: etc/a.conf patched, etc/a.conf.patch unchanged, .ota-new.* beside written files."""
    conf = tree_pairs.text(random.Random(1), 6000)
    v1 = {
        "etc": ("dir", 0o755, 0, 0),
        "etc/a.conf": (conf, 0o644, 0, 0),
        "etc/a.conf.patch": (b"a real file named *.patch\n", 0o644, 0, 0),
        "etc/b.conf": (b"old b\n", 0o644, 0, 0),
        "etc/.ota-new.b.conf": (b"user's\n", 0o600, 0, 0),
        "etc/l": ("symlink", "a.conf"),
        "etc/.ota-new.l": ("dir", 0o755, 0, 0),
        "etc/.ota-new.l/inside": (b"x\n", 0o644, 0, 0),
        "etc/n": ("symlink", "old"),
        "etc/.ota-new.n": ("symlink", "/proc/version"),  # outside the device, and unwritable
    }
    v2 = dict(v1)
    v2.update(
        {
            "etc/a.conf": (tree_pairs.edit(random.Random(2), conf), 0o644, 0, 0),
            "etc/b.conf": (b"new b\n", 0o644, 0, 0),
            "etc/l": ("symlink", "a.conf.patch"),
            "etc/n": ("symlink", "new"),
        }
    )
    return (
        tree_pairs.to_spec(
            {p: (("file", *v) if isinstance(v[0], bytes) else v) for p, v in v1.items()},
            "scratch/x/1:user/test-keys",
            1,
        ),
        tree_pairs.to_spec(
            {p: (("file", *v) if isinstance(v[0], bytes) else v) for p, v in v2.items()},
            "scratch/x/2:user/test-keys",
            2,
        ),
    )


def test_issue_example_every_crash_point(tmp_path):
    """The issue's package, cut before every operation and half way through every tearable one."""
    source, target, package, layout = _release(str(tmp_path), *_issue_example())
    manifest = _manifest(package)
    ops = {op.path.decode(): pb.FileOperation.Op.Name(op.op) for op in manifest.files}
    assert ops["etc/a.conf"] == "PATCH" and "etc/a.conf.patch" not in ops  # unchanged: in etc's group
    assert [group.directory for group in manifest.unchanged if group.directory == b"etc"] == [b"etc"]
    clean = FaultyFsOps()
    config = dc.materialize(source, str(tmp_path / "clean"), layout)
    assert dc.apply(config, package, clean) == APPLIED
    assert dc.compare(config, target) == []
    points = clean.crash_points()
    assert len(points) > 30
    for point in points:
        problems = _apply_and_compare(source, target, package, layout, str(tmp_path / "dev"), point)
        assert problems == [], (point, problems[:3])


@pytest.mark.parametrize("seed", range(PAIRS))
def test_generated_tree_pair_reaches_v2_with_and_without_a_cut(tmp_path, seed):
    v1, v2 = tree_pairs.pair(seed)
    source, target, package, layout = _release(str(tmp_path), v1, v2)
    clean = FaultyFsOps()
    config = dc.materialize(source, str(tmp_path / "clean"), layout)
    assert dc.apply(config, package, clean) == APPLIED
    assert dc.compare(config, target) == []
    assert not os.path.lexists(tmp_path / "clean" / "system" / SCRATCH_DIR)
    points = clean.crash_points()
    for point in random.Random(seed).sample(points, min(CUTS_PER_PAIR, len(points))):
        problems = _apply_and_compare(source, target, package, layout, str(tmp_path / "dev"), point)
        assert problems == [], (seed, point, problems[:3])


def test_generated_pairs_cover_the_scratch_patterns():
    """The generator really produces what these tests claim to cover (so they can fail)."""
    names, kinds = set(), set()
    for seed in range(PAIRS):
        v1, v2 = tree_pairs.pair(seed)
        names |= {p.rsplit("/", 1)[-1] for p in v1.items} | {p.rsplit("/", 1)[-1] for p in v2.items}
        for path in set(v1.items) & set(v2.items):
            kinds.add((_kind(v1.items[path]), _kind(v2.items[path])))
    assert any(n.endswith(".patch") and n[:-6] in names for n in names)
    assert any(n.startswith(".ota-new.") for n in names) and SCRATCH_DIR in names
    assert any(re.fullmatch(r"[0-9a-f]{64}", n) for n in names) and any(" " in n for n in names)
    assert any(not n.isascii() for n in names) and any(set(n) == {"."} for n in names)
    changes = {(a, b) for a, b in kinds if a != b}
    assert changes >= {
        ("file", "dir"),
        ("dir", "file"),
        ("file", "symlink"),
        ("symlink", "file"),
        ("dir", "symlink"),
        ("symlink", "dir"),
    }, changes


def _kind(item: object) -> str:
    return item[0] if isinstance(item[0], str) else "file"


# -- the reserved name: refused at build time and by the device --------------------------------


@pytest.mark.parametrize("path", [SCRATCH_DIR, f"{SCRATCH_DIR}/x", f"{SCRATCH_DIR}/a/b c"])
def test_check_path_refuses_the_reserved_top_name(path):
    with pytest.raises(OtaError) as err:
        check_path(path, "tree.json")
    assert str(err.value).count("\n") == 0
    assert "reserved for the updater's scratch files" in str(err.value)


@pytest.mark.parametrize(
    "path",
    [
        f"etc/{SCRATCH_DIR}",
        f"a/b/{SCRATCH_DIR}/x",
        f"{SCRATCH_DIR}x",
        f"x{SCRATCH_DIR}",
        f"{SCRATCH_DIR}.patch",
        ".ota-new.x",
        "x.patch",
    ],
)
def test_the_reserved_name_is_ordinary_elsewhere(path):
    assert check_path(path, "tree.json") == path


def test_starlark_rule_reserves_the_same_name():
    """rules/private/names.bzl cannot import Python: its copy of the name must agree, and its path
    check must use that copy (//tests/rules:error_tests and :tree_input_tests check the refusals
    themselves)."""
    with open(os.path.join(REPO, "rules", "private", "names.bzl"), encoding="utf-8") as stream:
        bzl = stream.read()
    assert f'SCRATCH_DIR = "{SCRATCH_DIR}"' in bzl
    assert '_SCRATCH_TOP = "/" + SCRATCH_DIR + "/"' in bzl
    assert "joined.startswith(_SCRATCH_TOP)" in bzl


@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "file below"])
def test_build_tools_refuse_the_reserved_name_in_one_line(tmp_path, kind):
    path = f"{SCRATCH_DIR}/x" if kind == "file below" else SCRATCH_DIR
    entries = [{"path": SCRATCH_DIR, "kind": "dir", "mode": 0o755, "uid": 0, "gid": 0}] if kind == "file below" else []
    entry = {"path": path, "kind": kind.split()[0], "mode": 0o644, "uid": 0, "gid": 0}
    if kind.startswith("file"):
        data = tmp_path / "data"
        data.write_bytes(b"x\n")
        entry.update(size=2, sha256="0" * 64, sha1="0" * 40)
    if kind == "symlink":
        entry["target"] = "elsewhere"
    tree_json = tmp_path / "tree.json"
    tree_json.write_text(json.dumps({"entries": entries + [entry]}))
    out = tmp_path / "manifest.json"
    result = subprocess.run(
        [sys.executable, "-m", "ota.actions.system_manifest", "--tree", str(tree_json), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and "reserved for the updater's scratch files" in result.stderr
    assert str(tree_json) in result.stderr and not out.exists()


def _manifest(package: str) -> pb.OtaManifest:
    with zipfile.ZipFile(package) as archive:
        return pb.OtaManifest.FromString(archive.read(package_layout.MANIFEST_ENTRY))


def _rewrite(package: str, out: str, edit) -> None:
    """The package with an edited manifest (as a hostile or broken pipeline would make it)."""
    with zipfile.ZipFile(package) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = pb.OtaManifest.FromString(entries.pop(package_layout.MANIFEST_ENTRY))
    edit(manifest, entries)
    sources = [ZipSource(name, Compression.STORED, data=data) for name, data in sorted(entries.items())]
    sources.append(
        ZipSource(
            package_layout.MANIFEST_ENTRY, Compression.STORED, data=manifest.SerializeToString(deterministic=True)
        )
    )
    write_zip(out, sources)


def _add_op(manifest: pb.OtaManifest, entries: dict[str, bytes], path: str, op: int) -> None:
    new = manifest.files.add(path=path.encode(), op=op, mode=0o755 if op == pb.FileOperation.MKDIR else 0o644)
    new.source_kind = pb.FileOperation.SOURCE_ABSENT
    if op == pb.FileOperation.SYMLINK:
        new.symlink_target = b"elsewhere"
    if op == pb.FileOperation.WRITE:
        package_edit.set_whole_file(manifest, entries, new, b"pwned\n")
    ordered = sorted(manifest.files, key=lambda o: o.path)
    del manifest.files[:]
    manifest.files.extend(ordered)


@pytest.mark.parametrize(
    "ops",
    [
        [(SCRATCH_DIR, pb.FileOperation.MKDIR), (f"{SCRATCH_DIR}/x", pb.FileOperation.WRITE)],
        [(SCRATCH_DIR, pb.FileOperation.WRITE)],
        [(SCRATCH_DIR, pb.FileOperation.SYMLINK)],
        [(SCRATCH_DIR, pb.FileOperation.MKDIR)],
    ],
    ids=["write below", "write", "symlink", "mkdir"],
)
def test_ota_apply_refuses_a_manifest_naming_the_reserved_name_before_any_write(tmp_path, ops):
    source, _, package, layout = _release(str(tmp_path), *_issue_example())
    crafted = str(tmp_path / "crafted.zip")
    _rewrite(package, crafted, lambda m, e: [_add_op(m, e, path, op) for path, op in ops])
    directory = str(tmp_path / "dev")
    config = dc.materialize(source, directory, layout)
    before = dc.device_hash(directory)
    result = subprocess.run(
        [sys.executable, "-m", "ota.cli.ota_apply", "--package", crafted, "--device", config],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f'ota_apply: error: {crafted}: manifest.pb files path "{min(path for path, _ in ops)}": '
        f"{SCRATCH_DIR!r} at the top of the tree is reserved for the updater's scratch files\n"
    )
    assert dc.device_hash(directory) == before


# -- item 9: a parent swapped for a symlink cannot redirect a write ----------------------------


class SwapParent(FaultyFsOps):
    """The fault injector's FaultyFsOps, which swaps `parent` (under `root`) for a symlink to `outside`
    just before the first operation `when` accepts: a hostile process racing the updater."""

    def __init__(self, root: str, parent: str, outside: str, when) -> None:
        super().__init__()
        self.root, self.parent, self.outside, self.when = root, parent, outside, when
        self.swapped_at: int | None = None

    def perform(self, kind, target, action, tear=None):
        if self.swapped_at is None and self.when(kind, target):
            real = os.path.join(self.root, self.parent)
            os.rename(real, real + ".moved")
            os.symlink(self.outside, real)
            self.swapped_at = len(self.log) + 1
        return super().perform(kind, target, action, tear)


@pytest.mark.parametrize("moment", ["after verification", "inside the patch step"])
def test_parent_swapped_for_a_symlink_cannot_redirect_the_patch(tmp_path, moment):
    source, target, package, layout = _release(str(tmp_path), *_issue_example())
    directory = str(tmp_path / "dev")
    config = dc.materialize(source, directory, layout)
    root = os.path.join(directory, "system")
    outside = tmp_path / "outside"
    shutil.copytree(os.path.join(root, "etc"), outside, symlinks=True)  # looks just like etc/
    outside_before = dc.device_hash(str(outside))
    if moment == "after verification":
        when = lambda kind, target: True  # noqa: E731  (the first write of the run)
    else:
        when = lambda kind, target: kind == "create" and target.endswith("etc/a.conf~")  # noqa: E731
    ops = SwapParent(root, "etc", str(outside), when)
    with pytest.raises(OtaError) as err:
        dc.apply(config, package, ops)
    assert ops.swapped_at is not None and "\n" not in str(err.value)
    assert re.search(r"system/etc\S*: (parent 'etc' )?is a symlink", str(err.value)), err.value
    assert dc.device_hash(str(outside)) == outside_before
    if moment == "inside the patch step":
        # the patched file went into the directory that was checked (now etc.moved), never through the link
        patched = Path(target.files["etc/a.conf"]).read_bytes()
        assert (tmp_path / "dev" / "system" / "etc.moved" / "a.conf").read_bytes() == patched
