"""Unchanged paths (no operation, a digest per directory): every tampering is refused before any write.

Generated: seeded tree pairs (tree_pairs.py: every kind of change, scratch-pattern names, deep
nesting) are packaged by the real tools. On a fresh source device, one unchanged entry is then
tampered with in one of the ways a device can differ from its build: a stray entry beside it,
the entry removed, its contents, mode or owner changed, a file swapped for a symlink, or its
directory swapped for a symlink to a copy outside the root. ota_apply must refuse in one line
naming that directory (or, for a swapped directory, its parent), and leave the device exactly as
it was; the untampered device must apply to the exact target, and a rerun of the applied
package must find every unchanged group intact.
"""

from __future__ import annotations

import os
import random
import shutil
import stat

import pytest

import tree_pairs
from ota.device.updater.engine import ALREADY, APPLIED
from ota.errors import OtaError
from ota.format import package_reader
from ota.format.paths import escape, from_bytes, to_bytes
from ota.testing import device_check as dc
from ota.testing.builds import make_package, write_build

SEEDS = range(8)
TAMPERINGS = ("stray", "remove", "contents", "mode", "owner", "file_to_symlink", "dir_to_symlink")


def _release(tmp: str, seed: int):
    v1, v2 = tree_pairs.pair(seed)
    source = write_build(v1, os.path.join(tmp, "v1"))
    target = write_build(v2, os.path.join(tmp, "v2"))
    package = make_package(source, target, tmp, os.path.join(tmp, "update.zip"))
    with package_reader.open_package(package) as opened:
        manifest = opened.manifest
    named = {from_bytes(op.path) for op in manifest.files}
    unchanged = sorted(e.path for e in source.entries if e.path not in named)
    kinds = {e.path: e.kind for e in source.entries}
    assert sum(group.count for group in manifest.unchanged) == len(unchanged)
    return source, target, package, dc.layout_for(source, target), unchanged, kinds


def _tamper(system: str, path: str, kind: str, how: str, rng: random.Random) -> str:
    """Changes the device at `path` (or beside it); returns the directory the refusal must name."""
    full = os.path.join(system, os.fsdecode(to_bytes(path)))
    parent = path.rpartition("/")[0]
    if how == "stray":
        with open(os.path.join(os.path.dirname(full), f"stray-{rng.randrange(1 << 30)}"), "wb") as f:
            f.write(b"in no build\n")
    elif how == "remove":
        shutil.rmtree(full) if kind == "dir" else os.unlink(full)
    elif how == "contents":
        with open(full, "ab") as f:
            f.write(b"!")
    elif how == "mode":
        os.chmod(full, stat.S_IMODE(os.lstat(full).st_mode) ^ 0o010)
    elif how == "owner":
        info = os.lstat(full)
        os.lchown(full, info.st_uid, info.st_gid + 1)
    elif how == "file_to_symlink":
        os.unlink(full)
        os.symlink("elsewhere", full)
    else:  # dir_to_symlink: the same contents, moved outside the root
        outside = os.path.join(os.path.dirname(system), "outside", f"moved-{rng.randrange(1 << 30)}")
        os.makedirs(os.path.dirname(outside), exist_ok=True)
        shutil.move(full, outside)
        os.symlink(outside, full)
    return parent


def _applicable(how: str, kind: str) -> bool:
    return {
        "contents": kind == "file",
        "file_to_symlink": kind == "file",
        "dir_to_symlink": kind == "dir",
        "mode": kind != "symlink",
    }.get(how, True)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_tampered_unchanged_entry_is_refused_naming_its_directory(tmp_path, seed: int) -> None:
    source, _, package, layout, unchanged, kinds = _release(str(tmp_path), seed)
    rng = random.Random(seed)
    tampered = 0
    for number, how in enumerate(TAMPERINGS):
        candidates = [p for p in unchanged if _applicable(how, kinds[p])]
        if not candidates:
            continue
        path = rng.choice(candidates)
        directory = str(tmp_path / f"device-{number}")
        config = dc.materialize(source, directory, layout)
        named = _tamper(os.path.join(directory, "system"), path, kinds[path], how, rng)
        before = dc.device_hash(directory)
        with pytest.raises(OtaError) as error:
            dc.apply(config, package)
        where = os.path.join(directory, "system") + (f"/{escape(named)}" if named else "")
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"{where}: "), (how, path, message)
        assert "unchanged" in message, (how, path, message)
        assert dc.device_hash(directory) == before, (how, path)
        tampered += 1
    assert tampered >= 4 or len(unchanged) < 3, (seed, tampered, unchanged)


@pytest.mark.parametrize("seed", SEEDS)
def test_untampered_device_applies_and_a_rerun_finds_the_groups_intact(tmp_path, seed: int) -> None:
    source, target, package, layout, _, _ = _release(str(tmp_path), seed)
    config = dc.materialize(source, str(tmp_path / "device"), layout)
    assert dc.apply(config, package) == APPLIED
    assert dc.compare(config, target) == []
    assert dc.apply(config, package) == ALREADY
