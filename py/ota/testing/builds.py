"""Builds and packages for device tests, made with the real build tools (no Bazel needed).

`write_build` lays a build out on disk the way the rules do (a tree description naming each
file, partition images, build.json); `make_package` runs the same per-file `file_patch` and the
same package writer the `ota_package` rule runs, so tests apply packages that are byte-for-byte
what a release would ship. `load_build` reads the description of a build the `ota_test` rule
writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ota.actions import file_patch, package_writer, tree
from ota.actions.patch_info import UNCHANGED
from ota.errors import OtaError
from ota.format import jsonio
from ota.format.build_info import BuildInfo
from ota.testing.device_check import Build

# A tree item: bytes (a file, mode 0644), ("dir",), ("symlink", target), or (bytes, mode, uid, gid).
Item = object


@dataclass(frozen=True)
class Spec:
    """An in-memory build: identity, tree items by path, partition images by name."""

    device: str
    fingerprint: str
    timestamp: int
    items: dict[str, Item]
    partitions: dict[str, bytes]


def _entry(path: str, item: Item, files_dir: str, index: int) -> tree.TreeEntry:
    """The tree entry of one item; a file's bytes go to `files_dir/<index>`, a name that any
    install path (any bytes, up to PATH_MAX long) can have, as the rules name artifacts."""
    if isinstance(item, bytes):
        item = (item, 0o644, 0, 0)
    if item[0] == "dir":
        mode, uid, gid = (item[1:] + (0o755, 0, 0))[:3] if len(item) > 1 else (0o755, 0, 0)
        return tree.TreeEntry(path, tree.DIR, mode, uid, gid)
    if item[0] == "symlink":  # ("symlink", target[, uid, gid])
        uid, gid = item[2:4] if len(item) > 2 else (0, 0)
        return tree.TreeEntry(path, tree.SYMLINK, 0o777, uid, gid, target=item[1])
    data, mode, uid, gid = item
    file = os.path.join(files_dir, str(index))
    with open(file, "wb") as stream:
        stream.write(data)
    return tree.TreeEntry(path, tree.FILE, mode, uid, gid, file=file)


def write_build(spec: Spec, directory: str) -> Build:
    """Writes a build's files, images and descriptions under `directory` and returns it."""
    files_dir = os.path.join(directory, "files")
    os.makedirs(files_dir)
    paths = set(spec.items)
    for path in list(paths):  # parents are listed explicitly (docs/contracts.md#1-tree-description)
        parts = path.split("/")
        paths.update("/".join(parts[:i]) for i in range(1, len(parts)))
    items = {p: spec.items.get(p, ("dir",)) for p in paths}
    entries = tree.check_entries(
        [_entry(p, items[p], files_dir, index) for index, p in enumerate(sorted(items))], directory
    )
    partitions = {}
    for name, image in spec.partitions.items():
        partitions[name] = os.path.join(directory, f"{name}.img")
        with open(partitions[name], "wb") as stream:
            stream.write(image)
    info = BuildInfo(spec.device, spec.fingerprint, spec.timestamp)
    with open(os.path.join(directory, "build.json"), "wb") as stream:
        stream.write(jsonio.dumps(info.to_json()))
    return Build(info, tuple(entries), {e.path: e.file for e in entries if e.kind == tree.FILE}, partitions)


def make_package(source: Build | None, target: Build, directory: str, out: str, *, downgrade: bool = False) -> str:
    """Runs file_patch for every changed file and partition, then the package writer; returns `out`.

    `source` None makes a FULL package. `directory` (the build dirs' parent) holds the params.
    """
    work = os.path.join(directory, "patches-" + os.path.basename(out))
    os.makedirs(work)
    old = {} if source is None else source.files
    file_patches, whole_files, partitions = [], [], []
    for index, (path, file) in enumerate(sorted(target.files.items())):
        if path not in old:
            whole_files.append({"path": path, "file": file})
            continue
        data, info = os.path.join(work, f"f{index}.data"), os.path.join(work, f"f{index}.json")
        result = file_patch.patch_files(old[path], file, path, data)
        if result.method != UNCHANGED:
            jsonio.write(info, result.to_json())
            file_patches.append({"path": path, "info": info, "data": data})
    for name, image in sorted(target.partitions.items()):
        data, info = os.path.join(work, f"p-{name}.data"), os.path.join(work, f"p-{name}.json")
        base = None if source is None else source.partitions.get(name)
        jsonio.write(info, file_patch.patch_files(base, image, f"{name}.img", data).to_json())
        partitions.append({"name": name, "info": info, "data": data})

    def side(build: Build, manifest: str) -> dict:
        return {
            "device": build.info.device,
            "fingerprint": build.info.fingerprint,
            "timestamp": build.info.timestamp,
            "system_manifest": manifest,
        }

    def manifest_of(build: Build) -> str:
        """The system manifest, made by the real system_manifest tool (its own process, as in
        Bazel: the build tools define absl flags at import and cannot share one process)."""
        path = os.path.join(work, f"{build.info.fingerprint.replace('/', '_')}.manifest.json")
        tree_json = os.path.join(work, f"{build.info.fingerprint.replace('/', '_')}.tree.json")
        jsonio.write(tree_json, tree.manifest_doc(build.entries))
        subprocess.run(
            [sys.executable, "-m", "ota.actions.system_manifest", "--tree", tree_json, "--out", path],
            check=True,
            capture_output=True,
        )
        return path

    params = {
        "type": "FULL" if source is None else "INCREMENTAL",
        "downgrade": downgrade,
        "source": None if source is None else side(source, manifest_of(source)),
        "target": side(target, manifest_of(target)),
        "file_patches": file_patches,
        "whole_files": whole_files,
        "partitions": partitions,
    }
    params_path = os.path.join(work, "params.json")
    jsonio.write(params_path, params)
    package_writer.write_package(params_path, out)
    return out


def _files_in_dirs(entries: Sequence[tree.TreeEntry], file_dirs: dict[str, str]) -> dict[str, str]:
    """Runfiles of a tar-backed tree: each file entry names an exec path inside one of
    `file_dirs` (exec path -> runfiles path of a shard directory)."""
    found = {}
    for entry in entries:
        for exec_dir, runfiles_dir in file_dirs.items():
            if entry.kind == tree.FILE and entry.file.startswith(exec_dir + "/"):  # type: ignore[union-attr]
                found[entry.path] = runfiles_dir + entry.file[len(exec_dir) :]  # type: ignore[index]
    return found


def load_build(doc: Any, where: str) -> Build:
    """A build from the description the ota_test rule writes (paths relative to the runfiles root):

    {"build_json": P, "tree_json": P, "files": {install path: P}, "partitions": {name: P},
     "file_dirs": {exec path: P} (optional: the shard directories of a tar-backed tree)}
    """
    build_json = jsonio.get(doc, "build_json", str, where)
    info = BuildInfo.from_json(jsonio.read(build_json), build_json)
    tree_path = jsonio.get(doc, "tree_json", str, where)
    entries = tree.parse(jsonio.read(tree_path), tree_path, manifest=False)
    files = dict(jsonio.get(doc, "files", dict, where))
    files.update(_files_in_dirs(entries, jsonio.get(doc, "file_dirs", dict, where) if "file_dirs" in doc else {}))
    partitions = jsonio.get(doc, "partitions", dict, where)
    missing = sorted(e.path for e in entries if e.kind == tree.FILE and e.path not in files)
    if missing:
        raise OtaError(where, f"files: no runfile for {missing[0]!r}")
    return Build(
        info,
        tuple(entries),
        {str(k): str(v) for k, v in files.items()},
        {str(k): str(v) for k, v in partitions.items()},
    )
