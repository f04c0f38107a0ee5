"""The peer of a Bazel OTA build: the same per-file diffs, one after another, in one Python process.

This is how AOSP's ota_from_target_files works (one process walks the changed files and diffs each),
and it is what the Bazel build is measured against: no per-action interpreter start, no sandbox, no
parallelism. The work list is taken from a Bazel execution log, so both sides diff exactly the same
inputs with the same engine (`ota.actions.file_patch.patch_files`; a bucket or shard of small files
read by the tool's own flags and run by its own code, `ota.actions.file_patch_shard.TOOL`) and the same package writer;
the package this writes must be byte-identical to Bazel's.

Run from the workspace directory (exec paths resolve through its `bazel-out` symlink; the patch
actions' `@params` files are read there, so those actions must have run, not come from a cache), with
the package's tools importable (build_release_bench.py puts the tool's runfiles on PYTHONPATH):

    build_serial_pipeline.py --exec_log X.exec.json [--package_out incremental_ota.unsigned.zip] --out_dir D
Prints one JSON object: seconds for the patches and the package, the package's sha256, counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import resource
import sys
import time

from ota.actions import file_patch, file_patch_shard, package_writer
from ota.format import jsonio, paths, signing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench import spawn_args
from tests.cache import execlog

PATCH_MNEMONICS = ("OtaFilePatch", "OtaBootPatch", "OtaPartitionPatch")
SHARD_MNEMONIC = "OtaFilePatchShard"


def _package_spawn(spawns: list[execlog.Spawn], out_suffix: str | None, root: pathlib.Path) -> execlog.Spawn:
    """The OtaPackage spawn whose --out ends with `out_suffix`; None: the log's only one."""
    packages = [s for s in spawns if s.mnemonic == "OtaPackage"]
    if out_suffix is None:
        if len(packages) != 1:
            raise SystemExit(f"{len(packages)} OtaPackage spawns in the execution log: name one with --package_out")
        return packages[0]
    for spawn in packages:
        if spawn_args.flags(spawn, root).get("out", "").endswith(out_suffix):
            return spawn
    raise SystemExit(f"no OtaPackage spawn writing *{out_suffix} in the execution log")


def _signing_key(spawns: list[execlog.Spawn], unsigned: str, root: pathlib.Path) -> str | None:
    """The key of the OtaSign action that signs `unsigned`, if the package is signed in the build."""
    for spawn in spawns:
        flags = spawn_args.flags(spawn, root) if spawn.mnemonic == "OtaSign" else {}
        if flags.get("in") == unsigned:
            return flags["key"]
    return None


def _patch_shard(args: list[str], out: pathlib.Path) -> None:
    """Redoes one OtaFilePatchShard spawn (a bucket of small files, or a tar tree's shard) into
    `out`: its own command line `args` (expanded, without the program), read by the tool's own
    flags and run by the tool's own code, with a last `--out_dir` (absl keeps the last value)."""
    tool = file_patch_shard.TOOL
    tool.run_once([tool.name, *args, f"--out_dir={out}"])


def run(exec_log: pathlib.Path, package_out: str | None, out_dir: pathlib.Path) -> dict:
    """Diffs every patch spawn of the package, then assembles it; returns timings and the digest."""
    root = pathlib.Path.cwd()  # the workspace: exec paths and `@params` files are relative to it
    spawns = list(execlog.read_spawns(exec_log))
    package = spawn_args.flags(_package_spawn(spawns, package_out, root), root)
    params = jsonio.read(package["params"])
    wanted = {entry["data"] for entry in params["file_patches"] + params["partitions"]}
    work = [spawn_args.flags(s, root) for s in spawns if s.mnemonic in PATCH_MNEMONICS]
    wanted_shards = set(params.get("file_patch_shards", []))
    shard_work = [
        (execlog.flag_values(args), args[1:])
        for args in (spawn_args.expand(s.args, root) for s in spawns if s.mnemonic == SHARD_MNEMONIC)
    ]
    shard_work = [(flags, args) for flags, args in shard_work if flags["out_dir"] in wanted_shards]
    # Smallest first, so the process's peak RSS is the largest diff's peak.
    work = sorted(
        (flags for flags in work if flags["out_data"] in wanted), key=lambda flags: os.stat(flags["target"]).st_size
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    renamed: dict[str, str] = {}

    start = time.perf_counter()
    for index, flags in enumerate(work):
        data, info = out_dir / f"{index}.p", out_dir / f"{index}.json"
        result = file_patch.patch_files(
            flags.get("source"),
            flags["target"],
            paths.unescape(flags["path"], "--path"),
            str(data),
            method=flags.get("method", "auto"),
            threshold=float(flags.get("patch_threshold", file_patch.DEFAULT_THRESHOLD)),
            max_diff_size=int(flags["max_diff_size"]) if "max_diff_size" in flags else None,
        )
        jsonio.write(str(info), result.to_json())
        renamed[flags["out_data"]], renamed[flags["out_info"]] = str(data), str(info)
    for index, (flags, args) in enumerate(shard_work):
        out = out_dir / f"shard_{index}"
        _patch_shard(args, out)
        renamed[flags["out_dir"]] = str(out)
    patches_done = time.perf_counter()

    for entry in params["file_patches"] + params["partitions"]:
        entry["data"], entry["info"] = renamed[entry["data"]], renamed[entry["info"]]
    if "file_patch_shards" in params:
        params["file_patch_shards"] = [renamed[d] for d in params["file_patch_shards"]]
    serial_params = out_dir / "params.json"
    jsonio.write(str(serial_params), params)
    out = out_dir / "package.zip"
    package_writer.write_package(str(serial_params), str(out))
    key = _signing_key(spawns, package["out"], root)
    if key is not None:  # the build signs with a TEST key (Ed25519: same bytes): do the same
        unsigned, out = out, out_dir / "package.signed.zip"
        signing.sign(str(unsigned), str(out), [signing.load_private_key(key)])
    end = time.perf_counter()
    return {
        "patches": len(work),
        "shards": len(shard_work),
        "seconds_patches": patches_done - start,
        "seconds_package": end - patches_done,
        "package_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "package_bytes": out.stat().st_size,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        # Inputs above the bound are hashed and copied in blocks, never diffed: not the peak.
        "largest_diffed_bytes": max(
            (
                size
                for size in (os.stat(f["target"]).st_size for f in work)
                if size <= file_patch.default_max_diff_size()
            ),
            default=0,
        ),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exec_log", type=pathlib.Path, required=True, help="Bazel --execution_log_json_file")
    parser.add_argument(
        "--package_out",
        help="the OtaPackage output (suffix of its --out) whose work to redo, e.g. "
        "incremental_ota.unsigned.zip (default: the log's only OtaPackage action); "
        "an OtaSign action signing it is redone too",
    )
    parser.add_argument("--out_dir", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.exec_log, args.package_out, args.out_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
