#!/usr/bin/env python3
"""Persistent workers against one process per action: cold package builds, wall time and actions.

Two cases, each built in the same checkout copy with the same output root:

* release: //release:incremental_ota, whose unchanged files are the same artifacts in both
  builds, so only the changed paths get an OtaFilePatch action (tens);
* import: the same incremental with v1 imported from its release archive
  (ota_release_archive, as tests/rules/test_nested_import.py does), which gives every path present
  in both builds an action (hundreds), most of them reporting UNCHANGED after hashing.

For each case and mode: `bazel clean` and `bazel shutdown` (no action cache, no warm worker),
build both builds' images (not timed), then time the package build alone. Modes: the default
strategies (OtaFilePatch/OtaBootPatch/OtaPartitionPatch in persistent workers) and
`--strategy=<each>=sandboxed` (one Python process per action, what Bazel did before). Both
modes must give byte-identical packages. Rounds alternate the order of the modes; the table shows
the median of each.

Not a test: numbers depend on the machine and its load; run it by hand:
    bench/worker_bench.py [--rounds 3] [--jobs 2] [--work_dir DIR]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import build_release_bench as release_bench  # noqa: E402 - after the repository root is on sys.path
from tests.cache import execlog, workspace  # noqa: E402

PATCH_MNEMONICS = ("OtaFilePatch", "OtaBootPatch", "OtaPartitionPatch")
MODES = {
    "workers": [],
    "sandboxed": [f"--strategy={m}=sandboxed" for m in PATCH_MNEMONICS],
}
# case -> (images built untimed first, the package, its output under bazel-bin)
CASES = {
    "release": (["//release:v1", "//release:v2"], "//release:incremental_ota", "release/incremental_ota.zip"),
    "import": (["@shipped_v1//:build", "//release:v2"], "//imported:incremental_ota", "imported/incremental_ota.zip"),
}


def add_import_case(client: workspace.Bazel, tree: pathlib.Path, flags: list[str]) -> None:
    """Builds v1's release archive and declares it as @shipped_v1, with //imported:incremental_ota on it."""
    release_bench.must(client.run("build", "v1_archive", ["//release:v1_archive"], flags), "building v1's archive")
    (tree / "shipped").mkdir()
    shutil.copyfile(tree / "bazel-bin/release/v1_archive.zip", tree / "shipped/v1.zip")
    (tree / "shipped/BUILD").write_text('exports_files(["v1.zip"])\n')
    with (tree / "WORKSPACE").open("a") as out:
        out.write(
            '\nload("//rules:repositories.bzl", "ota_release_archive")\n\n'
            'ota_release_archive(\n    name = "shipped_v1",\n    archive = "//shipped:v1.zip",\n)\n'
        )
    (tree / "imported").mkdir()
    (tree / "imported/BUILD").write_text(
        'load("//rules:defs.bzl", "ota_package")\n\n'
        'ota_package(\n    name = "incremental_ota",\n    source = "@shipped_v1//:build",\n'
        '    target = "//release:v2",\n)\n'
    )


def bazel_plain(client: workspace.Bazel, *command: str) -> None:
    """`bazel clean` / `bazel shutdown` for this client's output root (no logs needed)."""
    argv = [client.bazel, "--nohome_rc", f"--output_user_root={client.output_user_root}", *command]
    subprocess.run(argv, cwd=client.workspace, env=client.env, check=True, capture_output=True)


def cold_build(
    client: workspace.Bazel, case: str, mode: str, round_: int, flags: list[str]
) -> tuple[float, collections.Counter, str]:
    """One cold package build: seconds, patch spawns by (mnemonic, runner), package SHA-256."""
    images, package, output = CASES[case]
    bazel_plain(client, "clean")
    bazel_plain(client, "shutdown")  # also ends the workers: the next build starts them cold
    name = f"{case}-{mode}-{round_}"
    release_bench.must(client.run("build", name + "-images", images, flags), f"{name}: images")
    result = release_bench.must(client.run("build", name, [package], flags + MODES[mode]), f"{name}: package")
    runs = collections.Counter(
        (s.mnemonic, s.runner) for s in execlog.read_spawns(result.exec_log) if s.mnemonic in PATCH_MNEMONICS
    )
    digest = hashlib.sha256((client.workspace / "bazel-bin" / output).read_bytes()).hexdigest()
    return result.seconds, runs, digest


def bench(work: pathlib.Path, rounds: int, jobs: int) -> list[release_bench.Row]:
    tree = work / "rules_ota"
    workspace.copy_checkout(REPO, tree)
    client = workspace.Bazel(tree, work / "root", work / "logs", dict(os.environ))
    flags = ["--disk_cache=", f"--jobs={jobs}"]
    rows: list[release_bench.Row] = []
    try:
        add_import_case(client, tree, flags)
        for case in CASES:
            seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
            runs: dict[str, collections.Counter] = {}
            digests: set[str] = set()
            for round_ in range(rounds):
                order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
                for mode in order:
                    took, runs[mode], digest = cold_build(client, case, mode, round_, flags)
                    seconds[mode].append(took)
                    digests.add(digest)
            median = {mode: statistics.median(times) for mode, times in seconds.items()}
            actions = sum(runs["workers"].values())
            for mode in MODES:
                times = ", ".join(f"{t:.1f}" for t in seconds[mode])
                rows.append(
                    (
                        f"{case}: cold package build, {mode}",
                        f"{median[mode]:.1f} s",
                        f"{actions} patch actions; ran {dict(runs[mode])}; rounds: {times} s",
                    )
                )
            rows.append(
                (
                    f"{case}: workers / sandboxed",
                    f"{median['workers'] / median['sandboxed']:.2f}",
                    (
                        f"per patch action: {median['workers'] / actions * 1000:.0f} ms vs "
                        f"{median['sandboxed'] / actions * 1000:.0f} ms; package bytes identical: {len(digests) == 1}"
                    ),
                )
            )
    finally:
        client.shutdown()
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold builds per case and mode (median shown)")
    parser.add_argument("--jobs", type=int, default=2, help="Bazel --jobs (the CI machine has 2 cores)")
    parser.add_argument("--work_dir", type=pathlib.Path, help="scratch directory (default: a new one, removed after)")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    release_bench.print_table(
        release_bench.in_scratch(args.work_dir, "rules_ota-worker.", lambda work: bench(work, args.rounds, args.jobs))
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
