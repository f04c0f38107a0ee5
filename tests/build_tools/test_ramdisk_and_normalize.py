"""ramdisk and normalize_gzip tools: deterministic cpio+gzip, GNU gzip normalized for imgdiff."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from build_helpers import Item, run_ok, run_tool, write_tree
from ota.format import cpio, gzipper

ITEMS = [
    Item("init", data=b"#!/bin/sh\necho hi\n", mode=0o750),
    Item("dev", "dir", mode=0o755),
    Item("system", "dir", mode=0o755, uid=0, gid=0),
    Item("system/bin", "symlink", target="/bin", mode=0o777),
    Item("etc", "dir"),
    Item("etc/fstab", data=b"none / tmpfs\n", uid=1000, gid=1000),
]


def test_ramdisk_is_cpio_of_the_tree_and_reproducible(tmp_path: Path) -> None:
    outputs = []
    for name, tz, umask in (("a", "UTC", 0o022), ("b/c", "Pacific/Auckland", 0o077)):
        work = tmp_path / name
        work.mkdir(parents=True)
        write_tree(work, "rd", ITEMS)
        run_ok("ota.actions.ramdisk", "--tree", "rd.tree.json", "--out", "ramdisk.gz", cwd=work, umask=umask, TZ=tz)
        outputs.append((work / "ramdisk.gz").read_bytes())
    assert outputs[0] == outputs[1]
    member = gzipper.parse_member(outputs[0], "ramdisk")
    assert outputs[0] == gzipper.compress(member.inflated, 9)  # zlib level 9, what imgdiff re-creates
    entries = cpio.read(member.inflated, "ramdisk")
    assert [(e.path, e.kind.name, e.mode, e.uid, e.gid, e.data) for e in entries] == [
        ("dev", "DIR", 0o755, 0, 0, b""),
        ("etc", "DIR", 0o644, 0, 0, b""),
        ("etc/fstab", "FILE", 0o644, 1000, 1000, b"none / tmpfs\n"),
        ("init", "FILE", 0o750, 0, 0, b"#!/bin/sh\necho hi\n"),
        ("system", "DIR", 0o755, 0, 0, b""),
        ("system/bin", "SYMLINK", 0o777, 0, 0, b"/bin"),
    ]


def test_normalize_gnu_gzip(tmp_path: Path) -> None:
    text = b"".join(b"kernel symbol %d\n" % i for i in range(20000))
    (tmp_path / "x").write_bytes(text)
    gnu = subprocess.run(["gzip", "-9n", "-c", "x"], cwd=tmp_path, capture_output=True, check=True).stdout
    (tmp_path / "x.gz").write_bytes(gnu)
    proc = run_ok("ota.actions.normalize_gzip", "--in", "x.gz", "--out", "y.gz", cwd=tmp_path)
    assert proc.stdout == proc.stderr == ""
    out = (tmp_path / "y.gz").read_bytes()
    assert out != gnu and gzip.decompress(out) == text
    assert out == gzipper.compress(text)
    run_ok("ota.actions.normalize_gzip", "--in", "y.gz", "--out", "z.gz", cwd=tmp_path)
    assert (tmp_path / "z.gz").read_bytes() == out  # idempotent
    run_ok("ota.actions.normalize_gzip", "--in", "x", "--out", "copy", cwd=tmp_path)
    assert (tmp_path / "copy").read_bytes() == text  # not gzip: copied


def test_normalize_damaged_gzip_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "bad.gz").write_bytes(gzipper.compress(b"abc" * 1000)[:-8])
    proc = run_tool("ota.actions.normalize_gzip", "--in", "bad.gz", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("normalize_gzip: error: bad.gz: gzip ")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "o").exists()
