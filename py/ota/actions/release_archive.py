"""release_archive: the archive of one shipped build, so it can be the source of a later update.

docs/contracts.md#5-release-archive, a "target-files style" zip: META/build.json (device, fingerprint, timestamp),
META/system_manifest.json (docs/contracts.md#2-system-manifest), SYSTEM/<index> for every regular
file (<index>: its entry's position in the manifest's `entries`) and IMAGES/<name>.img for every partition image.
Directories and symlinks live only in the manifest. A file's entry is named by index, not by its path: a path may
hold any byte (py/ota/format/paths.py), and the importing repository rule makes each entry a Bazel label.
Written by the same deterministic zip writer as the package; `read_release_archive`, on the one
hardened zip reader (ota/format/zipscan.py), is the bounded reader the tests (and any tool that
inspects an old release) use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from absl import flags

from ota.actions import toolchain_identity, tree, zipwrite
from ota.errors import OtaError, UsageError
from ota.format import hashing, jsonio, zipscan
from ota.format.build_info import BuildInfo
from ota.format.layout import PARTITION_NAME
from ota.format.paths import escape
from ota.io import runner

BUILD_ENTRY = "META/build.json"
MANIFEST_ENTRY = "META/system_manifest.json"
SYSTEM_PREFIX = "SYSTEM/"
IMAGES_PREFIX = "IMAGES/"

_BUILD_JSON = flags.DEFINE_string("build_json", None, "META/build.json contents: {device, fingerprint, timestamp}.")
_MANIFEST = flags.DEFINE_string(
    "system_manifest", None, "System manifest JSON (docs/contracts.md#2-system-manifest) of the build."
)
_TREE = flags.DEFINE_string(
    "tree", None, "Tree description JSON (docs/contracts.md#1-tree-description) naming each file's bytes."
)
_PARTITIONS = flags.DEFINE_multi_string("partition", [], "NAME=FILE: a partition image, stored as IMAGES/NAME.img.")
_OUT = flags.DEFINE_string("out", None, "Where to write the archive zip.")


def _same_shape(tree_entries: Sequence[tree.TreeEntry], manifest: Sequence[tree.TreeEntry], where: str) -> None:
    """The tree and the manifest must describe the same paths with the same metadata."""
    described = {e.path: dataclasses.replace(e, file=None) for e in tree_entries}
    hashed = {e.path: dataclasses.replace(e, content=None) for e in manifest}
    for path in sorted(set(described) | set(hashed)):
        if described.get(path) != hashed.get(path):
            side = "tree" if path not in hashed else "system manifest" if path not in described else ""
            problem = (
                f"only in the {side}" if side else "kind, mode, uid, gid or target differ between tree and manifest"
            )
            raise OtaError(where, f"{escape(path)}: {problem}")


def write_release_archive(
    build: BuildInfo, manifest_path: str, tree_path: str, partitions: dict[str, str], out_path: str
) -> None:
    """Writes the archive, checking every file's bytes against the manifest on the way."""
    manifest = tree.load_manifest(manifest_path)
    described = tree.load_tree(tree_path)
    _same_shape(described, manifest, f"{tree_path} vs {manifest_path}")
    files = {e.path: e.file for e in described if e.kind == tree.FILE}
    sources = [
        zipwrite.ZipSource(BUILD_ENTRY, zipwrite.Compression.DEFLATED, data=jsonio.dumps(build.to_json())),
        zipwrite.ZipSource(
            MANIFEST_ENTRY, zipwrite.Compression.DEFLATED, data=jsonio.dumps(tree.manifest_doc(manifest))
        ),
    ]
    expected = {}
    for index, entry in enumerate(manifest):
        if entry.kind == tree.FILE:
            name = system_entry(index)
            sources.append(zipwrite.ZipSource(name, zipwrite.Compression.DEFLATED, file=files[entry.path]))
            expected[name] = entry.content
    for name, image in partitions.items():
        sources.append(zipwrite.ZipSource(f"{IMAGES_PREFIX}{name}.img", zipwrite.Compression.DEFLATED, file=image))
    by_entry = {system_entry(index): e.path for index, e in enumerate(manifest)}
    for written in zipwrite.write_zip(out_path, sources):
        want = expected.get(written.name)
        if want is not None and (want.size, want.sha256) != (written.size, written.sha256):
            path = by_entry[written.name]
            raise OtaError(
                files[path], f"sha256 {written.sha256} is not the system manifest's {want.sha256} for {escape(path)}"
            )


def system_entry(index: int) -> str:
    """The archive entry of the file that is entry `index` of the archive's system manifest.

    rules/private/release_archive_repo.bzl counts the manifest's entries the same way; a number
    is a label in any package, whatever bytes the path holds.
    """
    return f"{SYSTEM_PREFIX}{index}"


def parse_partition_flags(values: Sequence[str]) -> dict[str, str]:
    """NAME=FILE flags -> {name: file}, names checked and unique."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, file = value.partition("=")
        if not sep or not file or not PARTITION_NAME.fullmatch(name):
            raise UsageError(f"--partition {value!r}: expected NAME=FILE with NAME matching {PARTITION_NAME.pattern}")
        if name in out:
            raise UsageError(f"--partition {name}: given twice")
        out[name] = file
    return out


@dataclass(frozen=True)
class ReleaseArchive:
    """A release archive read back: build identity, manifest, file and image bytes."""

    build: BuildInfo
    manifest: list[tree.TreeEntry]
    files: dict[str, bytes]
    images: dict[str, bytes]


def _read_all(path: str, max_bytes: int) -> dict[str, bytes]:
    """Every entry of the zip at `path`, through the one hardened zip reader (ota/format/zipscan.py):
    refused by the sum of the sizes it declares before any entry is read."""
    try:
        with open(path, "rb") as file:
            directory = zipscan.find_directory(file, path)
            listed: dict[str, zipscan.Member] = {}
            for member in zipscan.members(file, directory, path):
                if member.name in listed:
                    raise OtaError(path, f"zip entry {member.name!r}: appears twice")
                zipscan.check_member(member, path)
                listed[member.name] = member
            declared = sum(m.uncompressed_size for m in listed.values())
            if declared > max_bytes:
                raise OtaError(path, f"declares {declared} bytes, more than the limit of {max_bytes}")
            return {
                name: zipscan.read_member(file, member, directory, path, member.uncompressed_size)
                for name, member in listed.items()
            }
    except OSError as err:
        raise OtaError(path, f"cannot read: {err.strerror or err}") from None


def read_release_archive(path: str, *, max_bytes: int = 1 << 32) -> ReleaseArchive:
    """Reads a whole archive into memory, checking its layout and every file's hash.

    `max_bytes` bounds the sum of the sizes the zip declares, checked before anything is read.
    """
    contents = _read_all(path, max_bytes)
    for name in (BUILD_ENTRY, MANIFEST_ENTRY):
        if name not in contents:
            raise OtaError(path, f"{name}: missing")
    build = BuildInfo.from_json(jsonio.loads(contents[BUILD_ENTRY], f"{path}:{BUILD_ENTRY}"), f"{path}:{BUILD_ENTRY}")
    manifest = tree.parse(
        jsonio.loads(contents[MANIFEST_ENTRY], f"{path}:{MANIFEST_ENTRY}"), f"{path}:{MANIFEST_ENTRY}", manifest=True
    )
    files, images = {}, {}
    wanted = {system_entry(index): e for index, e in enumerate(manifest) if e.kind == tree.FILE}
    for name, data in contents.items():
        if name in (BUILD_ENTRY, MANIFEST_ENTRY):
            continue
        if name in wanted:
            entry = wanted[name]
            if hashing.of_bytes(data) != entry.content:
                raise OtaError(path, f"{name}: contents do not match the system manifest's size/sha256")
            files[entry.path] = data
        elif name.startswith(IMAGES_PREFIX) and name.endswith(".img") and PARTITION_NAME.fullmatch(name[7:-4]):
            images[name[7:-4]] = data
        else:
            raise OtaError(path, f"zip entry {name!r}: not a file of the system manifest, an image or META")
    missing = sorted(set(wanted) - set(contents))
    if missing:
        raise OtaError(path, f"{missing[0]}: listed in the system manifest but missing from the archive")
    return ReleaseArchive(build, manifest, files, images)


def main(argv: Sequence[str]) -> None:
    toolchain_identity.verify_flag()
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not (_BUILD_JSON.value and _MANIFEST.value and _TREE.value and _OUT.value):
        raise UsageError("--build_json, --system_manifest, --tree and --out are required")
    build = BuildInfo.from_json(jsonio.read(_BUILD_JSON.value), _BUILD_JSON.value)
    write_release_archive(build, _MANIFEST.value, _TREE.value, parse_partition_flags(_PARTITIONS.value), _OUT.value)


def run() -> None:
    runner.run_absl("release_archive", main)


if __name__ == "__main__":
    run()
