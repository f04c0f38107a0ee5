"""The tar reader (py/ota/actions/tar_tree.py): generated archives come out exactly as written, and
every archive it must refuse is refused with one line naming the archive and the member, exit 1,
and no output left behind."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ota.actions import shard_layout, tar_tree, tree
from ota.errors import OtaError
from ota.format import jsonio
from ota.format.paths import check_path, escape, to_bytes
from tar_pairs import ALL_CLASSES, Member, source_tree, tar_info, target_tree, write_tar

SHARDS = 8


def _accepted(name: str) -> bool:
    try:
        check_path(name, "probe")
    except OtaError:
        return False
    return True


# Every name class the repository's path rule (py/ota/format/paths.py) accepts today: all of them
# once that rule takes any byte but NUL and '/'; until then it refuses '\'.
CLASSES = tuple(c for c in ALL_CLASSES if c != "backslash" or _accepted("a\\b"))


def _shard_dirs(base: Path) -> list[str]:
    return [str(base / f"shard_{k}") for k in range(SHARDS)]


def _read(tmp_path: Path, tar: Path, **limits: int) -> tuple[list[tree.TreeEntry], dict]:
    """Runs the reader into a fresh `out` directory (as Bazel hands an action empty outputs)."""
    if (tmp_path / "out").exists():
        shutil.rmtree(tmp_path / "out")
    dirs = _shard_dirs(tmp_path / "out")
    manifest, tree_json = tmp_path / "m.json", tmp_path / "t.json"
    tar_tree.write_outputs(str(tar), dirs, str(manifest), str(tree_json), tar_tree.Limits(**limits))
    return tree.load_tree(str(tree_json)), jsonio.read(str(manifest))


def _expected(members: list[Member]) -> dict[str, tuple]:
    """What the reader must record per path: (kind, mode, uid, gid, contents or link target)."""
    data = {m.name: m.data for m in members if m.kind == "file"}
    out = {}
    for m in members:
        path = m.name.decode("utf-8", "surrogateescape")
        if m.kind == "file":
            out[path] = ("file", m.mode, m.uid, m.gid, m.data)
        elif m.kind == "hardlink":
            out[path] = ("file", m.mode, m.uid, m.gid, data[m.link])
        elif m.kind == "dir":
            out[path] = ("dir", m.mode, m.uid, m.gid, None)
        else:
            out[path] = ("symlink", 0o777, m.uid, m.gid, m.link)
    for path in list(out):  # parents the archive does not list
        parts = path.split("/")
        for depth in range(1, len(parts)):
            out.setdefault("/".join(parts[:depth]), ("dir", 0o755, 0, 0, None))
    return out


def _recorded(entries: list[tree.TreeEntry]) -> dict[str, tuple]:
    out = {}
    for e in entries:
        if e.kind == tree.FILE:
            value = Path(e.file).read_bytes()  # type: ignore[arg-type]
        elif e.kind == tree.SYMLINK:
            value = to_bytes(e.target)  # type: ignore[arg-type]
        else:
            value = None
        out[e.path] = (e.kind, e.mode, e.uid, e.gid, value)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("compression", "pax"), [("", False), ("gz", True), ("bz2", False), ("xz", True)])
def test_generated_archives_come_out_exactly(tmp_path: Path, seed: int, compression: str, pax: bool) -> None:
    """48 generated trees (modes with setuid/sticky bits, owners, symlinks, hard links, empty
    directories, every name class): each entry's bytes, mode, owner and link target exactly."""
    source = source_tree(seed, 40, CLASSES)
    for members in (source, target_tree(source, seed, CLASSES)):
        tar = tmp_path / f"t.tar.{compression}"
        write_tar(str(tar), members, compression=compression, pax=pax)
        entries, manifest = _read(tmp_path, tar)
        assert _recorded(entries) == _expected(members)
        # The manifest holds the same entries with hashes; every file sits in its path's shard.
        by_path = {raw["path"]: raw for raw in manifest["entries"]}
        for e in entries:
            assert by_path[e.path]["mode"] == e.mode
            if e.kind == tree.FILE:
                content = Path(e.file).read_bytes()  # type: ignore[arg-type]
                assert by_path[e.path]["size"] == len(content)
                shard = shard_layout.shard_of(e.path, SHARDS)
                assert Path(e.file).parent.name == f"shard_{shard}"  # type: ignore[arg-type]
        for directory in (tmp_path / "out").iterdir():
            listing = jsonio.read(str(directory / shard_layout.TREE_INDEX))["entries"]
            assert len(listing) == len(list(directory.iterdir())) - 1
        # The manifest's raw bytes carry each name's own bytes (not an escape of them).
        raw = (tmp_path / "m.json").read_bytes()
        for m in members:
            assert jsonio.dumps(m.name.decode("utf-8", "surrogateescape"))[1:-2] in raw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b and b"/" not in b), max_size=3))
def test_any_name_the_path_rule_accepts_survives_byte_exact(tmp_path: Path, parts: list[bytes]) -> None:
    """Generated names of arbitrary bytes: accepted ones keep their bytes; the others are refused
    with one line naming the member."""
    name = b"/".join([b"top", *parts])
    tar = tmp_path / "one.tar"
    write_tar(str(tar), [Member(name, "file", data=b"x")])
    path = name.decode("utf-8", "surrogateescape")
    legal = _accepted(path) and all(p not in (b".", b"..") for p in parts)
    if legal:
        entries, _ = _read(tmp_path, tar)
        assert [to_bytes(e.path) for e in entries if e.kind == tree.FILE] == [name]
    else:
        with pytest.raises(OtaError) as err:
            _read(tmp_path, tar)
        assert str(err.value).startswith(f'{tar}: member "{escape(path)}": ')


def test_root_entry_leading_dot_slash_and_missing_parents(tmp_path: Path) -> None:
    """`tar -C dir .` writes "./" and "./x"; parents nobody lists are 0755 root directories."""
    tar = tmp_path / "dot.tar"
    write_tar(str(tar), [Member(b".", "dir", 0o700), Member(b"./a/b/c", "file", 0o600, 5, 6, b"c")])
    entries, _ = _read(tmp_path, tar)
    assert _recorded(entries) == {
        "a": ("dir", 0o755, 0, 0, None),
        "a/b": ("dir", 0o755, 0, 0, None),
        "a/b/c": ("file", 0o600, 5, 6, b"c"),
    }


def _raw_tar(path: Path, infos: list[tarfile.TarInfo]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for info in infos:
            archive.addfile(info, io.BytesIO(b"\0" * info.size) if info.isreg() else None)


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def _run(tmp_path: Path, tar: Path, *extra: str) -> subprocess.CompletedProcess:
    dirs = _shard_dirs(tmp_path / "out")
    args = [f"--shard_dir={d}" for d in dirs]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    command = [sys.executable, "-m", "ota.actions.tar_tree", f"--tar={tar}", *args]
    command += [f"--out_manifest={tmp_path / 'm.json'}", f"--out_tree={tmp_path / 't.json'}", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def _members(*members: Member) -> list[tarfile.TarInfo]:
    return [tar_info(m)[0] for m in members]


REFUSALS = [
    (
        [_special("dev/null", tarfile.CHRTYPE)],
        'member "dev/null": a character device: only files, directories and symlinks can be installed',
    ),
    (
        [_special("dev/sda", tarfile.BLKTYPE)],
        'member "dev/sda": a block device: only files, directories and symlinks can be installed',
    ),
    (
        [_special("run/pipe", tarfile.FIFOTYPE)],
        'member "run/pipe": a fifo: only files, directories and symlinks can be installed',
    ),
    (_members(Member(b"/etc/passwd", "file")), 'member "/etc/passwd": absolute paths are not allowed'),
    (_members(Member(b"a/../../x", "file")), "member \"a/../../x\": a '..' component is not allowed"),
    (_members(Member(b"a/./x", "file")), "member \"a/./x\": a '.' component is not allowed"),
    (_members(Member(b"etc/x", "file"), Member(b"etc/x", "file")), 'member "etc/x": a second member for "etc/x"'),
    (_members(Member(b"./etc", "dir"), Member(b"etc/", "dir")), 'member "etc": a second member for "etc"'),
    (
        _members(Member(b"lib", "symlink", link=b"/usr/lib"), Member(b"lib/x", "file")),
        'member "lib/x": below "lib", which is a symlink',
    ),
    (
        _members(Member(b"lib/x", "file"), Member(b"lib", "symlink", link=b"/x")),
        'member "lib/x": below "lib", which is a symlink',
    ),
    (_members(Member(b"f", "file"), Member(b"f/x", "dir")), 'member "f/x": below "f", which is a regular file'),
    (
        _members(Member(b"h", "hardlink", link=b"nope")),
        'member "h": hard link to "nope", which is no earlier regular file',
    ),
    (_members(Member(b"l", "symlink", link=b"")), 'member "l": symlink with an empty target'),
    (
        _members(Member(b"d/" + b"n" * 256, "file")),
        'member "d/' + "n" * 256 + '": a component is longer than 255 bytes',
    ),
    (
        _members(Member(b".ota-scratch/x", "file")),
        "member \".ota-scratch/x\": '.ota-scratch' at the top of the tree is reserved for the updater's scratch files",
    ),
]


@pytest.mark.parametrize(("infos", "problem"), REFUSALS)
def test_refusals_are_one_line_naming_the_archive_and_member(tmp_path: Path, infos: list, problem: str) -> None:
    tar = tmp_path / "bad.tar"
    _raw_tar(tar, infos)
    proc = _run(tmp_path, tar)
    assert (proc.returncode, proc.stderr) == (1, f"tar_tree: error: {tar}: {problem}\n")
    _assert_no_output(tmp_path)


def _assert_no_output(tmp_path: Path) -> None:
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "t.json").exists()
    assert all(not any(Path(d).iterdir()) for d in _shard_dirs(tmp_path / "out"))


def test_a_tar_bomb_stops_at_the_size_limit_before_writing_it(tmp_path: Path) -> None:
    """64 MiB of zeros gzip to ~64 KiB; with a 1 MiB limit nothing of it reaches the disk."""
    tar = tmp_path / "bomb.tar.gz"
    big = tarfile.TarInfo("zeros")
    big.size = 64 << 20
    with tarfile.open(tar, "w:gz") as archive:
        archive.addfile(tarfile.TarInfo("small"), io.BytesIO(b""))
        archive.addfile(big, io.BytesIO(bytes(big.size)))
    assert tar.stat().st_size < 1 << 20
    proc = _run(tmp_path, tar, "--max_total_size=1048576")
    assert (proc.returncode, proc.stderr) == (
        1,
        f'tar_tree: error: {tar}: member "zeros": the archive\'s files exceed 1048576 bytes (tar_max_size_mb)\n',
    )
    _assert_no_output(tmp_path)


def test_hard_links_count_again_towards_the_size_limit(tmp_path: Path) -> None:
    tar = tmp_path / "links.tar"
    write_tar(str(tar), [Member(b"f", "file", data=b"x" * 600), Member(b"g", "hardlink", link=b"f")])
    proc = _run(tmp_path, tar, "--max_total_size=1000")
    assert (
        proc.stderr == f'tar_tree: error: {tar}: member "g": the archive\'s files exceed 1000 bytes (tar_max_size_mb)\n'
    )


def test_an_archive_of_too_many_members_is_refused(tmp_path: Path) -> None:
    tar = tmp_path / "many.tar"
    write_tar(str(tar), [Member(b"d%d" % i, "dir") for i in range(5)])
    proc = _run(tmp_path, tar, "--max_entries=4")
    assert (proc.returncode, proc.stderr) == (
        1,
        f'tar_tree: error: {tar}: member "d4": more than 4 members (tar_max_entries)\n',
    )
    _assert_no_output(tmp_path)


@pytest.mark.parametrize("contents", [b"", b"not a tar at all" * 100, b"\x1f\x8b\x08\x00garbage"])
def test_a_file_that_is_no_tar_is_one_line(tmp_path: Path, contents: bytes) -> None:
    tar = tmp_path / "bad.tar"
    tar.write_bytes(contents)
    proc = _run(tmp_path, tar)
    assert proc.returncode == 1 and proc.stderr.startswith(f"tar_tree: error: {tar}: not a readable tar archive: ")
    assert proc.stderr.count("\n") == 1
    _assert_no_output(tmp_path)


def test_a_truncated_archive_is_one_line(tmp_path: Path) -> None:
    tar = tmp_path / "cut.tar.gz"
    write_tar(str(tar), source_tree(3, 30, ("plain",)), compression="gz")
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    proc = _run(tmp_path, tar)
    assert proc.returncode == 1 and proc.stderr.startswith(f"tar_tree: error: {tar}: ")
    assert proc.stderr.count("\n") == 1
    _assert_no_output(tmp_path)
