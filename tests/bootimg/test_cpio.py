"""Deterministic newc cpio: GNU cpio reads what we write, bytes do not depend on the build host,
and the bounded reader refuses malformed archives with one clean error."""

from __future__ import annotations

import os
import random
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootimg_helpers import mutate
from ota.errors import OtaError
from ota.format import cpio
from ota.format.cpio import Entry, Kind

ENTRIES = [
    Entry("init", Kind.FILE, 0o750, data=b"#!/system/bin/sh\necho boot\n"),
    Entry("system", Kind.DIR, 0o755),
    Entry("system/bin", Kind.DIR, 0o751, uid=0, gid=2000),
    Entry("system/bin/sh", Kind.FILE, 0o4755, uid=0, gid=2000, data=b"\x7fELF" + bytes(range(256)) * 3),
    Entry("system/bin/toybox", Kind.SYMLINK, 0o777, data=b"sh"),
    Entry("system/empty", Kind.FILE, 0o600, uid=1000, gid=1000),
    Entry("dev", Kind.DIR, 0o755),
    Entry("dev/console", Kind.CHARDEV, 0o600, rdev=(5, 1)),
    Entry("dev/block0", Kind.BLOCKDEV, 0o660, gid=6, rdev=(179, 0)),
    Entry("dev/initctl", Kind.FIFO, 0o644),
    Entry("odd name-é", Kind.FILE, 0o644, data=b"x" * 5),
]


def _gnu_listing(archive: bytes) -> dict[str, tuple[list[str], str]]:
    """path -> (fields before the date, text after the date) of `cpio -itvn`; the date must be
    the fixed mtime 0, which GNU cpio prints as "Jan  1  1970"."""
    done = subprocess.run(["cpio", "-itvn", "--quiet"], input=archive, capture_output=True, check=True)
    listing = {}
    for line in done.stdout.decode().splitlines():
        head, date, name = line.partition(" Jan  1  1970 ")
        assert date, f"mtime is not the epoch: {line}"
        listing[name.split(" -> ")[0]] = (head.split(), name)
    return listing


def test_gnu_cpio_lists_names_modes_owners_devices_and_links() -> None:
    archive = cpio.write(ENTRIES)
    listing = _gnu_listing(archive)
    assert sorted(listing) == sorted(e.path for e in ENTRIES)
    for entry in ENTRIES:
        fields, name = listing[entry.path]
        assert fields[0] == stat.filemode(entry.kind.value | entry.mode), entry.path
        assert (fields[2], fields[3]) == (str(entry.uid), str(entry.gid)), entry.path
        if entry.kind in (Kind.CHARDEV, Kind.BLOCKDEV):
            assert fields[4:] == [f"{entry.rdev[0]},", str(entry.rdev[1])]
        elif entry.kind is Kind.SYMLINK:
            assert name == f"{entry.path} -> {entry.data.decode()}"
        elif entry.kind is Kind.FILE:
            assert fields[4:] == [str(len(entry.data))]


def test_gnu_cpio_extracts_identical_tree(tmp_path: Path) -> None:
    regular = [e for e in ENTRIES if e.kind in (Kind.FILE, Kind.DIR, Kind.SYMLINK)]
    archive = cpio.write(regular)
    subprocess.run(["cpio", "-id", "--quiet", "--no-preserve-owner"], input=archive, cwd=tmp_path, check=True)
    for entry in regular:
        path = tmp_path / entry.path
        info = path.lstat()
        assert stat.S_IFMT(info.st_mode) == entry.kind.value, entry.path
        if entry.kind is Kind.SYMLINK:
            assert os.readlink(path) == entry.data.decode()
            continue
        assert stat.S_IMODE(info.st_mode) == entry.mode, entry.path
        if entry.kind is Kind.FILE:
            assert path.read_bytes() == entry.data
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted(e.path for e in regular)


def test_layout_is_exact_newc() -> None:
    archive = cpio.write([Entry("a", Kind.FILE, 0o644, data=b"xyz")], mtime=7)
    header = b"070701" + b"".join(b"%08X" % v for v in (300000, 0o100644, 0, 0, 1, 7, 3, 0, 0, 0, 0, 2, 0))
    assert archive.startswith(header + b"a\0" + b"xyz\0")
    trailer = b"070701" + b"".join(b"%08X" % v for v in (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0)) + b"TRAILER!!!\0"
    assert archive[len(header) + 6 :] == trailer + b"\0" * (-len(trailer) & 3)
    assert len(archive) % 4 == 0


def test_bytes_do_not_depend_on_input_order() -> None:
    shuffled = ENTRIES[:]
    random.Random(4).shuffle(shuffled)
    assert cpio.write(shuffled) == cpio.write(ENTRIES)
    assert cpio.read(cpio.write(ENTRIES), "a.cpio") == sorted(ENTRIES, key=lambda e: e.path.encode())


def _make_tree(root: Path, order: list[str], umask: int, mtime: int) -> None:
    old = os.umask(umask)
    try:
        for name in order:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith("link"):
                path.symlink_to("target")
            else:
                path.write_bytes(name.encode() * 3)
                if name.endswith(".sh"):
                    path.chmod(0o700 & ~umask | 0o100)
            os.utime(path, (mtime, mtime), follow_symlinks=False)
    finally:
        os.umask(old)


def test_tree_archive_ignores_creation_order_mtimes_and_umask(tmp_path: Path) -> None:
    names = ["init.rc", "bin/run.sh", "bin/tool", "etc/deep/conf", "etc/link", "z"]
    _make_tree(tmp_path / "one", names, 0o022, 1_000_000)
    _make_tree(tmp_path / "two", names[::-1], 0o077, 2_000_000_000)
    one = cpio.write(cpio.entries_from_tree(tmp_path / "one"))
    two = cpio.write(cpio.entries_from_tree(tmp_path / "two"))
    assert one == two
    modes = {e.path: e.mode for e in cpio.read(one, "one.cpio")}
    assert modes == {
        "bin": 0o755,
        "bin/run.sh": 0o755,
        "bin/tool": 0o644,
        "etc": 0o755,
        "etc/deep": 0o755,
        "etc/deep/conf": 0o644,
        "etc/link": 0o777,
        "init.rc": 0o644,
        "z": 0o644,
    }


def test_reader_accepts_gnu_cpio_output(tmp_path: Path) -> None:
    _make_tree(tmp_path, ["a/b/c", "a/link", "top.sh"], 0o022, 0)
    found = subprocess.run(
        "find . | cpio -o -H newc --quiet", shell=True, cwd=tmp_path, capture_output=True, check=True
    )
    entries = {e.path: e for e in cpio.read(found.stdout, "gnu.cpio")}
    assert sorted(entries) == ["a", "a/b", "a/b/c", "a/link", "top.sh"]
    assert entries["a/b/c"].data == b"a/b/c" * 3
    assert entries["a/link"] == Entry("a/link", Kind.SYMLINK, 0o777, data=b"target")


@pytest.mark.parametrize(
    "entries,message",
    [
        ([Entry("a/b", Kind.FILE, 0o644)], 'a/b: cpio parent directory "a" is not in the archive'),
        (
            [Entry("a", Kind.FILE, 0o644), Entry("a/b", Kind.FILE, 0o644)],
            'a/b: cpio parent directory "a" is not a directory',
        ),
        ([Entry("a", Kind.DIR, 0o755), Entry("a", Kind.FILE, 0o644)], "a: cpio path: listed twice"),
    ],
)
def test_writer_rejects_trees_a_kernel_cannot_unpack(entries: list[Entry], message: str) -> None:
    with pytest.raises(OtaError) as err:
        cpio.write(entries)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"path": "/abs", "kind": Kind.FILE, "mode": 0o644}, "/abs: cpio path: must be relative"),
        ({"path": "a/../b", "kind": Kind.FILE, "mode": 0o644}, "a/../b: cpio path: must be relative"),
        ({"path": "a", "kind": Kind.FILE, "mode": 0o100644}, "a: cpio mode: 0o100644 has bits beyond 0o7777"),
        ({"path": "d", "kind": Kind.DIR, "mode": 0o755, "data": b"x"}, "d: cpio data: a dir entry carries no data"),
        ({"path": "l", "kind": Kind.SYMLINK, "mode": 0o777}, "l: cpio symlink: empty target"),
        ({"path": "f", "kind": Kind.FILE, "mode": 0o644, "rdev": (1, 3)}, "f: cpio rdev: only device nodes"),
        ({"path": "f", "kind": Kind.FILE, "mode": 0o644, "uid": -1}, "f: cpio uid: -1 does not fit 32 bits"),
    ],
)
def test_entry_rejects_bad_fields(kwargs: dict, message: str) -> None:
    with pytest.raises(OtaError) as err:
        Entry(**kwargs)
    assert str(err.value).startswith(message)


GOOD = cpio.write(ENTRIES)
HARDLINK = cpio.write([Entry("a", Kind.FILE, 0o644, data=b"x")]).replace(b"00000001", b"00000002", 1)


def _with(offset: int, raw: bytes) -> bytes:
    return GOOD[:offset] + raw + GOOD[offset + len(raw) :]


@pytest.mark.parametrize(
    "data,message",
    [
        (b"070707" + GOOD[6:], "cpio magic at offset 0: b'070707' is not newc (070701)"),
        (GOOD[:50], "cpio header at offset 0: truncated"),
        (_with(6 + 8 * 11, b"FFFFFFFF"), "cpio namesize at offset 0: 4294967295 does not fit the archive"),
        (_with(6 + 8 * 6, b"7FFFFFFF"), "cpio filesize at offset 0: 2147483647 bytes run past the end"),
        (_with(6 + 8 * 6, b"-0000001"), "cpio filesize at offset 0: b'-0000001' is not 8 hex digits"),
        (HARDLINK, 'cpio nlink of "a": hard links are not supported'),
        (GOOD[: len(GOOD) - 124], "cpio header at offset"),
        (_with(6 + 8 * 1, b"0000C1A4"), 'cpio mode of "dev": unsupported file type 0o140000'),
    ],
)
def test_reader_rejects_malformed_archives(data: bytes, message: str) -> None:
    with pytest.raises(OtaError) as err:
        cpio.read(data, "ramdisk.cpio")
    assert str(err.value).startswith(f"ramdisk.cpio: {message}")


@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, len(GOOD)),
)
def test_reader_only_raises_ota_error(edits: list[tuple[int, int]], cut: int) -> None:
    data = mutate(GOOD, edits, cut)
    try:
        entries = cpio.read(data, "fuzz.cpio")
    except OtaError:
        return
    assert sum(len(e.data) for e in entries) <= len(data)
