#!/usr/bin/env python3
"""Two system trees through Bazel at scale: every figure of a release engineer's question in one run.

    PYTHONPATH=py bench/build_scale_bench.py --source_dir OLD --target_dir NEW [--work_dir D]
    PYTHONPATH=py bench/build_scale_bench.py [--files 7000] [--seed 11]

Without directories, a generated pair of about --files regular files (py/ota/testing/
generated_trees.py: distribution-shaped names and sizes, a fifth of the files changed, 10 %
symlinks) is written to the scratch directory first. A scratch copy of the checkout gets a package
`//scale` with one system_image per tree (see `import_tree`), two ota_builds (boot images from
//release) and the incremental package, then, with its own fresh Bazel output root:

1. loading + analysis of //scale:incremental_ota on a fresh server (repositories fetched by an
   earlier server):
   time from Bazel's --profile phase markers, targets configured, used heap after GC;
2. the system manifests of both builds (written at analysis time from the scan's digests, so no
   action runs unless a tree has files the scan did not record);
3. the package, --jobs=2 (an OtaFilePatch action per large changed file, the OtaFilePatchShard
   buckets of the small ones, OtaPackage), against **the serial single-process pipeline**
   (bench/build_serial_pipeline.py) on the same inputs in the same run; the two packages must be
   byte-identical; actions by mnemonic from the execution log;
4. one changed target file edited again, only the target's repository fetched again
   (`bazel sync --only=scale_v2`), then the package rebuilt: the time of both as a fraction of
   the cold build;
   then a no-op build, and the re-fetch floor: a sync of the unchanged tree plus the no-op build,
   the least any one-file rebuild of an imported directory costs on Bazel 4 (and the sync of the
   examples' few-file tree, Bazel's own share of a sync);

The package step and the rebuild are timed without Bazel's execution log, as a user runs them
(the log records every spawn with all its inputs and is written out after the build: 16 MB and a
few tenths of a second for the 7,000-file package). What they ran is counted from a logged run of
the same actions that is not timed: the package step again after its outputs are deleted, and a
second edit of the same file for the rebuild.
5. package bytes against payload bytes (ota_inspect's breakdown);
6. the peak RSS of the largest changed file's action, re-run alone.

The trees are read without following symlinks and never written to: each is mirrored into the
scratch directory (`cp -a --link`: regular files hard-linked, directories, modes, owners and
symlinks as they are) and imported from there by `ota_tree_repository`, every name as it is; the
edit of step 4 replaces one hard link of the target's mirror.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gzip
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "py")]
from bench import build_release_bench as release_bench  # noqa: E402 - after the repository root is on sys.path
from bench import spawn_args  # noqa: E402
from ota.cli import ota_inspect  # noqa: E402
from ota.format import package_reader  # noqa: E402
from ota.testing import generated_trees  # noqa: E402
from tests.cache import bep, execlog, workspace  # noqa: E402

_EXECUTABLE = re.compile(r"(^|/)(s?bin|libexec)/|\.so(\.\d+)*$")


@dataclasses.dataclass
class Tree:
    """A directory tree as system_image needs it: entries by path, never following a symlink."""

    root: pathlib.Path
    files: dict[str, int] = dataclasses.field(default_factory=dict)  # path -> mode
    dirs: dict[str, int] = dataclasses.field(default_factory=dict)
    symlinks: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def file_bytes(self) -> int:
        return sum((self.root / path).stat().st_size for path in self.files)


def list_tree(root: pathlib.Path) -> Tree:
    """Every file, directory and symlink below `root` with its mode (os.walk does not follow
    directory symlinks; lstat does not follow file symlinks). Names stay as os.fsdecode gives them."""
    tree = Tree(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = pathlib.Path(dirpath, name)
            path = full.relative_to(root).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                tree.symlinks[path] = os.readlink(full)
            elif stat.S_ISDIR(info.st_mode):
                tree.dirs[path] = stat.S_IMODE(info.st_mode)
            elif stat.S_ISREG(info.st_mode):
                tree.files[path] = stat.S_IMODE(info.st_mode)
    return tree


def write_generated_pair(files: int, seed: int, out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes generated_trees.tree_pair to out/source and out/target; binaries and libraries are
    executable, so the trees carry modes as real ones do."""
    roots = []
    for name, spec in zip(("source", "target"), generated_trees.tree_pair(files, seed), strict=True):
        root = out / name
        for path, item in spec.items.items():
            full = root / path
            full.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(item, tuple) and item[0] == "symlink":
                full.symlink_to(item[1])
                continue
            full.write_bytes(item)
            full.chmod(0o755 if _EXECUTABLE.search(path) else 0o644)
        roots.append(root)
    return roots[0], roots[1]


def import_tree(tree: Tree, work: pathlib.Path, checkout: pathlib.Path, name: str) -> str:
    """Mirrors `tree` into `work/import/<name>`, declares `ota_tree_repository(name = "scale_<name>")`
    on the mirror in the scratch checkout's WORKSPACE, and returns the system_image using it."""
    mirror = work / "import" / name
    mirror.parent.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["cp", "-a", "--link", str(tree.root), str(mirror)], check=False, capture_output=True).returncode:
        shutil.rmtree(mirror, ignore_errors=True)  # another file system: copy instead of linking
        subprocess.run(["cp", "-a", str(tree.root), str(mirror)], check=True)
    with (checkout / "WORKSPACE").open("a") as out:
        out.write(f'\nota_tree_repository(name = "scale_{name}", path = "{mirror}")\n')
    return f'ota_system_image(name = "{name}_system", tree = "@scale_{name}//:tree")\n'


def build_file(systems: list[str]) -> str:
    """//scale's BUILD: the two system images, two builds (boot images from //release), the package."""
    parts = [
        "# Generated by bench/build_scale_bench.py.",
        'load("//rules:defs.bzl", "ota_build", "ota_package", "ota_system_image")',
        "",
        *systems,
    ]
    for v, name in ((1, "v1"), (2, "v2")):
        parts.append(
            f'ota_build(name = "{name}", boot = "//release:v{v}_boot", device = "rota_ref", '
            f'fingerprint = "rules_ota/rota_ref/rota_ref:14/SCALE/{v}:user/release-keys", '
            f'system = ":{name}_system", timestamp = {1788220800 + v})'
        )
    parts.append('ota_package(name = "incremental_ota", source = ":v1", target = ":v2")')
    return "\n".join(parts) + "\n"


def peak_rss(tree: pathlib.Path, args: tuple[str, ...], scratch: pathlib.Path) -> tuple[int, float]:
    """Re-runs one action's command line (`@params` expanded, outputs redirected to `scratch`); its
    peak RSS and seconds."""
    argv = spawn_args.expand(args, tree)
    for flag, name in (("--out_data", "data"), ("--out_info", "info.json")):
        argv[argv.index(flag) + 1] = str(scratch / name)
    probe = (
        "import resource, subprocess, sys, time; t = time.monotonic(); "
        "code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.monotonic() - t, code)"
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-c", probe, *argv],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PATH": "/bin:/usr/bin"},
        check=False,
    )
    kib, seconds, code = done.stdout.split()
    if code != "0":
        raise SystemExit(f"re-running {argv[0]} failed:\n{done.stderr}")
    return int(kib) * 1024, float(seconds)


def phase_seconds(profile: pathlib.Path, first: str, last: str) -> float:
    """Seconds from Bazel's build phase marker `first` to the marker after `last` (--profile JSON)."""
    with gzip.open(profile, "rt") if profile.suffix == ".gz" else profile.open() as stream:
        trace = json.load(stream)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    markers = sorted((e["ts"], e["name"]) for e in events if e.get("cat") == "build phase marker")
    names = [name for _, name in markers]
    start = markers[names.index(first)][0]
    end = markers[names.index(last) + 1][0]
    return (end - start) / 1e6


def bazel_info(bazel: workspace.Bazel, key: str) -> str:
    """`bazel info KEY` on the running server (its console's last line)."""
    result = release_bench.must(bazel.run("info", f"info-{key}", [key], []), f"bazel info {key}")
    return result.console.read_text().strip().splitlines()[-1]


def by_mnemonic(result: workspace.Result) -> collections.Counter:
    return collections.Counter(s.mnemonic for s in execlog.read_spawns(result.exec_log))


def _mnemonics(counts: collections.Counter) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def sync_one(bazel: workspace.Bazel, repository: str, log: pathlib.Path) -> float:
    """`bazel sync --only=<repository>`: fetches that repository again and no other (Bazel 4 does
    not watch an imported directory, rules/private/tree_repository.bzl); returns its seconds."""
    start = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(
            bazel._startup() + ["sync", f"--only={repository}", "--color=no", "--curses=no"],
            cwd=bazel.workspace,
            env=bazel.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        ).returncode
    if code:
        raise SystemExit(f"bazel sync --only={repository} failed (exit {code}):\n{workspace.tail(log)}")
    return time.monotonic() - start


def run_package_logged(
    bazel: workspace.Bazel, checkout: pathlib.Path, package: str, flags: list[str]
) -> workspace.Result:
    """Builds the package again with the execution log, after deleting what the package step
    wrote (bazel-bin/scale/incremental_ota*): Bazel finds its outputs missing and runs the same
    actions again, which the log then records. Refuses a run that did not redo the package."""
    for output in (checkout / "bazel-bin" / "scale").glob("incremental_ota*"):
        if output.is_dir() and not output.is_symlink():
            shutil.rmtree(output)
        else:
            output.unlink()
    logged = release_bench.must(bazel.run("build", "scale-package-logged", [package], flags), "the logged package step")
    if not by_mnemonic(logged)["OtaPackage"]:
        raise SystemExit("the logged package step ran no OtaPackage action: its outputs were not deleted")
    return logged


def append_line(copy: pathlib.Path) -> None:
    """Appends a line to `copy`, a file of a tree's mirror: a new file replaces the hard link, so
    the user's tree is untouched."""
    data = copy.read_bytes() + b"\n# edited by bench/build_scale_bench.py\n"
    temporary = copy.with_name(copy.name + ".bench-tmp")
    temporary.write_bytes(data)
    temporary.chmod(copy.stat().st_mode)
    os.replace(temporary, copy)


def edit_one_changed_file(work: pathlib.Path, source: Tree, target: Tree) -> str:
    """Appends a line to the smallest file that differs between the trees (or, when none does, the
    smallest file of the target), in the target's mirror only (a new file replaces the hard link:
    the user's tree is untouched)."""
    changed = [
        path
        for path in target.files
        if path in source.files and (source.root / path).read_bytes() != (target.root / path).read_bytes()
    ]
    if not target.files:
        raise SystemExit(f"{target.root}: no regular file to edit for the one-file rebuild")
    path = min(changed or target.files, key=lambda p: ((target.root / p).stat().st_size, p))
    append_line(work / "import" / "v2" / path)
    return path


def bench(work: pathlib.Path, args: argparse.Namespace) -> list[release_bench.Row]:
    if args.source_dir and args.target_dir:
        roots = (args.source_dir.resolve(), args.target_dir.resolve())
    else:
        roots = write_generated_pair(args.files, args.seed, work / "trees")
    source, target = list_tree(roots[0]), list_tree(roots[1])
    checkout = work / "scale" / "rules_ota"
    workspace.copy_checkout(REPO, checkout)
    with (checkout / "WORKSPACE").open("a") as out:
        out.write('\nload("//rules:repositories.bzl", "ota_tree_repository")\n')
    systems = [import_tree(source, work, checkout, "v1"), import_tree(target, work, checkout, "v2")]
    (checkout / "scale").mkdir()
    (checkout / "scale" / "BUILD").write_text(build_file(systems))
    bazel = workspace.Bazel(checkout, work / "root", work / "logs", dict(os.environ))
    flags = ["--disk_cache=", "--remote_cache=", "--jobs=2"]
    package = "//scale:incremental_ota"
    try:
        # Repositories (the @rules_ota_pypi hub) are fetched by a first analysis; the measured one runs on a
        # new server, which loads and analyzes everything again but finds the repositories on disk.
        release_bench.must(bazel.run("build", "fetch", [package], [*flags, "--nobuild"]), "fetching the repositories")
        bazel.shutdown()
        profile = work / "logs" / "analysis.profile.json"
        analysis = release_bench.must(
            bazel.run("build", "analysis", [package], [*flags, "--nobuild", f"--profile={profile}"]), "analysis"
        )
        analysis_seconds = phase_seconds(profile, "Evaluate target patterns", "Load and analyze dependencies")
        heap = bazel_info(bazel, "used-heap-size-after-gc")
        configured = re.search(
            r"Analyzed targets? .*\((\d+) packages? loaded, (\d+) targets? configured\)", analysis.console.read_text()
        )
        images = release_bench.must(
            bazel.run("build", "scale-images", ["//scale:v1", "//scale:v2"], flags), "system manifests"
        )
        # Timed as a user runs it, without the execution log; then the same actions again, logged,
        # for their counts and the serial pipeline's inputs (see run_package_logged).
        build = release_bench.must(
            bazel.run("build", "scale-package", [package], flags, exec_log=False), f"building {package}"
        )
        logged = run_package_logged(bazel, checkout, package, flags)
        # In the execution root, where imported trees' files (external/...) resolve as in the actions.
        execroot = pathlib.Path(bazel_info(bazel, "execution_root"))
        serial = release_bench.serial_pipeline(execroot, logged.exec_log, work / "serial")
        bazel_zip = next(p for k, p in bep.top_level_outputs(build.bep).get(package, {}).items() if k.endswith(".zip"))
        bazel_sha = bep.sha256_file(bazel_zip)
        with package_reader.open_package(str(bazel_zip)) as opened:
            sizes = ota_inspect.package_bytes(opened)
        edited = edit_one_changed_file(work, source, target)
        # Bazel 4 does not watch the imported directory: syncing the edited tree's repository
        # fetches it (and only it) again, which is part of what a rebuild costs.
        sync_seconds = sync_one(bazel, "scale_v2", work / "logs" / "sync.console.txt")
        rebuild_profile = work / "logs" / "rebuild.profile.json"
        rebuild = release_bench.must(
            bazel.run("build", "scale-rebuild", [package], [*flags, f"--profile={rebuild_profile}"], exec_log=False),
            "one-file rebuild",
        )
        # What a rebuild runs, from a second edit of the same file, logged and not timed.
        append_line(work / "import" / "v2" / edited)
        sync_one(bazel, "scale_v2", work / "logs" / "sync-logged.console.txt")
        rebuild_logged = release_bench.must(bazel.run("build", "scale-rebuild-logged", [package], flags), "rebuild")
        # Nothing changed: what any rebuild pays before its own work (client, server, change checks).
        noop = release_bench.must(bazel.run("build", "scale-noop", [package], flags), "no-op build")
        # The re-fetch alone, of the tree as it now is, and of the examples' tree of a few files
        # (what is Bazel's own in a sync): with the no-op build, what a one-file rebuild of an
        # imported directory costs before it loads, analyses or runs anything.
        resync_seconds = sync_one(bazel, "scale_v2", work / "logs" / "sync-unchanged.console.txt")
        tiny_sync_seconds = sync_one(bazel, "example_tree_v1", work / "logs" / "sync-tiny.console.txt")
        rebuild_phases = (
            phase_seconds(rebuild_profile, "Evaluate target patterns", "Load and analyze dependencies"),
            phase_seconds(rebuild_profile, "Build artifacts", "Build artifacts"),
        )
        spawns = [s for s in execlog.read_spawns(logged.exec_log) if s.mnemonic == "OtaFilePatch"]
        probes = []
        if spawns:  # re-run in the execution root, where external/ (the @rules_ota_pypi identity file) resolves
            largest = max(spawns, key=lambda s: (execroot / spawn_args.flags(s, execroot)["target"]).stat().st_size)
            size = (execroot / spawn_args.flags(largest, execroot)["target"]).stat().st_size
            scratch = work / "probe"
            scratch.mkdir(exist_ok=True)
            rss, seconds = peak_rss(execroot, largest.args, scratch)
            probes.append(
                (
                    "largest changed file's OtaFilePatch, re-run alone",
                    f"{rss / 2**20:.0f} MiB",
                    f"peak RSS; {size / 2**20:.1f} MiB file, {seconds:.1f} s",
                )
            )
    finally:
        bazel.shutdown()
    cold = analysis.seconds + images.seconds + build.seconds
    rebuild_seconds = sync_seconds + rebuild.seconds
    cold_ran, rebuild_ran = by_mnemonic(images) + by_mnemonic(logged), by_mnemonic(rebuild_logged)
    return [
        (
            "trees (source -> target)",
            f"{len(target.files)} files",
            (
                f"{len(source.files)} -> {len(target.files)} files, {len(source.symlinks)} -> "
                f"{len(target.symlinks)} symlinks, {source.file_bytes / 2**20:.0f} -> "
                f"{target.file_bytes / 2**20:.0f} MiB"
            ),
        ),
        (
            "loading + analysis (fresh server)",
            f"{analysis_seconds:.1f} s",
            (
                f"used heap after GC {heap}; "
                + (f"{configured[2]} targets configured, {configured[1]} packages" if configured else "")
                + f"; whole command {analysis.seconds:.1f} s"
            ),
        ),
        ("images: boot images, system manifests (Bazel)", f"{images.seconds:.1f} s", _mnemonics(by_mnemonic(images))),
        ("package: patches + zip (Bazel, 2 jobs)", f"{build.seconds:.1f} s", _mnemonics(by_mnemonic(logged))),
        (
            "serial single-process pipeline, same inputs",
            f"{serial['seconds_process']:.1f} s",
            (
                f"diffs {serial['seconds_patches']:.1f} s ({serial['patches']} files alone, "
                f"{serial['shards']} buckets) + package {serial['seconds_package']:.1f} s; "
                f"Bazel/serial = {build.seconds / serial['seconds_process']:.2f}; "
                f"package bytes identical: {serial['package_sha256'] == bazel_sha}"
            ),
        ),
        (
            "cold build: analysis + manifests + package",
            f"{cold:.1f} s",
            f"{sum(cold_ran.values())} actions (spawns) ran",
        ),
        (
            "one-file rebuild: sync of the edited tree + build",
            f"{rebuild_seconds:.1f} s",
            (
                f"{rebuild_seconds / cold:.3f} of cold ({rebuild_seconds / build.seconds:.3f} of the package step); "
                f"sync {sync_seconds:.1f} s + build {rebuild.seconds:.1f} s (loading + analysis "
                f"{rebuild_phases[0]:.1f} s, execution {rebuild_phases[1]:.1f} s); edited {edited}; "
                f"ran: {_mnemonics(rebuild_ran)}"
            ),
        ),
        (
            "no-op build: nothing changed",
            f"{noop.seconds:.2f} s",
            f"{noop.seconds / cold:.3f} of cold: the floor under any rebuild; ran: {_mnemonics(by_mnemonic(noop)) or 'nothing'}",
        ),
        (
            "re-fetch floor: sync of the unchanged tree + no-op build",
            f"{resync_seconds + noop.seconds:.2f} s",
            (
                f"{(resync_seconds + noop.seconds) / cold:.3f} of cold: a one-file rebuild's least cost before "
                f"loading, analysis or any action (Bazel 4 does not watch the directory); sync {resync_seconds:.2f} s, "
                f"of which Bazel's own {tiny_sync_seconds:.2f} s (a sync of examples/tree_import/v1)"
            ),
        ),
        (
            "package bytes / payload bytes",
            f"{sizes.ratio:.4f}" if sizes.ratio is not None else "n/a",
            (
                f"package {sizes.package} B, payload {sizes.payload_stored} B stored, manifest.pb "
                f"{sizes.manifest_stored} B, zip structure {sizes.zip_structure} B"
            ),
        ),
        *probes,
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source_dir", type=pathlib.Path, help="the source tree (a directory, only read)")
    parser.add_argument("--target_dir", type=pathlib.Path, help="the target tree (a directory, only read)")
    parser.add_argument("--files", type=int, default=7000, help="without directories: generated files per tree")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work_dir", type=pathlib.Path, help="scratch directory (default: a new one, removed after)")
    args = parser.parse_args(argv)
    if bool(args.source_dir) != bool(args.target_dir):
        parser.error("give both --source_dir and --target_dir, or neither (a generated pair)")
    for directory in (args.source_dir, args.target_dir):
        if directory is not None and not directory.is_dir():
            parser.error(f"{directory}: not a directory")
    start = time.monotonic()
    release_bench.print_table(
        release_bench.in_scratch(args.work_dir, "rules_ota-scale.", lambda work: bench(work, args))
    )
    print(f"(whole benchmark: {time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
