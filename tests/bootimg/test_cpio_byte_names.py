"""Ramdisk names of any bytes: a newc archive, and a ramdisk built from a tree, keep every name
and link target byte for byte (`\\`, UTF-8 and non-UTF-8 bytes, spaces, newlines, control
bytes, 255-byte names), and GNU cpio, which a kernel's unpacker agrees with, extracts the same
bytes. The trees come from seeds (py/ota/testing/byte_names.py), each with every name kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ota.format import cpio, gzipper, jsonio
from ota.format.paths import from_bytes, to_bytes
from ota.testing import byte_names

SEEDS = range(6)
_KINDS = {"file": cpio.Kind.FILE, "dir": cpio.Kind.DIR, "symlink": cpio.Kind.SYMLINK}


def _trees(seed: int) -> list[dict[bytes, byte_names.Node]]:
    """The source and target tree of a seeded pair, parents included, by path bytes."""
    return [byte_names.expected_tree(spec) for spec in byte_names.tree_pair(seed, count=40)]


def _archived(entries: list[cpio.Entry]) -> dict[bytes, byte_names.Node]:
    return {to_bytes(e.path): (e.kind.name.lower(), e.mode, e.uid, e.gid, e.data) for e in entries}


def _extracted(archive: bytes, directory: Path) -> dict[bytes, tuple[str, bytes]]:
    """Kind and contents (or link target) of what GNU cpio extracts, by path bytes."""
    directory.mkdir()
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames", "--no-preserve-owner"],
        input=archive,
        cwd=directory,
        check=True,
    )
    return {path: (node[0], node[4]) for path, node in byte_names.device_tree(str(directory)).items()}


@pytest.mark.parametrize("seed", SEEDS)
def test_archive_round_trip_keeps_every_name_byte(tmp_path: Path, seed: int) -> None:
    for index, tree in enumerate(_trees(seed)):
        entries = [
            cpio.Entry(from_bytes(path), _KINDS[kind], mode, uid, gid, data)
            for path, (kind, mode, uid, gid, data) in tree.items()
        ]
        archive = cpio.write(entries)
        assert _archived(cpio.read(archive, "generated.cpio")) == tree
        extracted = _extracted(archive, tmp_path / str(index))
        assert extracted == {path: (node[0], node[4]) for path, node in tree.items()}
        # Reading the extracted directory back gives the same names (links read as bytes).
        from_disk = cpio.entries_from_tree(tmp_path / str(index))
        assert {to_bytes(e.path): (e.kind.name.lower(), e.data) for e in from_disk} == extracted


@pytest.mark.parametrize("seed", SEEDS)
def test_ramdisk_of_a_byte_name_tree_holds_its_names(tmp_path: Path, seed: int) -> None:
    tree = _trees(seed)[1]
    entries = []
    for index, (path, (kind, mode, uid, gid, data)) in enumerate(sorted(tree.items())):
        entry = {"path": from_bytes(path), "kind": kind, "mode": mode, "uid": uid, "gid": gid}
        if kind == "file":
            (tmp_path / str(index)).write_bytes(data)
            entry["file"] = str(tmp_path / str(index))
        elif kind == "symlink":
            entry["target"] = from_bytes(data)
        entries.append(entry)
    jsonio.write(str(tmp_path / "ramdisk.tree.json"), {"entries": entries})
    # The tool as a build action runs it (its own process: the name generators load other tools' flags).
    subprocess.run(
        [sys.executable, "-m", "ota.actions.ramdisk", "--tree", "ramdisk.tree.json", "--out", "ramdisk.gz"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.abspath(p) for p in sys.path if p)),
        check=True,
    )
    image = (tmp_path / "ramdisk.gz").read_bytes()
    inflated = gzipper.parse_member(image, "ramdisk").inflated
    assert _archived(cpio.read(inflated, "ramdisk")) == tree
    assert _extracted(inflated, tmp_path / "out") == {path: (node[0], node[4]) for path, node in tree.items()}
