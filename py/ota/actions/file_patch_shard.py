"""file_patch_shard --shard K --shards N (--target_dir D | --target_path=P --target_file=F ...)
[--source_dir D | --source_path=P --source_file=F ...] --out_dir DIR: the file patches of one shard
of a tree read from a tar archive, or of one bucket of small changed files.

ota_package declares a fixed number of these actions when either build's system tree comes
from a tar (rules/private/tar_tree.bzl): the paths are only known at execution time, so one
action per path is impossible, and one action for the whole tree would re-diff everything
after a one-file change. Each shard sees only its own paths (py/ota/actions/shard_layout.py), so
a change re-runs the shards whose files changed. The same actions batch the small changed files
of two trees known at analysis time (ota_package's `batch_max_bytes`): there the command line
names only the bucket's changed paths, so a few-kilobyte diff does not pay a whole action.

A side is a tar tree's shard directory (`--*_dir`: its listing carries every file's hashes) or,
for a tree known at analysis time, pairs of flags on the command line: the i-th `--*_path` (an
install path, `escape`d by rules/private/names.bzl so any byte travels in Bazel's one-argument-a-
line param file) is the file of the i-th `--*_file` (hashed here). The rule puts them straight
into the action's arguments rather than into a listing file it writes: a written file is one
more action on the way to every bucket, and its JSON was built at every analysis. A side without
`--*_dir` is the pairs given, none at all for an empty bucket: an empty target listing, and a
source without any path diffs nothing (every target path is then whole, as without a source).
A path whose source and target hashes agree is left out: the package assembler records KEEP
from the two manifests without any data. Every other target path is decided by file_patch's own
logic (py/ota/actions/file_patch.py): a diff, or the whole file.

DIR receives results.json (docs/contracts.md#11-tar-trees-and-patch-shards) and, per result, the
data and info files a file_patch action would write, under digest names.

It runs as a persistent worker too (py/ota/actions/persistent_worker.py, `TOOL` below): a bucket of a few
small files, or an empty one, then costs a request instead of a Python start.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from absl import flags

from ota.actions import file_patch, persistent_worker, shard_layout, toolchain_identity
from ota.errors import OtaError, UsageError
from ota.format import hashing, jsonio, paths
from ota.format.hashing import ContentInfo

flags.DEFINE_integer("shard", None, "This shard's number, 0..shards-1.", lower_bound=0)
flags.DEFINE_integer("shards", None, "How many shards the tree is split into.", lower_bound=1)
flags.DEFINE_string("target_dir", None, "The target tree's shard directory (a tar tree).")
flags.DEFINE_multi_string(
    "target_path", [], "An install path of the target shard, escaped (a tree known at analysis time)."
)
flags.DEFINE_multi_string("target_file", [], "The file of the target_path at the same position.")
flags.DEFINE_string("source_dir", None, "The source tree's shard directory (a tar tree).")
flags.DEFINE_multi_string(
    "source_path", [], "An install path of the source shard, escaped (a tree known at analysis time)."
)
flags.DEFINE_multi_string("source_file", [], "The file of the source_path at the same position.")
flags.DEFINE_string("patch_methods", "{}", "ota_package's patch_methods as JSON: path or extension -> method.")
flags.DEFINE_string("out_dir", None, "The output directory.")


@dataclass(frozen=True)
class ShardFile:
    """One regular file of a shard: where its bytes are, and their hashes when already known."""

    file: str
    content: ContentInfo | None


def load_dir(directory: str, shard: int, shards: int) -> dict[str, ShardFile]:
    """A tar tree's shard directory: its listing, with hashes."""
    where = os.path.join(directory, shard_layout.TREE_INDEX)
    files = {}
    for index, raw in enumerate(jsonio.get(jsonio.read(where), "entries", list, where)):
        path = jsonio.get_path(raw, "path", where, f"entries[{index}].path")
        check_in_shard(path, where, shard, shards)
        name = jsonio.get(raw, "file", str, where, f"{paths.escape(path)}: file")
        files[path] = ShardFile(os.path.join(directory, name), ContentInfo.from_json(raw, where, path))
    return files


def load_args(
    escaped_paths: Sequence[str], files: Sequence[str], shard: int, shards: int, name: str
) -> dict[str, ShardFile]:
    """One side given on the command line (a tree known at analysis time): `--{name}_path` i,
    escaped, is the file `--{name}_file` i; no hashes. Empty lists are an empty side."""
    path_flag, file_flag = f"--{name}_path", f"--{name}_file"
    if len(escaped_paths) != len(files):
        raise UsageError(
            f"{len(escaped_paths)} {path_flag} but {len(files)} {file_flag}: each path needs the file at its position"
        )
    side: dict[str, ShardFile] = {}
    for escaped, file in zip(escaped_paths, files, strict=True):
        path = paths.check_path(paths.unescape(escaped, path_flag), path_flag)
        check_in_shard(path, path_flag, shard, shards)
        if path in side:
            raise OtaError(path_flag, f'"{escaped}": given twice')
        side[path] = ShardFile(file, None)
    return side


def check_in_shard(path: str, where: str, shard: int, shards: int) -> None:
    """Refuses a path `where` names in shard `shard` that shard_of puts in another one."""
    if shard_layout.shard_of(path, shards) != shard:
        raise OtaError(
            where,
            f'"{paths.escape(path)}": belongs to shard {shard_layout.shard_of(path, shards)} of {shards}, not {shard}',
        )


def method_for(methods: dict[str, str], path: str) -> str:
    """The patch_methods entry of `path`: its exact path, else its extension, else "auto" (the
    same rule as rules/private/patch_methods.bzl applies for trees known at analysis time)."""
    if path in methods:
        return methods[path]
    return methods.get(os.path.splitext(path)[1], "auto")


def _content(entry: ShardFile) -> ContentInfo:
    return entry.content if entry.content is not None else hashing.of_file(entry.file)


def patch_shard(
    source: dict[str, ShardFile] | None,
    target: dict[str, ShardFile],
    out: str,
    *,
    shard: int,
    shards: int,
    methods: dict[str, str],
    threshold: float = file_patch.DEFAULT_THRESHOLD,
    max_diff_size: int | None = None,
) -> list[str]:
    """Writes the results of one shard into `out`; returns the warnings of its diffs.

    `source` None (a full package) and {} (a source side that names no path) are the same
    thing: no target path has a source, so each is whole."""
    os.makedirs(out, exist_ok=True)
    results, warnings = [], []
    for path in sorted(target):
        new = target[path]
        old = None if source is None else source.get(path)
        if old is not None and _content(old) == _content(new):
            continue  # the assembler records KEEP from the manifests' equal hashes
        name = shard_layout.file_name(path)
        data, info = f"{name}.p", f"{name}.json"
        result = file_patch.patch_files(
            None if old is None else old.file,
            new.file,
            path,
            os.path.join(out, data),
            method=method_for(methods, path),
            threshold=threshold,
            max_diff_size=max_diff_size,
        )
        jsonio.write(os.path.join(out, info), result.to_json())
        results.append({"data": data, "info": info, "path": path})
        if result.warning:
            warnings.append(result.warning)
    jsonio.write(os.path.join(out, shard_layout.RESULTS), {"results": results, "shard": shard, "shards": shards})
    return warnings


def _side(values: flags.FlagValues, name: str, shard: int, shards: int) -> dict[str, ShardFile]:
    """The side `name` ("target" or "source"): its shard directory, else its path/file pairs
    (none: an empty side, which is what an empty bucket's command line holds)."""
    directory = values[f"{name}_dir"].value
    escaped_paths, files = values[f"{name}_path"].value or [], values[f"{name}_file"].value or []
    if directory and (escaped_paths or files):
        raise UsageError(f"--{name}_dir excludes --{name}_path and --{name}_file")
    if directory:
        return load_dir(directory, shard, shards)
    return load_args(escaped_paths, files, shard, shards, name)


def shard_from_flags(values: flags.FlagValues, rest: Sequence[str]) -> None:
    """One shard from parsed flag `values` (a worker's private copy per request, or a one-shot
    run's) and the leftover arguments `rest`: writes the shard's directory, prints its warnings."""
    toolchain_identity.verify(values.toolchain_identity)
    if len(rest) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(rest[1:])}")
    if values.shard is None or values.shards is None or not values.out_dir:
        raise UsageError("--shard, --shards and --out_dir are required")
    shard, shards = values.shard, values.shards
    if shard >= shards:
        raise UsageError(f"--shard {shard} is not below --shards {shards}")
    target = _side(values, "target", shard, shards)
    source = _side(values, "source", shard, shards)
    try:
        methods = json.loads(values.patch_methods)
    except ValueError as err:
        raise UsageError(f"--patch_methods: not JSON ({err})") from None
    for warning in patch_shard(
        source,
        target,
        values.out_dir,
        shard=shard,
        shards=shards,
        methods=methods,
        threshold=values.patch_threshold,
        max_diff_size=values.max_diff_size,
    ):
        print(warning, file=sys.stderr)


# Its own flags, --toolchain_identity, and the two diff options it shares with file_patch.
TOOL = persistent_worker.Tool(
    "file_patch_shard",
    __doc__ or "",
    (__name__, toolchain_identity.__name__),
    shard_from_flags,
    single_flags=("patch_threshold", "max_diff_size"),
)


def run() -> None:
    sys.exit(persistent_worker.main(sys.argv, TOOL))


if __name__ == "__main__":
    run()
