"""How many shards a tar-backed tree should have: cold patch time against one-file rebuild time.

    PYTHONPATH=py python3 bench/bench_tar_shards.py --files 2000 --shards 4,8,16,32,64

Generates a realistic tree pair (py/ota/testing/generated_trees.py), writes each side as a tar,
reads both with the tar reader (py/ota/actions/tar_tree.py) once per shard count, then runs every
shard action (py/ota/actions/file_patch_shard.py) as its own process, two at a time as Bazel does on
a 2-core machine. Prints per shard count: the cold wall time of all shards, the mean and largest
single shard (what a one-file change re-runs), and that mean as a share of cold. Also the fixed
cost of one shard process on an empty shard, which every extra shard adds to a cold build.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from ota.actions import tar_tree
from ota.testing.generated_trees import tree_pair


def write_tar(path: Path, items: dict[str, object]) -> None:
    """A generated build's items as a tar: bytes are 0644 files, ("symlink", t) symlinks."""
    import io

    with tarfile.open(path, "w") as archive:
        for name in sorted(items):
            item = items[name]
            info = tarfile.TarInfo(name)
            if isinstance(item, tuple) and item[0] == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, item[1]
                archive.addfile(info)
            else:
                data = item if isinstance(item, bytes) else item[0]  # type: ignore[index]
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))


def run_shard(source_dir: str, target_dir: str, out: str, shard: int, shards: int) -> float:
    start = time.monotonic()
    command = [sys.executable, "-m", "ota.actions.file_patch_shard", f"--shard={shard}", f"--shards={shards}"]
    command += [f"--source_dir={source_dir}", f"--target_dir={target_dir}", f"--out_dir={out}"]
    subprocess.run(command, check=True, capture_output=True)
    return time.monotonic() - start


def measure(work: Path, tars: tuple[Path, Path], shards: int) -> tuple[float, list[float]]:
    sides = []
    for name, tar in zip(("v1", "v2"), tars, strict=True):
        dirs = [str(work / f"{name}-{shards}" / str(k)) for k in range(shards)]
        tar_tree.write_outputs(str(tar), dirs, str(work / "m.json"), str(work / "t.json"), tar_tree.Limits())
        sides.append(dirs)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(run_shard, sides[0][k], sides[1][k], str(work / f"out-{shards}" / str(k)), k, shards)
            for k in range(shards)
        ]
        times = [f.result() for f in futures]
    return time.monotonic() - start, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--shards", default="4,8,16,32,64")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source, target = tree_pair(args.files, args.seed)
        tars = (work / "v1.tar", work / "v2.tar")
        write_tar(tars[0], source.items)
        write_tar(tars[1], target.items)
        empty = work / "empty"
        os.makedirs(empty)
        (empty / "shard.json").write_text('{"entries": []}\n')
        fixed = min(run_shard(str(empty), str(empty), str(work / "e"), 0, 1) for _ in range(3))
        print(
            f"{args.files} files, {sum(t.stat().st_size for t in tars) >> 20} MiB of tars; "
            f"one shard process on an empty shard: {fixed:.2f} s"
        )
        print("shards  cold_s  mean_shard_s  max_shard_s  one_file/cold")
        for shards in [int(s) for s in args.shards.split(",")]:
            cold, times = measure(work, tars, shards)
            mean = sum(times) / len(times)
            print(f"{shards:6d}  {cold:6.1f}  {mean:12.2f}  {max(times):11.2f}  {mean / cold:12.1%}")


if __name__ == "__main__":
    main()
