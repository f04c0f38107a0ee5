#!/usr/bin/env python3
"""How fast //release:incremental_ota builds with Bazel, cold, warm and from a remote cache.

Prints a table of ratios against named peers measured in the same run:

* cold: every OtaFilePatch/OtaBootPatch/OtaPackage action of the package, with both builds' images
  already built, against **a serial single-process pipeline** doing the same diffs on the same
  inputs with the same engine (bench/build_serial_pipeline.py, the ota_from_target_files way);
  the two packages must be byte-identical;
* warm: the rebuild after one system file changed (`build.prop` of v2), as a fraction of the cold
  build, with the actions that ran (expected: one OtaFilePatch, the v2 system manifest, the package);
* clone B: another copy at another path with a fresh output base and the remote cache A filled: its
  executed patch actions (expected 0) and its time against A's whole cold build (both start a Bazel
  server and fetch @rules_ota_pypi).

Not a test: numbers depend on the machine; run it by hand:
    bench/build_release_bench.py [--cache http|grpc] [--work_dir DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.cache import bep, execlog, servers, workspace  # noqa: E402 - after the repository root is on sys.path

PACKAGE = "//release:incremental_ota"
INPUTS = ["//release:v1", "//release:v2"]
PATCH_MNEMONICS = ("OtaFilePatch", "OtaBootPatch")
CHANGED_FILE = "release/src/build.v2.prop"


def executed(result: workspace.Result) -> collections.Counter:
    """Spawns that ran (not served by a cache), by mnemonic."""
    return collections.Counter(s.mnemonic for s in execlog.read_spawns(result.exec_log) if not s.remote_cache_hit)


def tool_pythonpath(tree: pathlib.Path, exec_log: pathlib.Path) -> str:
    """PYTHONPATH equal to what the file_patch tool sees: its runfiles' py/ and every @rules_ota_pypi package."""
    tool = next(s.args[0] for s in execlog.read_spawns(exec_log) if s.mnemonic in PATCH_MNEMONICS)
    runfiles = tree / f"{tool}.runfiles"
    paths = [runfiles / "rules_ota" / "py", *sorted(runfiles.glob("*/site-packages/*"))]
    return os.pathsep.join(str(p) for p in paths)


def serial_pipeline(tree: pathlib.Path, exec_log: pathlib.Path, out_dir: pathlib.Path) -> dict:
    """Runs build_serial_pipeline.py with Debian's python3 (the interpreter Bazel's tools use)."""
    env = {"PATH": "/bin:/usr/bin", "PYTHONPATH": tool_pythonpath(tree, exec_log), "PYTHONHASHSEED": "0"}
    start = time.monotonic()
    done = subprocess.run(
        [
            "/usr/bin/python3",
            str(REPO / "bench" / "build_serial_pipeline.py"),
            "--exec_log",
            str(exec_log),
            "--out_dir",
            str(out_dir),
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"serial pipeline failed:\n{done.stderr}")
    report = json.loads(done.stdout)
    report["seconds_process"] = time.monotonic() - start
    return report


def package_digest(result: workspace.Result) -> str:
    digests = bep.output_digests(result.bep)
    return next(v for k, v in digests.items() if k.startswith(PACKAGE + " ") and k.endswith(".zip"))


def must(result: workspace.Result, what: str) -> workspace.Result:
    if result.exit_code != 0:
        raise SystemExit(f"{what} failed (exit {result.exit_code}):\n" + workspace.tail(result.console))
    return result


def bench(work: pathlib.Path, cache: str, venv_root: pathlib.Path, python313: str) -> list[Row]:
    pid_dir = work / "pids"
    if cache == "grpc":
        server = servers.start_buildgrid(servers.buildgrid_venv(python313, venv_root), work, pid_dir)
    else:
        server = servers.start_nginx("/usr/sbin/nginx", work, pid_dir)
    flags = ["--disk_cache=", "--config=remote", f"--remote_cache={server.url}"]
    clients: list[workspace.Bazel] = []
    try:
        snapshot = work / "snapshot"  # A and B copy it: edits to the checkout meanwhile don't count
        workspace.copy_checkout(REPO, snapshot)
        tree_a = work / "a" / "rules_ota"
        shutil.copytree(snapshot, tree_a, symlinks=True)
        a = workspace.Bazel(tree_a, work / "roots" / "a", work / "logs", dict(os.environ))
        clients.append(a)
        inputs = must(a.run("build", "inputs", INPUTS, flags), "building the two builds' images")
        cold = must(a.run("build", "cold", [PACKAGE], flags), "cold package build")
        cold_ran = executed(cold)
        serial = serial_pipeline(tree_a, cold.exec_log, work / "serial")
        same = serial["package_sha256"] == package_digest(cold)

        with (tree_a / CHANGED_FILE).open("a") as prop:
            prop.write("ro.bench.warm_rebuild=1\n")
        warm = must(a.run("build", "warm", [PACKAGE], flags), "warm rebuild")
        warm_ran = executed(warm)

        tree_b = work / "elsewhere" / "b" / "rules_ota"
        shutil.copytree(snapshot, tree_b, symlinks=True)
        b = workspace.Bazel(tree_b, work / "roots" / "b", work / "logs", dict(os.environ))
        clients.append(b)
        clone_b = must(b.run("build", "clone-b", [PACKAGE], flags), "clone B build")
        b_ran = executed(clone_b)
    finally:
        for client in clients:
            client.shutdown()
        server.stop()

    patches = sum(cold_ran[m] for m in PATCH_MNEMONICS)
    a_total = inputs.seconds + cold.seconds
    return [
        (
            "cold: patch + package actions (Bazel, 2 jobs)",
            f"{cold.seconds:.1f} s",
            f"{patches} patch actions, {cold_ran['OtaPackage']} package; ran: {dict(cold_ran)}",
        ),
        (
            "serial single-process pipeline, same inputs",
            f"{serial['seconds_process']:.1f} s",
            (
                f"diffs {serial['seconds_patches']:.1f} s + package {serial['seconds_package']:.1f} s; "
                f"Bazel/serial = {cold.seconds / serial['seconds_process']:.2f}; "
                f"package bytes identical: {same}"
            ),
        ),
        (
            "warm: one system file changed",
            f"{warm.seconds:.1f} s",
            f"{warm.seconds / cold.seconds:.2f} of cold; ran: {dict(warm_ran)}",
        ),
        ("A whole cold build (server start, @rules_ota_pypi fetch, images, package)", f"{a_total:.1f} s", ""),
        (
            f"clone B, fresh output base, {cache} remote cache",
            f"{clone_b.seconds:.1f} s",
            (
                f"{clone_b.seconds / a_total:.2f} of A's; executed patch actions: "
                f"{sum(b_ran[m] for m in PATCH_MNEMONICS)}; ran: {dict(b_ran)}"
            ),
        ),
    ]


Row = tuple[str, str, str]


def in_scratch(work_dir: pathlib.Path | None, prefix: str, measure: Callable[[pathlib.Path], list[Row]]) -> list[Row]:
    """Runs `measure` in `work_dir`, or in a new directory under /var/tmp that is removed after."""
    work = work_dir or pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    try:
        return measure(work.resolve())
    finally:
        if work_dir is None:
            subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)  # Bazel leaves read-only trees
            shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list[Row]) -> None:
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {note}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", choices=["http", "grpc"], default="http")
    parser.add_argument("--work_dir", type=pathlib.Path, help="scratch directory (default: a new one, removed after)")
    parser.add_argument("--venv_root", type=pathlib.Path, default=pathlib.Path("/var/tmp/rules_ota-venvs"))
    parser.add_argument("--buildgrid_python", default=os.path.expanduser("~/.pyenv/versions/3.13.0/bin/python3"))
    args = parser.parse_args(argv)
    print_table(
        in_scratch(
            args.work_dir,
            "rules_ota-bench.",
            lambda work: bench(work, args.cache, args.venv_root, args.buildgrid_python),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
