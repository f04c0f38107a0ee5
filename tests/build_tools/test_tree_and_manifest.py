"""system_manifest and tree validation: exact output, and each malformed tree's one-line error."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from build_helpers import Item, run_ok, run_tool, write_tree
from ota.actions import tree
from ota.errors import OtaError


def test_system_manifest_output_is_exact_and_reproducible(tmp_path: Path) -> None:
    items = [
        Item("bin", "dir", mode=0o755),
        Item("bin/sh", data=b"#!sh\n", mode=0o755, gid=2000),
        Item("lib", "dir", mode=0o750, uid=1, gid=2),
        Item("lib/l", "symlink", target="/x", mode=0o777),
    ]
    for name, tz, umask in (("a", "UTC", 0o022), ("b/c", "Europe/Paris", 0o077)):
        work = tmp_path / name
        work.mkdir(parents=True)
        write_tree(work, "t", list(reversed(items)))
        run_ok("ota.actions.system_manifest", "--tree", "t.tree.json", "--out", "m.json", cwd=work, umask=umask, TZ=tz)
    first = (tmp_path / "a" / "m.json").read_bytes()
    assert first == (tmp_path / "b" / "c" / "m.json").read_bytes()
    sha256, sha1 = hashlib.sha256(b"#!sh\n").hexdigest(), hashlib.sha1(b"#!sh\n").hexdigest()
    assert (
        first
        == (
            '{"entries":[{"gid":0,"kind":"dir","mode":493,"path":"bin","uid":0},'
            f'{{"gid":2000,"kind":"file","mode":493,"path":"bin/sh","sha1":"{sha1}","sha256":"{sha256}","size":5,"uid":0}},'
            '{"gid":2,"kind":"dir","mode":488,"path":"lib","uid":1},'
            '{"gid":0,"kind":"symlink","mode":511,"path":"lib/l","target":"/x","uid":0}]}\n'
        ).encode()
    )


def _entry(path: str, kind: str = "dir", **extra: object) -> dict:
    return {"path": path, "kind": kind, "mode": 0o755, "uid": 0, "gid": 0, **extra}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([_entry("a"), _entry("a")], "T: a: listed twice"),
        ([_entry("a", "file", file="x"), _entry("a/b")], "T: a: is both a file and a directory (parent of a/b)"),
        ([_entry("a/b")], "T: a/b: parent directory a is not listed"),
        ([_entry("../up")], "T: entries[0].path \"../up\": a '..' component is not allowed"),
        ([_entry("/abs")], 'T: entries[0].path "/abs": absolute paths are not allowed'),
        ([_entry("a\0b")], 'T: entries[0].path "a\\000b": a NUL byte is not allowed in a file name'),
        ([_entry("a//b")], "T: entries[0].path \"a//b\": an empty component ('//' or a trailing '/') is not allowed"),
        ([_entry("a/.")], "T: entries[0].path \"a/.\": a '.' component is not allowed"),
        (
            [_entry(".ota-scratch/x")],
            "T: entries[0].path \".ota-scratch/x\": '.ota-scratch' at the top of the tree is reserved for the updater's scratch files",
        ),
        ([_entry("a", "fifo")], "T: a: kind 'fifo' is not one of file, dir, symlink"),
        ([_entry("a", mode=0o10000)], "T: a: mode 4096 out of range 0..4095"),
        ([_entry("a", uid=-1)], "T: a: uid -1 out of range 0..4294967295"),
        ([_entry("a", gid=True)], "T: a: gid: expected int, got True"),
        ([_entry("a", "symlink", target="")], 'T: a: target "": a link target is non-empty and has no NUL'),
        ([_entry("a", "file")], "T: a: file: missing"),
    ],
)
def test_malformed_trees(entries: list, message: str) -> None:
    with pytest.raises(OtaError) as info:
        tree.parse({"entries": entries}, "T", manifest=False)
    assert str(info.value) == message


def test_manifest_needs_hashes_and_cli_reports_one_line(tmp_path: Path) -> None:
    with pytest.raises(OtaError, match=r"^M: a.size: expected a non-negative integer, got None$"):
        tree.parse({"entries": [_entry("a", "file", file="x")]}, "M", manifest=True)
    (tmp_path / "t.json").write_text(json.dumps({"entries": [_entry("a", "file", file="missing")]}))
    proc = run_tool("ota.actions.system_manifest", "--tree", "t.json", "--out", "m.json", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        "system_manifest: error: missing: cannot read: No such file or directory\n",
    )
    (tmp_path / "t.json").write_text("{")
    proc = run_tool("ota.actions.system_manifest", "--tree", "t.json", "--out", "m.json", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("system_manifest: error: t.json: not valid JSON (")
    proc = run_tool("ota.actions.system_manifest", "--tree", "t.json", cwd=tmp_path)
    assert proc.returncode == 2
