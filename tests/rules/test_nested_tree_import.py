"""ota_tree_repository end to end, in a nested Bazel (nested_bazel.py).

A seeded device-like tree (setuid/setgid/sticky modes, 0600 files, 0700 directories, other
owners, symlinks to files, directories, absolute, dangling and outside targets, empty and deep
directories, hard links, special names) imported as `ota_system_image(tree = ...)` must give a system
manifest equal to an independent scan of the directory (written at analysis time from the scan's
digests, byte for byte what the OtaSystemManifest tool writes), and a ramdisk must take it too.
Two imports of identical trees give an incremental package with no diff action; a one-file change
of a small file is diffed in its bucket (ota_package's batch_max_bytes), and the same package
without batching has the same bytes. Editing that file again and fetching only its repository
again re-runs one bucket and the package, and hashes nothing else. Names Starlark must escape (`\\`, `"`, newline, non-UTF-8, spaces,
non-ASCII UTF-8) build, and an incremental package that changes, adds and removes such names
applies to a device (ota_test) ending byte-exact. A FIFO, a device node and a symlinked root are refused with one exact line. The
repository is fetched again when `OTA_TREE_STAMP` changes, not before.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import shutil
import stat
import subprocess

import pytest

from nested_bazel import NestedWorkspace
from ota.actions import system_manifest, tree
from ota.format import jsonio
from tree_host_scan import SPECIAL_NAMES, host_scan, seeded_tree

ERROR = "ota_tree_repository: error: "

_WORKSPACE = """
load("//rules:repositories.bzl", "ota_tree_repository")
"""

_BUILD = """
load("//rules:defs.bzl", "ota_boot_image", "ota_build", "ota_package", "ota_test", "ota_ramdisk", "ota_system_image")

ota_boot_image(name = "boot", kernel = "kernel.bin", ramdisk = "init.rc")

[ota_system_image(name = n, tree = "@tree_%s//:tree" % n) for n in ["a", "same", "b", "names", "weird"]]

ota_system_image(
    name = "merged",
    tree = "@tree_a//:tree",
    files = {"init.rc": "etc/init.rc"},
    modes = {"bin/su": "4750", "bin/": "0700"},
    owners = {"etc/init.rc": "0:1000"},
)

ota_ramdisk(name = "initramfs", tree = "@tree_a//:tree", dirs = ["dev"])

[ota_build(
    name = n + "_build",
    boot = ":boot",
    device = "imported",
    fingerprint = "imported/" + n,
    system = ":" + n,
    timestamp = t,
) for n, t in [("a", 1), ("same", 2), ("b", 2), ("names", 3)]]

ota_package(name = "same_pkg", source = ":a_build", target = ":same_build")

ota_package(name = "one_pkg", source = ":a_build", target = ":b_build")

ota_package(name = "names_pkg", source = ":a_build", target = ":names_build")

ota_package(name = "names_unbatched_pkg", source = ":a_build", target = ":names_build", batch_max_bytes = 0)

ota_test(name = "names_ota_test", package = ":names_pkg", source = ":a_build", target = ":names_build")
"""


def _copy_tree(src, dst) -> None:
    """An exact copy (modes, owners, symlinks, hard links, empty directories)."""
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def _change_special_names(root: bytes) -> None:
    """Changes, adds and removes entries whose names hold every kind of byte SPECIAL_NAMES has:
    the package patches, writes, deletes and links them by those names."""
    etc = os.path.join(root, b"etc")
    for index, name in enumerate(SPECIAL_NAMES):
        if index % 2:
            os.remove(os.path.join(etc, name))
        with open(os.path.join(etc, name + b" v2" if index % 2 else name), "ab") as out:
            out.write(b"changed %d\n" % index * 40)
    os.mkdir(os.path.join(etc, SPECIAL_NAMES[-1] + b".d"), 0o755)
    os.symlink(SPECIAL_NAMES[-2], os.path.join(etc, SPECIAL_NAMES[-1] + b".d", SPECIAL_NAMES[3]))


def _manifest(ws: NestedWorkspace, name: str) -> dict[bytes, dict]:
    entries = json.loads(ws.bin(f"imported/{name}.manifest.json").read_bytes().decode("utf-8", "surrogateescape"))
    out = {}
    for entry in entries["entries"]:
        path = os.fsencode(entry.pop("path"))
        if "target" in entry:
            entry["target"] = os.fsencode(entry["target"])
        out[path] = entry
    return out


def _actions(ws: NestedWorkspace, package: str, mnemonic: str) -> int:
    proc = ws.bazel("aquery", f'mnemonic("{mnemonic}", //imported:{package})', "--output=jsonproto")
    return len(json.loads(proc.stdout or "{}").get("actions", []))


def _tool_manifest(ws: NestedWorkspace, name: str) -> bytes:
    """What the OtaSystemManifest tool writes for the image's tree description (its files are
    `external/<repository>/files/<sha256>`, which the output base holds for every repository)."""
    output_base = pathlib.Path(ws.bazel("info", "output_base").stdout.strip())
    entries = [
        dataclasses.replace(e, file=str(output_base / e.file)) if e.file else e
        for e in tree.load_tree(str(ws.bin(f"imported/{name}.tree.json")))
    ]
    return jsonio.dumps(tree.manifest_doc(system_manifest.build_manifest(entries)))


def _refusal(ws: NestedWorkspace, repo: str) -> list[str]:
    with pytest.raises(AssertionError) as failure:
        ws.bazel("build", f"@{repo}//:tree")
    return [line for line in str(failure.value).splitlines() if ERROR in line]


def test_imported_directories(tmp_path) -> None:
    trees = tmp_path / "trees"
    (trees / "outside").mkdir(parents=True)
    (trees / "outside/secret").write_bytes(b"host secret")
    tree_a = trees / "x" / "a"
    seeded_tree(os.fsencode(tree_a), seed=1414, count=150, names=SPECIAL_NAMES)
    _copy_tree(tree_a, trees / "x" / "same")
    _copy_tree(tree_a, trees / "x" / "b")
    (trees / "x/b/bin/sg").write_bytes(b"sg binary, version 2\n")  # keeps mode and owner
    names = trees / "x" / "names"
    _copy_tree(tree_a, names)
    _change_special_names(os.fsencode(names))
    weird = trees / "weird"
    seeded_tree(
        os.fsencode(weird), seed=7, count=5, names=[b"back\\slash", b'q"uote', b"new\nline", b"\xff\xfe latin-1"]
    )
    for name in ("fifo", "device"):
        seeded_tree(os.fsencode(trees / name), seed=3, count=5, names=SPECIAL_NAMES)
    os.mkfifo(trees / "fifo/etc/pipe")
    os.mknod(trees / "device/etc/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (trees / "symroot").symlink_to("x/a")

    ws = NestedWorkspace.create(tmp_path, "ws")
    repos = {n: trees / "x" / n for n in ("a", "same", "b", "names")}
    repos.update(weird=weird, fifo=trees / "fifo", device=trees / "device", symroot=trees / "symroot")
    with open(ws.root / "WORKSPACE", "a") as workspace:
        workspace.write(_WORKSPACE)
        for name, path in repos.items():
            workspace.write(f'\nota_tree_repository(name = "tree_{name}", path = "{path}")\n')
    (ws.root / "imported").mkdir()
    (ws.root / "imported/BUILD").write_text(_BUILD)
    (ws.root / "imported/kernel.bin").write_bytes(b"kernel" * 100)
    (ws.root / "imported/init.rc").write_text("on boot\n")
    try:
        ws.build("//imported:a", "//imported:same", "//imported:b", "//imported:merged", "//imported:initramfs")
        ws.build("//imported:weird", "//imported:names")
        ws.bazel("test", "//imported:names_ota_test")  # the device ends byte-exact at the target
        counts = {
            (p, m): _actions(ws, p, m)
            for p in ("same_pkg", "one_pkg")
            for m in ("OtaFilePatch", "OtaFilePatchShard", "OtaSystemManifest")
        }
        ws.build("//imported:same_pkg", "//imported:one_pkg", "//imported:names_unbatched_pkg")
        # Each analysis-time manifest against the tool's, before anything below changes a tree.
        manifests = {
            n: (ws.bin(f"imported/{n}.manifest.json").read_bytes(), _tool_manifest(ws, n))
            for n in ("a", "b", "names", "weird")
        }
        # The small file changes once more; only its repository is fetched again.
        output_base = ws.bazel("info", "output_base").stdout.strip()
        store_b = pathlib.Path(output_base, "external", "@tree_b.ota_scan_cache", "store")
        stored_before = {p.name: p.stat().st_ino for p in store_b.iterdir()}
        (trees / "x/b/bin/sg").write_bytes(b"sg binary, version 3\n")
        ws.bazel("sync", "--only=tree_b")
        stored_after = {p.name: p.stat().st_ino for p in store_b.iterdir()}
        files_b = pathlib.Path(output_base, "external", "tree_b", "files")
        linked_b = {p.name: p.stat().st_ino for p in files_b.iterdir()}
        rebuilt = ws.build("//imported:one_pkg", log=tmp_path / "rebuild.log")
        fifo = _refusal(ws, "tree_fifo")
        device = _refusal(ws, "tree_device")
        symroot = _refusal(ws, "tree_symroot")

        # Bazel 4 does not watch the directory: the import stays as fetched until the stamp moves.
        (trees / "x/a/etc/added").write_bytes(b"new")
        ws.build("//imported:a")
        before_stamp = _manifest(ws, "a")
        ws.bazel("build", "--repo_env=OTA_TREE_STAMP=1", "//imported:a")
        after_stamp = _manifest(ws, "a")
    finally:
        ws.close()

    expected = host_scan(os.fsencode(tree_a))
    del expected[b"etc/added"]
    assert before_stamp == expected
    assert _manifest(ws, "same") == expected
    assert after_stamp == host_scan(os.fsencode(tree_a))
    assert _manifest(ws, "b") == host_scan(os.fsencode(trees / "x/b"))
    assert _manifest(ws, "names") == host_scan(os.fsencode(names))
    assert _manifest(ws, "weird") == host_scan(os.fsencode(weird))

    merged = _manifest(ws, "merged")
    assert merged[b"bin/su"]["mode"] == 0o4750 and merged[b"bin/sg"]["mode"] == 0o700
    assert merged[b"bin"]["mode"] == expected[b"bin"]["mode"]  # "bin/" applies below bin only
    assert (merged[b"etc/init.rc"]["uid"], merged[b"etc/init.rc"]["gid"]) == (0, 1000)
    assert merged[b"etc"] == expected[b"etc"]
    assert merged[b"private/key"] == expected[b"private/key"]

    assert counts == {
        ("same_pkg", "OtaFilePatch"): 0,
        ("same_pkg", "OtaFilePatchShard"): 0,
        ("same_pkg", "OtaSystemManifest"): 0,
        ("one_pkg", "OtaFilePatch"): 0,
        ("one_pkg", "OtaFilePatchShard"): 32,  # bin/sg is small: batched, a complete set of buckets
        ("one_pkg", "OtaSystemManifest"): 0,  # both manifests written at analysis time
    }
    assert collections.Counter(s.get("mnemonic") for s in rebuilt) == {"OtaFilePatchShard": 1, "OtaPackage": 1}
    # The re-fetch replaced one stored content and kept every other copy as it was (Bazel's
    # emptying of the repository unlinks its links, never the stored copies), and files/ is a
    # directory of links to exactly the store's copies.
    assert not files_b.is_symlink() and linked_b == stored_after
    assert len(set(stored_before) - set(stored_after)) == 1 and len(set(stored_after) - set(stored_before)) == 1
    assert all(stored_after[name] == inode for name, inode in stored_before.items() if name in stored_after)
    assert ws.bin("imported/names_pkg.zip").read_bytes() == ws.bin("imported/names_unbatched_pkg.zip").read_bytes()
    for name, (written, hashed) in manifests.items():
        assert written == hashed, name
    assert any(
        line.endswith(f"{ERROR}{trees}/fifo/etc/pipe: is a FIFO: a tree holds only files, directories and symlinks")
        for line in fifo
    ), fifo
    assert any(
        line.endswith(
            f"{ERROR}{trees}/device/etc/null: is a character device: a tree holds only files, directories and symlinks"
        )
        for line in device
    ), device
    assert any(
        line.endswith(f"{ERROR}{trees}/symroot: is a symlink (to x/a); name the directory itself") for line in symroot
    ), symroot

    # Nothing outside the directory was read: the outside secret is not among the copied files.
    files = os.path.join(output_base, "external", "tree_a", "files")
    assert all(pathlib.Path(files, f).read_bytes() != b"host secret" for f in os.listdir(files))
    shutil.rmtree(trees)
