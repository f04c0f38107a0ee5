#!/usr/bin/env python3
"""Package bytes against payload bytes for an incremental package between two system trees.

Builds the package with the real per-file diff and package writer (ota.testing.builds, no Bazel),
signs it with a throwaway Ed25519 key, and prints ota_inspect's breakdown: payload as stored in
the zip, manifest.pb, signature, zip headers, and the ratio of package bytes to payload bytes
(docs/package-format.md, "What is left: overhead", holds the figures for --generated 7000).

    PYTHONPATH=py bench/bench_package_overhead.py --source OLD_DIR --target NEW_DIR
    PYTHONPATH=py bench/bench_package_overhead.py --generated 7000 [--seed 11]

Directories are read without following symlinks (files, directories, symlinks, with their modes
and owners); --generated uses ota.testing.generated_trees, a distribution-shaped pair.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric import ed25519

from ota.cli import ota_inspect
from ota.format import package_reader, signing
from ota.testing import builds, generated_trees


def spec_of(directory: str, fingerprint: str, timestamp: int) -> builds.Spec:
    """A build spec holding every file, directory and symlink under `directory`, as they are."""
    items: dict[str, object] = {}
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            full = os.path.join(root, name)
            path = os.path.relpath(full, directory)
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                items[path] = ("symlink", os.readlink(full), info.st_uid, info.st_gid)
            elif stat.S_ISDIR(info.st_mode):
                items[path] = ("dir", stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
            elif stat.S_ISREG(info.st_mode):
                with open(full, "rb") as stream:
                    items[path] = (stream.read(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return builds.Spec("bench", fingerprint, timestamp, items, {})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="the source tree (a directory)")
    parser.add_argument("--target", help="the target tree (a directory)")
    parser.add_argument("--generated", type=int, help="instead: a generated pair of about this many files")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    if args.generated:
        source_spec, target_spec = generated_trees.tree_pair(args.generated, args.seed)
    elif args.source and args.target:
        source_spec = spec_of(args.source, "bench/source", 1000)
        target_spec = spec_of(args.target, "bench/target", 2000)
    else:
        parser.error("give --source and --target, or --generated N")
    with tempfile.TemporaryDirectory(prefix="package_overhead.") as work:
        start = time.perf_counter()
        source = builds.write_build(source_spec, os.path.join(work, "source"))
        target = builds.write_build(target_spec, os.path.join(work, "target"))
        unsigned = builds.make_package(source, target, work, os.path.join(work, "unsigned.zip"))
        signed = os.path.join(work, "signed.zip")
        signing.sign(unsigned, signed, [ed25519.Ed25519PrivateKey.generate()])
        seconds = time.perf_counter() - start
        with package_reader.open_package(signed) as package:
            sizes = ota_inspect.package_bytes(package)
            paths = len(package.manifest.files)
            groups = package.manifest.unchanged
            unchanged = sum(group.count for group in groups)
    print(
        f"# {len(target.files)} target files; {paths} operations, {unchanged} unchanged paths in "
        f"{len(groups)} directory groups; built in {seconds:.1f} s"
    )
    print("\n".join(ota_inspect.overhead_lines(sizes)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
