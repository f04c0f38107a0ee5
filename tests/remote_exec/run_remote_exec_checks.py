"""Proves remote execution on BuildGrid; run by tests/remote_exec/run_remote_exec_checks.sh.

1. Copy L of the checkout builds the targets locally (persistent workers, no cache): the reference
   bytes, and the toolchain identity its pip hub measured.
2. PostgreSQL, BuildGrid (Execution + Bots, SQL scheduler) and two bots workers start on 127.0.0.1;
   each worker advertises the toolchain identity measured on its own interpreter.
3. R, L's checkout after `bazel clean`, builds with `--config=remote_exec`: every action of the
   counted mnemonics must have run remotely (Bazel's execution log), on the workers, and the
   packages must equal L's byte for byte.
4. Copy B, at a third path with a fresh output base, builds again: 0 actions executed.

Prints one PASS/FAIL line per check, the per-action cost of the one-shot runs on the workers
against the local persistent workers, and `N passed, N failed`. Standard library only, like
tests/cache/run_cache_checks.py, whose helpers it reuses.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time

from tests.cache import execlog, run_cache_checks, servers, workspace
from tests.remote_exec import engine

MNEMONICS = ["OtaFilePatch", "OtaBootPatch", "OtaPartitionPatch", "OtaPackage", "OtaSign"]
# The mnemonics whose actions declare `supports-workers`: locally each runs in a persistent worker.
WORKER_MNEMONICS = ("OtaFilePatch", "OtaBootPatch", "OtaPartitionPatch", "OtaFilePatchShard", "OtaPackage")
INSTANCE = "rules-ota-ci"
TOOLCHAIN_PROPERTY = "rules-ota-toolchain"
_NOBODY = 65534


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", type=pathlib.Path, required=True, help="empty scratch directory")
    parser.add_argument("--targets", nargs="+", default=run_cache_checks.DEFAULT_TARGETS)
    parser.add_argument("--mnemonics", default=",".join(MNEMONICS), help="every action of these must run remotely")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--buildgrid_python", default=run_cache_checks._default_buildgrid_python())
    parser.add_argument("--venv_root", type=pathlib.Path, default=pathlib.Path("/var/tmp/rules_ota-venvs"))
    parser.add_argument("--bazel", default="bazel")
    return parser.parse_args(argv)


def remote_flags(executor: str, identity_digest: str) -> list[str]:
    """What a user adds to `--config=remote_exec` (.bazelrc): the engine, its instance, the identity."""
    return [
        "--disk_cache=",
        "--config=remote_exec",
        f"--remote_executor={executor}",
        f"--remote_instance_name={INSTANCE}",
        f"--remote_default_exec_properties={TOOLCHAIN_PROPERTY}={identity_digest}",
    ]


def output_base(bazel: workspace.Bazel) -> pathlib.Path:
    info = subprocess.run(
        bazel._startup() + ["info", "output_base"],
        cwd=bazel.workspace,
        env=bazel.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return pathlib.Path(info.stdout.strip())


def client_identity(base: pathlib.Path) -> str:
    """The digest in the name of the client's @rules_ota_pypi//:toolchain_identity file (its action keys')."""
    found = sorted((base / "external" / "rules_ota_pypi" / "toolchain_identity").glob("*.json"))
    if len(found) != 1:
        raise RuntimeError(f"expected one toolchain identity file in {base}/external/rules_ota_pypi, found {found}")
    return found[0].stem


def worker_identity(base: pathlib.Path, scratch: pathlib.Path) -> str:
    """The identity of the workers' toolchain: py/ota/actions/toolchain_identity.py run by the workers'
    /usr/bin/python3 with the hub's packages first on sys.path, as bazel/pip.bzl runs it (a worker
    gets the hub's files as action inputs; the interpreter and its zlib are the worker's own)."""
    hub = base / "external" / "rules_ota_pypi" / "site-packages"
    path = [str(servers.REPO / "py")] + sorted(str(p) for p in hub.iterdir())
    done = subprocess.run(
        ["/usr/bin/python3", "-m", "ota.actions.toolchain_identity", str(scratch)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(path)},
        capture_output=True,
        text=True,
        check=True,
    )
    return pathlib.Path(done.stdout.strip()).stem


def lock_down(path: pathlib.Path) -> None:
    """0700 on a client's directory: the workers' actions run as `nobody` and must not reach it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def nobody_can_read(path: pathlib.Path) -> bool:
    if os.geteuid() != 0:
        return True  # not root: actions run as the caller; the check below reports it
    probe = subprocess.run(
        ["/usr/bin/python3", "-c", f"import os; os.listdir({str(path)!r})"],
        user=_NOBODY,
        group=_NOBODY,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def worker_records(workers: list[engine.Worker]) -> dict[str, tuple[str, dict]]:
    """{first output path: (worker name, its actions.jsonl record)} over every worker."""
    records: dict[str, tuple[str, dict]] = {}
    for worker in workers:
        if not worker.actions_log.exists():
            continue
        for line in worker.actions_log.read_text().splitlines():
            record = json.loads(line)
            for output in record["outputs"]:
                records[output] = (worker.directory.name, record)
    return records


def local_action_seconds(profile: pathlib.Path, spawns: list[execlog.Spawn]) -> dict[str, list[float]]:
    """Per mnemonic, the durations of the local build's actions, from Bazel's JSON trace profile.

    A profile event names the action by its progress message, which the execution log also
    records; Bazel 4.2.3's execution log itself has no timings."""
    events: dict[str, float] = {}
    with gzip.open(profile, "rt", encoding="utf-8") as stream:
        trace = json.load(stream)
    for event in trace.get("traceEvents", trace if isinstance(trace, list) else []):
        if event.get("cat") == "action processing" and "dur" in event:
            events[event.get("name", "")] = event["dur"] / 1e6
    by_mnemonic: dict[str, list[float]] = collections.defaultdict(list)
    for spawn in spawns:
        seconds = events.get(spawn.progress)
        if seconds is not None:
            by_mnemonic[spawn.mnemonic].append(seconds)
    return by_mnemonic


def report_costs(local: dict[str, list[float]], remote: dict[str, list[dict]]) -> None:
    """Median seconds per action: local persistent worker vs the remote one-shot run."""
    for mnemonic in MNEMONICS:
        records = remote.get(mnemonic, [])
        if not records:
            continue
        parts = {k: statistics.median(r[k] for r in records) for k in ("fetch_s", "exec_s", "upload_s")}
        here = local.get(mnemonic)
        local_text = f"local {statistics.median(here):.2f} s" if here else "local n/a"
        print(
            f"cost per {mnemonic} action (median of {len(records)}): {local_text} "
            f"({'persistent worker' if mnemonic in WORKER_MNEMONICS else 'one process'}); remote one-shot "
            f"{parts['exec_s']:.2f} s running + {parts['fetch_s']:.2f} s input fetch + {parts['upload_s']:.2f} s upload",
            flush=True,
        )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.mnemonics = ",".join(m for m in args.mnemonics.split(",") if m)
    run = run_cache_checks.Run(args)
    work = run.work
    work.chmod(0o711)  # postgres and the actions (`nobody`) reach their own directories only
    for private in ("local", "again", "output-roots", "logs"):
        lock_down(work / private)
    pid_dir = work / "pids"
    started = time.monotonic()
    services: list[servers.Server] = []
    try:
        builder_l = run.client("l", "local/rules_ota", run_cache_checks.base_env())
        lock_down(work / "snapshot")
        profile = work / "logs" / "l.profile.json.gz"
        result_l = builder_l.run(
            "build", "l", run.targets, ["--disk_cache=", "--remote_cache=", f"--profile={profile}"]
        )
        if not run.built(result_l, f"L builds {' '.join(run.targets)} locally (reference)"):
            return 1
        reference = run.digests(result_l)
        run.check_outputs_present(reference, "L")
        base = output_base(builder_l)
        identity = client_identity(base)

        try:
            venv = servers.buildgrid_venv(args.buildgrid_python, args.venv_root)
            postgres, database = engine.start_postgres(work, pid_dir)
            services.append(postgres)
            buildgrid = engine.start_buildgrid(venv, work, pid_dir, database, INSTANCE)
            services.append(buildgrid)
            worker_id = worker_identity(base, work / "workers" / "identity")
            workers = engine.start_workers(
                venv,
                work,
                pid_dir,
                buildgrid.url.removeprefix("grpc://"),
                INSTANCE,
                {"OSFamily": "linux", TOOLCHAIN_PROPERTY: worker_id},
                args.workers,
            )
            services += [w.server for w in workers]
        except Exception as error:  # noqa: BLE001 - one failed check, not a crash
            run.checks.check(False, "the engine starts (PostgreSQL, BuildGrid, workers)", str(error))
            return 1
        run.checks.check(
            True,
            f"PostgreSQL (pid {postgres.process.pid}), BuildGrid Execution+Bots on {buildgrid.url} "
            f"(pid {buildgrid.process.pid}) and {len(workers)} workers run",
        )
        run.checks.check(
            worker_id == identity,
            f"the workers advertise {TOOLCHAIN_PROPERTY}={worker_id[:16]}…, the identity of L's actions",
            "" if worker_id == identity else f"client {identity}",
        )
        run.checks.check(
            not nobody_can_read(work / "local" / "rules_ota"),
            "an action on a worker (user nobody) cannot read the client's checkout",
        )

        # R: L's checkout and output base after `bazel clean` (no outputs, no action cache; the
        # external repositories stay, which spares a second pip install of the hub).
        flags = remote_flags(buildgrid.url, identity)
        builder_l.run("clean", "r-clean", [], [])
        result_r = builder_l.run("build", "r", run.targets, flags)
        builder_l.shutdown()
        if run.built(result_r, f"R (L after bazel clean) builds with --config=remote_exec on {buildgrid.url}"):
            spawns_r = list(execlog.read_spawns(result_r.exec_log))
            spawns_l = list(execlog.read_spawns(result_l.exec_log))
            records = worker_records(workers)
            remote_records: dict[str, list[dict]] = collections.defaultdict(list)
            for mnemonic in run.mnemonics:
                mine = [s for s in spawns_r if s.mnemonic == mnemonic]
                in_l = sum(s.mnemonic == mnemonic for s in spawns_l)
                local = [s for s in mine if s.runner != "remote" or s.remote_cache_hit]
                ran = [next((records[o][1] for o in s.declared if o in records), None) for s in mine]
                remote_records[mnemonic] = [r for r in ran if r is not None]
                unseen = ran.count(None)
                run.checks.check(
                    len(mine) == in_l and not local and not unseen,
                    f"R ran all {len(mine)} {mnemonic} actions remotely, on the workers (L had {in_l})"
                    + ("" if mine else ": none in these targets"),
                    f"{len(local)} not remote ({sorted({s.runner for s in local})}), {unseen} not in a worker's log"
                    if local or unseen or len(mine) != in_l
                    else "",
                )
            per_worker = {
                w.directory.name: len(w.actions_log.read_text().splitlines()) if w.actions_log.exists() else 0
                for w in workers
            }
            run.checks.check(all(per_worker.values()), f"every worker ran actions ({per_worker} actions)")
            run.compare(reference, run.digests(result_r), "L (local) and R (remote execution) packages are identical")
            report_costs(local_action_seconds(profile, spawns_l), remote_records)
            print(
                f"L (local, fetching the external repositories too) {result_l.seconds:.1f} s; "
                f"R (remote execution, repositories kept) {result_r.seconds:.1f} s",
                flush=True,
            )

        builder_b = run.client("b", "again/rules_ota", run_cache_checks.base_env())
        result_b = builder_b.run("build", "b", run.targets, flags)
        builder_b.shutdown()
        if run.built(result_b, "B (third path, fresh output base) builds with --config=remote_exec"):
            spawns_b = list(execlog.read_spawns(result_b.exec_log))
            executed = [s for s in spawns_b if not s.remote_cache_hit]
            run.checks.check(
                bool(spawns_b) and not executed,
                f"B executed 0 of its {len(spawns_b)} actions (all from the remote cache)",
                f"executed: {collections.Counter(s.mnemonic for s in executed)}" if executed else "",
            )
            run.compare(reference, run.digests(result_b), "L and B packages are identical")
    finally:
        for client in run.clients:
            client.shutdown()
        for service in reversed(services):
            service.stop()
    print(f"remote-execution checks took {time.monotonic() - started:.0f} s")
    print(run.checks.summary())
    return 0 if run.checks.failed == 0 and run.checks.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
