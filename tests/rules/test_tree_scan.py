"""py/ota/actions/tree_scan.py, the scan behind ota_tree_repository, without Bazel.

Generated trees (any byte a Linux name allows, random modes, owners and symlink targets) must
come out of the generated BUILD.bazel exactly as an independent lstat walk sees them; special
files, unreadable entries and a symlinked root are refused with one line naming the path, and
leave no files/ behind.
"""

from __future__ import annotations

import ast
import hashlib
import os
import pathlib
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ota.actions import tree_scan
from ota.errors import OtaError
from ota.format import jsonio
from ota.format.paths import escape, to_bytes
from tree_host_scan import SPECIAL_NAMES, host_scan, parse_generated_build, seeded_tree

ERROR = "ota_tree_repository: error: "


def _run_scan(root: bytes, out: bytes) -> tuple[list[str], dict[bytes, list[bytes]]]:
    assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(out), "@rules_ota"]) == 0
    with open(os.path.join(out, b"BUILD.bazel"), encoding="ascii") as build:
        return parse_generated_build(build.read())


def _check_against_host(root: bytes, out: bytes) -> None:
    srcs, entries = _run_scan(root, out)
    expected = host_scan(root)
    assert sorted(entries) == sorted(expected)
    digests = set()
    for path, want in expected.items():
        fields = entries[path]
        assert fields[:4] == [
            want["kind"].encode(),
            b"%04o" % want["mode"],
            b"%d" % want["uid"],
            b"%d" % want["gid"],
        ], path
        if want["kind"] == "file":
            digest = fields[4].decode()
            # The whole manifest entry is recorded: sha256, size, sha1 (imported_tree.bzl's order).
            assert fields[4:] == [want["sha256"].encode(), b"%d" % want["size"], want["sha1"].encode()], path
            stored = pathlib.Path(os.fsdecode(out), "files", digest).read_bytes()
            assert hashlib.sha256(stored).hexdigest() == digest
            digests.add(digest)
        elif want["kind"] == "symlink":
            assert fields[4] == want["target"], path
        else:
            assert len(fields) == 4, path
    # One File per distinct content, and nothing else was copied (nothing outside the root).
    assert sorted(srcs) == sorted(f"files/{d}" for d in digests)
    assert sorted(os.listdir(os.path.join(out, b"files"))) == sorted(d.encode() for d in digests)
    _check_manifest(out, expected)


def _check_manifest(out: bytes, expected: dict[bytes, dict]) -> None:
    """manifest.json is the host's entries in path-byte order, in canonical JSON bytes (what
    ota_system_image uses as the manifest of an image that is this tree alone)."""
    raw = pathlib.Path(os.fsdecode(os.path.join(out, b"manifest.json"))).read_bytes()
    doc = jsonio.loads(raw, "manifest.json")
    assert raw == jsonio.dumps(doc)
    recorded = {}
    for entry in doc["entries"]:
        path = to_bytes(entry.pop("path"))
        if "target" in entry:
            entry["target"] = to_bytes(entry["target"])
        recorded[path] = entry
    assert list(recorded) == sorted(expected)
    assert recorded == expected


def test_seeded_device_tree(tmp_path) -> None:
    base = os.fsencode(tmp_path)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret").write_bytes(b"host secret")
    root = os.path.join(base, b"a", b"b")  # "escape" -> ../../outside/secret resolves to it
    seeded_tree(root, seed=14, count=300, names=[*SPECIAL_NAMES, b'q"uote'])
    _check_against_host(root, os.path.join(base, b"out"))
    stored = {p.read_bytes() for p in (tmp_path / "out/files").iterdir()}
    assert b"host secret" not in stored


_NAME = st.binary(min_size=1, max_size=12).filter(lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b".."))


@st.composite
def _trees(draw):
    """(path parts, kind, mode, owner, payload) lists: random names of any byte, random kinds."""
    entries = []
    for _ in range(draw(st.integers(1, 25))):
        depth = draw(st.integers(1, 3))
        parts = [draw(_NAME) for _ in range(depth)]
        kind = draw(st.sampled_from(["file", "dir", "symlink"]))
        mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o2750, 0o1777, 0o600, 0o700, 0o000, 0o7777]))
        owner = (draw(st.integers(0, 70000)), draw(st.integers(0, 70000)))
        payload = draw(st.binary(min_size=1, max_size=64).filter(lambda t: b"\0" not in t))
        entries.append((parts, kind, mode, owner, payload))
    return entries


def _materialize(root: bytes, entries) -> None:
    os.makedirs(root)
    for parts, kind, mode, owner, payload in entries:
        parent = root
        for part in parts[:-1]:
            parent = os.path.join(parent, part)
            if not os.path.lexists(parent):
                os.mkdir(parent)
            if os.path.islink(parent) or not os.path.isdir(parent):
                break
        path = os.path.join(parent, parts[-1])
        if os.path.islink(parent) or not os.path.isdir(parent) or os.path.lexists(path):
            continue  # a name the tree already uses for something else
        if kind == "symlink":
            os.symlink(payload, path)
            os.lchown(path, *owner)
        elif kind == "dir":
            os.mkdir(path)
            os.chown(path, *owner)
            os.chmod(path, mode | 0o700)  # root reads anything; keep the later mkdir below it simple
        else:
            with open(path, "wb") as f:
                f.write(payload)
            os.chown(path, *owner)
            os.chmod(path, mode)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees())
def test_generated_trees_round_trip(entries) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = os.fsencode(tmp)
        root = os.path.join(base, b"root")
        _materialize(root, entries)
        _check_against_host(root, os.path.join(base, b"out"))


@given(st.binary(max_size=40))
def test_starlark_string_is_ascii_and_exact(raw: bytes) -> None:
    literal = tree_scan.starlark_string(raw)
    assert literal.isascii() and "\n" not in literal
    assert ast.literal_eval(literal).encode("latin-1") == raw


def _refused(root: bytes, out: bytes, capsys) -> str:
    assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(out), "@rules_ota"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert not os.path.exists(os.path.join(out, b"files")) and not os.path.exists(os.path.join(out, b"BUILD.bazel"))
    return err.rstrip("\n")


def _special_file(path: str, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "char":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    elif kind == "block":
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 200))
    else:
        # bind() by a relative name: the absolute path may exceed sun_path's 108 bytes.
        cwd = os.getcwd()
        os.chdir(os.path.dirname(path))
        try:
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(os.path.basename(path))
            sock.close()
        finally:
            os.chdir(cwd)


@pytest.mark.parametrize(
    "kind,words",
    [("fifo", "a FIFO"), ("char", "a character device"), ("block", "a block device"), ("socket", "a socket")],
)
def test_special_files_are_refused(tmp_path, capsys, kind, words) -> None:
    root = tmp_path / "root"
    seeded_tree(os.fsencode(root), seed=1, count=10, names=SPECIAL_NAMES)
    special = root / "etc" / "Fő special"
    _special_file(str(special), kind)
    line = _refused(os.fsencode(root), os.fsencode(tmp_path / "out"), capsys)
    assert line == f"{ERROR}{escape(str(special))}: is {words}: a tree holds only files, directories and symlinks"


def test_symlinked_root_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    line = _refused(os.fsencode(tmp_path / "link"), os.fsencode(tmp_path / "out"), capsys)
    assert line == f"{ERROR}{tmp_path}/link: is a symlink (to real); name the directory itself"


def test_missing_root_and_file_root(tmp_path, capsys) -> None:
    line = _refused(os.fsencode(tmp_path / "nothing"), os.fsencode(tmp_path / "out"), capsys)
    assert line == f"{ERROR}{tmp_path}/nothing: cannot read: No such file or directory"
    (tmp_path / "file").write_text("x")
    line = _refused(os.fsencode(tmp_path / "file"), os.fsencode(tmp_path / "out"), capsys)
    assert line == f"{ERROR}{tmp_path}/file: is not a directory"


def test_display_escapes_control_and_invalid_bytes() -> None:
    assert tree_scan.display(b"a\nb\xffc\\d\xc5\x91") == "a\\012b\\377c\\134d\\305\\221"
    with pytest.raises(OtaError):
        raise OtaError(tree_scan.display(b"x\ny"), "one line")


def _scan_modules() -> set[str]:
    """The files of the modules `import ota.actions.tree_scan` loads (as the repository rule runs
    it, with -S), relative to the ota package."""
    import ota

    package = pathlib.Path(ota.__file__).parent
    loaded = subprocess.run(
        [
            sys.executable,
            "-B",
            "-S",
            "-c",
            (
                "import sys, ota.actions.tree_scan; print('\\n'.join(m.__file__ for n, m in sys.modules.items() "
                "if n.startswith('ota')))"
            ),
        ],
        env={"PYTHONPATH": str(package.parent), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return {os.path.relpath(f, package) for f in loaded}  # as loaded: runfiles are links


def _copy_tool(dest: pathlib.Path) -> None:
    """The scan's modules, readable by an unprivileged user (the runfiles may not be)."""
    import ota

    package = pathlib.Path(ota.__file__).parent
    for rel in _scan_modules():
        (dest / "ota" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / rel, dest / "ota" / rel)


@pytest.mark.parametrize("what", ["file", "dir"])
def test_unreadable_entries_are_refused(what) -> None:
    # Root reads anything, so the scan runs as nobody over a tree it may traverse but for one entry.
    top = pathlib.Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        top.chmod(0o755)
        _copy_tool(top / "py")
        root = top / "root"
        seeded_tree(os.fsencode(root), seed=2, count=0, names=[])
        for d in ("private", "deep", "deep/a/b/c/d/e/f/g/h"):
            (root / d).chmod(0o755)
        (root / "private/key").chmod(0o644)
        for p in root.rglob("*"):
            if not p.is_symlink():
                os.chown(p, 0, 0)
        bad = root / "etc" / "no access"
        if what == "file":
            bad.write_bytes(b"x")
            bad.chmod(0o600)
        else:
            bad.mkdir(mode=0o700)
        out = top / "out"
        out.mkdir()
        os.chown(out, 65534, 65534)
        proc = subprocess.run(
            [sys.executable, "-B", "-m", "ota.actions.tree_scan", str(root), str(out), "@rules_ota"],
            env={"PYTHONPATH": str(top / "py")},
            user=65534,
            group=65534,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == f"{ERROR}{bad}: cannot read: Permission denied\n"
        assert os.listdir(out) == []
    finally:
        shutil.rmtree(top)


def _scan_outputs(out: bytes) -> tuple[str, dict[bytes, bytes]]:
    with open(os.path.join(out, b"BUILD.bazel"), encoding="ascii") as build:
        text = build.read()
    files = os.path.join(out, b"files")
    return text, {name: pathlib.Path(os.fsdecode(os.path.join(files, name))).read_bytes() for name in os.listdir(files)}


def _edit(root: bytes, rng) -> None:
    """One round of what happens to a tree between fetches: same-size edits with the mtime set
    back (only ctime tells), appends, new files, deletions, a hard link broken, a mode change."""
    regular = sorted(
        os.path.join(d, n)
        for d, _, names in os.walk(root)
        for n in names
        if stat.S_ISREG(os.lstat(os.path.join(d, n)).st_mode)
    )
    for path in rng.sample(regular, min(len(regular), 6)):
        action = rng.choice(["same_size", "append", "delete", "relink", "mode"])
        before = os.lstat(path)
        if action == "same_size":
            data = bytearray(pathlib.Path(os.fsdecode(path)).read_bytes() or b"x")
            data[rng.randrange(len(data))] ^= 0xFF
            with open(path, "r+b") as f:
                f.write(bytes(data))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        elif action == "append":
            with open(path, "ab") as f:
                f.write(b"more %d" % rng.randrange(1000))
        elif action == "delete":
            os.remove(path)
        elif action == "relink":  # a new inode with the same bytes
            data = pathlib.Path(os.fsdecode(path)).read_bytes()
            os.remove(path)
            with open(path, "wb") as f:
                f.write(data)
        else:
            os.chmod(path, stat.S_IMODE(before.st_mode) ^ 0o011)
    os.makedirs(os.path.join(root, b"etc/new"), exist_ok=True)
    with open(os.path.join(root, b"etc/new/file%d" % rng.randrange(10**6)), "wb") as f:
        f.write(b"new %d" % rng.randrange(10**6))


@pytest.mark.parametrize("seed", range(8))
def test_a_cached_scan_equals_a_fresh_one_after_edits(tmp_path, monkeypatch, seed: int) -> None:
    """Eight seeded trees, each scanned, edited and scanned again three times: every cached scan
    (the repository emptied before each, as Bazel does) writes what a scan without a cache
    writes; unchanged files are linked from the store, not read; the store keeps exactly the
    contents in use."""
    import random

    from ota.actions import scan_cache

    rng = random.Random(seed)
    reads: list[bytes] = []
    real_read = tree_scan._Scanner._read

    def counting_read(self, parent, name, rel):
        if self.cache is not None:
            reads.append(rel)
        return real_read(self, parent, name, rel)

    monkeypatch.setattr(tree_scan._Scanner, "_read", counting_read)
    base = os.fsencode(tmp_path)
    root, cache = os.path.join(base, b"root"), os.path.join(base, b"cache")
    seeded_tree(root, seed=seed, count=60, names=SPECIAL_NAMES)
    for round_ in range(4):
        cached, fresh = os.path.join(base, b"cached%d" % round_), os.path.join(base, b"fresh%d" % round_)
        os.makedirs(cached)
        os.makedirs(fresh)
        stored_before = {n: os.lstat(os.path.join(cache, b"store", n)).st_ino for n in _listdir(cache, b"store")}
        known = scan_cache.ScanCache(cache).previous
        changed = {
            os.path.relpath(os.path.join(d, n), root)
            for d, _, names in os.walk(root)
            for n in names
            if stat.S_ISREG(os.lstat(os.path.join(d, n)).st_mode)
            and known.get(os.path.relpath(os.path.join(d, n), root), (None,))[0]
            != scan_cache.identity(os.lstat(os.path.join(d, n)))
        }
        reads.clear()
        assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(cached), "@r", os.fsdecode(cache)]) == 0
        # Only files new or changed since the last scan were read (a hard link's twin at most once).
        assert set(reads) <= changed and len(reads) == len(set(reads)), (round_, sorted(set(reads) - changed))
        if round_:
            assert len(reads) < len(changed) + 1 < len(known)
        assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(fresh), "@r"]) == 0
        assert _scan_outputs(cached) == _scan_outputs(fresh)
        # A content kept from the last scan is the same stored inode (linked, never rewritten).
        for name, inode in stored_before.items():
            if os.path.exists(os.path.join(cached, b"files", name)):
                assert os.lstat(os.path.join(cached, b"files", name)).st_ino == inode, name
        assert sorted(_listdir(cache, b"store")) == sorted(_listdir(cached, b"files"))
        index = scan_cache.ScanCache(cache).previous
        assert len(index) == sum(
            1 for fields in parse_generated_build(_scan_outputs(cached)[0])[1].values() if fields[0] == b"file"
        )
        _edit(root, rng)


def _listdir(base: bytes, sub: bytes) -> list[bytes]:
    path = os.path.join(base, sub)
    return os.listdir(path) if os.path.isdir(path) else []


@pytest.mark.parametrize("damage", [b"", b"not json", b'{"version": 1, "entries": [["zz", 1]]}', b'{"version": 9}'])
def test_a_damaged_cache_index_is_a_cold_cache(tmp_path, damage: bytes) -> None:
    base = os.fsencode(tmp_path)
    root, cache = os.path.join(base, b"root"), os.path.join(base, b"cache")
    seeded_tree(root, seed=5, count=10, names=[])
    os.makedirs(os.path.join(cache, b"store"))
    with open(os.path.join(cache, b"index.json"), "wb") as f:
        f.write(damage)
    for name in (b"cached", b"fresh"):
        os.makedirs(os.path.join(base, name))
    assert (
        tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(tmp_path / "cached"), "@r", os.fsdecode(cache)])
        == 0
    )
    assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(tmp_path / "fresh"), "@r"]) == 0
    assert _scan_outputs(os.path.join(base, b"cached")) == _scan_outputs(os.path.join(base, b"fresh"))


def _host_files(root: bytes) -> list[bytes]:
    """The tree's regular files, never a symlink's target (the tree links outside itself)."""
    return sorted(
        os.path.join(d, n)
        for d, _, names in os.walk(root)
        for n in names
        if stat.S_ISREG(os.lstat(os.path.join(d, n)).st_mode)
    )


@pytest.mark.parametrize("seed", range(4))
def test_the_store_is_a_snapshot(tmp_path, seed: int) -> None:
    """After a cached scan, every host file is rewritten in place (same inode, same size, mtime
    set back): the repository's files keep the scanned bytes, each under its own digest, and none
    shares an inode with the host. Only a new scan sees the edits."""
    import random

    rng = random.Random(seed)
    base = os.fsencode(tmp_path)
    root, cache, out = (os.path.join(base, n) for n in (b"root", b"cache", b"out"))
    seeded_tree(root, seed=100 + seed, count=40, names=SPECIAL_NAMES)
    os.makedirs(out)
    assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(out), "@r", os.fsdecode(cache)]) == 0
    before = _scan_outputs(out)
    host_inodes = set()
    for path in _host_files(root):
        st = os.lstat(path)
        host_inodes.add((st.st_dev, st.st_ino))
        data = pathlib.Path(os.fsdecode(path)).read_bytes()
        with os.fdopen(os.open(path, os.O_RDWR | os.O_NOFOLLOW), "r+b") as f:
            f.write(bytes(rng.randrange(256) for _ in data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    assert _scan_outputs(out) == before
    files = os.path.join(out, b"files")
    for name, data in before[1].items():
        assert hashlib.sha256(data).hexdigest().encode() == name
        st = os.stat(os.path.join(files, name))
        assert (st.st_dev, st.st_ino) not in host_inodes, name
    again = os.path.join(base, b"again")
    os.makedirs(again)
    assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(again), "@r", os.fsdecode(cache)]) == 0
    _, entries = parse_generated_build(_scan_outputs(again)[0])
    for path, want in host_scan(root).items():
        if want["kind"] == "file":
            assert entries[path][4] == want["sha256"].encode(), path


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_a_failed_cached_scan_keeps_the_cache(tmp_path, capsys, kind: str) -> None:
    """A scan that fails half-way (a special file appears) removes its `files`, keeps
    the previous index, and leaves every stored copy in place; the next complete scan writes
    what the first one wrote and prunes what the failed one stored."""
    base = os.fsencode(tmp_path)
    root, cache = os.path.join(base, b"root"), os.path.join(base, b"cache")
    seeded_tree(root, seed=21, count=30, names=SPECIAL_NAMES)
    first = os.path.join(base, b"first")
    os.makedirs(first)
    assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(first), "@r", os.fsdecode(cache)]) == 0
    index = pathlib.Path(os.fsdecode(cache), "index.json").read_bytes()
    stored = sorted(_listdir(cache, b"store"))
    (tmp_path / "root/etc/new file").write_bytes(b"read by the failed scan")
    _special_file(str(tmp_path / "root/zzz last"), kind)
    failed = os.path.join(base, b"failed")
    os.makedirs(failed)
    assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(failed), "@r", os.fsdecode(cache)]) == 1
    assert "zzz last: is a" in capsys.readouterr().err
    assert os.listdir(failed) == []
    assert pathlib.Path(os.fsdecode(cache), "index.json").read_bytes() == index
    assert set(stored) <= set(_listdir(cache, b"store"))
    os.remove(tmp_path / "root/zzz last")
    os.remove(tmp_path / "root/etc/new file")
    second = os.path.join(base, b"second")
    os.makedirs(second)
    assert tree_scan.main(["tree_scan", os.fsdecode(root), os.fsdecode(second), "@r", os.fsdecode(cache)]) == 0
    assert _scan_outputs(second) == _scan_outputs(first)
    assert sorted(_listdir(cache, b"store")) == stored


def test_the_repository_rule_watches_every_module_the_scan_imports() -> None:
    """ota_tree_repository fetches again when a module the scan imports changes (its
    `_SCAN_IMPORTS`): the list must be exactly what `import ota.actions.tree_scan` loads, or an
    upgrade of rules_ota could leave a repository's BUILD and manifest.json as an older scan
    wrote them."""
    bzl = (pathlib.Path(__file__).absolute().parents[2] / "rules/defs.bzl").resolve().parent / "private"
    text = (bzl / "tree_repository.bzl").read_text()
    listed = ast.literal_eval(text.split("_SCAN_IMPORTS = ", 1)[1].split("]", 1)[0] + "]")
    assert sorted(listed) == sorted(_scan_modules() - {"actions/tree_scan.py"})
