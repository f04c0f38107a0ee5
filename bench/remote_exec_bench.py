#!/usr/bin/env python3
"""A release-scale incremental package built locally (--jobs=2) and on BuildGrid with N workers.

Same run, same inputs: the release generator of bench/build_scale_bench.py writes a package
`//scale` (two builds of one system tree, a few percent of the files changed, the large boot
images of //release) into a scratch copy of the checkout; then

1. a local output root builds both builds' images (not timed), then //scale:incremental_ota
   with `--jobs=2` and persistent workers (timed);
2. PostgreSQL, BuildGrid and `--workers` test workers (tests/remote_exec/engine.py) start, and a
   second output root builds the images remotely (not timed), then the package with
   `--config=remote_exec` (timed); both packages must be byte-identical;
3. from the remote build's execution log and the workers' timings: total work, the critical
   path, and what N workers would give (between max(path, work/N) and work/N + path).

Not a test: numbers depend on the machine and its load. Run it by hand, e.g.
    bench/remote_exec_bench.py --files 3000 --total_bytes 400000000
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import build_release_bench as release_bench  # noqa: E402 - after the repository root is on sys.path
from bench import build_scale_bench as scale_bench  # noqa: E402
from tests.cache import bep, execlog, run_cache_checks, servers, workspace  # noqa: E402
from tests.remote_exec import engine  # noqa: E402
from tests.remote_exec import run_remote_exec_checks as checks  # noqa: E402
from tests.remote_exec.critical_path import critical_path  # noqa: E402

_WORKER_ESTIMATES = (1, 2, 4, 8, 16, 32, 100)


def package_digest(result: workspace.Result) -> str:
    return next(v for k, v in bep.output_digests(result.bep).items() if k.endswith(".zip"))


def bench(work: pathlib.Path, args: argparse.Namespace) -> list[release_bench.Row]:
    entries = scale_bench.layout(args.files, args.total_bytes, args.changed, args.seed, args.max_diff_size)
    tree = work / "scale" / "rules_ota"
    workspace.copy_checkout(REPO, tree)
    (tree / "scale").mkdir()
    (tree / "scale" / "BUILD").write_text(scale_bench.build_file(entries, args.chunks, args.max_diff_size))
    env = dict(os.environ)
    local = workspace.Bazel(tree, work / "root-local", work / "logs", env)
    remote = workspace.Bazel(tree, work / "root-remote", work / "logs", env)
    images, package = ["//scale:v1", "//scale:v2"], ["//scale:incremental_ota"]
    services: list[servers.Server] = []
    try:
        flags = ["--disk_cache=", "--remote_cache=", "--jobs=2"]
        release_bench.must(local.run("build", "local-images", images, flags), "local images")
        built_local = release_bench.must(local.run("build", "local-package", package, flags), "local package")
        base = checks.output_base(local)
        identity = checks.client_identity(base)
        local.shutdown()

        venv = servers.buildgrid_venv(args.buildgrid_python, args.venv_root)
        pid_dir = work / "pids"
        postgres, database = engine.start_postgres(work, pid_dir)
        services.append(postgres)
        buildgrid = engine.start_buildgrid(venv, work, pid_dir, database, checks.INSTANCE)
        services.append(buildgrid)
        properties = {"OSFamily": "linux", checks.TOOLCHAIN_PROPERTY: identity}
        address = buildgrid.url.removeprefix("grpc://")
        workers = engine.start_workers(venv, work, pid_dir, address, checks.INSTANCE, properties, args.workers)
        services += [w.server for w in workers]

        flags = checks.remote_flags(buildgrid.url, identity)
        release_bench.must(remote.run("build", "remote-images", images, flags), "remote images")
        for worker in workers:  # only the package build's actions count below (the log is O_APPEND)
            worker.actions_log.write_text("")
        built_remote = release_bench.must(remote.run("build", "remote-package", package, flags), "remote package")
    finally:
        local.shutdown()
        remote.shutdown()
        for service in reversed(services):
            service.stop()

    spawns = list(execlog.read_spawns(built_remote.exec_log))
    records = checks.worker_records(workers)

    def busy(spawn: execlog.Spawn) -> float:
        found = next((records[o][1] for o in spawn.declared if o in records), None)
        return found["fetch_s"] + found["exec_s"] + found["upload_s"] if found else 0.0

    def running(spawn: execlog.Spawn) -> float:
        found = next((records[o][1] for o in spawn.declared if o in records), None)
        return found["exec_s"] if found else 0.0

    path = critical_path(spawns, busy)
    path_running = critical_path(spawns, running)
    by_mnemonic = collections.defaultdict(float)
    for spawn in spawns:
        by_mnemonic[spawn.mnemonic] += busy(spawn)
    top = sorted(by_mnemonic.items(), key=lambda kv: -kv[1])[:4]
    chain = " -> ".join(f"{spawns[i].mnemonic} {busy(spawns[i]):.1f} s" for i in path.chain)
    changed = [f for f in entries if f["changed"]]
    rows: list[release_bench.Row] = [
        (
            "release",
            f"{len(entries)} files",
            (
                f"{sum(f['size'] for f in entries) / 2**30:.2f} GiB; {len(changed)} changed "
                f"({sum(f['size'] for f in changed) / 2**20:.0f} MiB)"
            ),
        ),
        ("package, local --jobs=2 (persistent workers)", f"{built_local.seconds:.1f} s", ""),
        (
            f"package, remote execution, {len(workers)} workers",
            f"{built_remote.seconds:.1f} s",
            (
                f"remote/local = {built_remote.seconds / built_local.seconds:.2f}; package bytes identical: "
                f"{package_digest(built_local) == package_digest(built_remote)}"
            ),
        ),
        (
            "total work on the workers",
            f"{path.work:.1f} s",
            f"{len(spawns)} spawns; running the commands alone {path_running.work:.1f} s; "
            + ", ".join(f"{m} {s:.1f} s" for m, s in top),
        ),
        ("critical path", f"{path.seconds:.1f} s", chain),
    ]
    for n in _WORKER_ESTIMATES:
        low, high = path.estimate(n)
        rows.append((f"estimate with {n} workers", f"{low:.1f} s", f"at most {high:.1f} s (scheduling, no transfers)"))
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--total_bytes", type=int, default=400_000_000)
    parser.add_argument("--changed", type=float, default=0.03, help="fraction of files that change")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=8, help="generator actions for the unchanged files")
    parser.add_argument("--max_diff_size", type=int, default=256 << 20, help="as in bench/build_scale_bench.py")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--buildgrid_python", default=run_cache_checks._default_buildgrid_python())
    parser.add_argument("--venv_root", type=pathlib.Path, default=pathlib.Path("/var/tmp/rules_ota-venvs"))
    parser.add_argument("--work_dir", type=pathlib.Path, help="scratch directory (default: a new one, removed after)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    release_bench.print_table(
        release_bench.in_scratch(args.work_dir, "rules_ota-remote-scale.", lambda work: bench(work, args))
    )
    print(f"(whole benchmark: {time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
