"""Proves remote-cache reuse and reproducible packages against real servers; run by run_cache_checks.sh.

For each cache (BuildGrid over gRPC, nginx over HTTP), copy A of the checkout builds the targets and
fills the cache; copy B, at another path with a fresh output base, builds them again and must execute
none of the actions of the given mnemonics (every one a remote cache hit, read from Bazel's execution
log) and end with byte-identical outputs. Then copy C, at a third path with HOME elsewhere, another
TZ and locale, sandboxed, no network in actions and no cache at all, rebuilds (or tests) everything
and must produce the same bytes as A. Prints one PASS/FAIL line per check and `N passed, N failed`.

Uses only the standard library and Debian's /usr/bin/python3: it runs in CI before anything else is
installed into a Python.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import shutil
import signal
import sys
import time

from tests.cache import bep, execlog, servers, workspace
from tests.cache.checks import Checks

DEFAULT_TARGETS = ["//release:incremental_ota", "//release:full_ota"]
DEFAULT_MNEMONICS = ["OtaFilePatch", "OtaBootPatch", "OtaPackage"]


def _default_buildgrid_python() -> str:
    candidates = [
        os.environ.get("RULES_OTA_BUILDGRID_PYTHON", ""),
        os.path.expanduser("~/.pyenv/versions/3.13.0/bin/python3"),
        shutil.which("python3.13") or "",
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), "python3.13")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work_dir",
        type=pathlib.Path,
        required=True,
        help="empty scratch directory (copies, output bases, server stores, pids/)",
    )
    parser.add_argument("--targets", nargs="+", default=DEFAULT_TARGETS, help="targets to build")
    parser.add_argument(
        "--mnemonics",
        default=",".join(DEFAULT_MNEMONICS),
        help="comma-separated mnemonics whose every action must be a cache hit in B",
    )
    parser.add_argument("--caches", default="grpc,http", help="which caches to check: grpc, http")
    parser.add_argument(
        "--hermetic",
        choices=["test", "build", "off"],
        default="test",
        help="copy C runs `bazel test //...` (which builds the targets too), or only builds the targets",
    )
    parser.add_argument(
        "--buildgrid_python", default=_default_buildgrid_python(), help="Python >= 3.13 for BuildGrid's venv"
    )
    parser.add_argument(
        "--venv_root",
        type=pathlib.Path,
        default=pathlib.Path("/var/tmp/rules_ota-venvs"),
        help="where BuildGrid's venv is kept (reused while its lock is unchanged)",
    )
    parser.add_argument("--nginx", default="/usr/sbin/nginx")
    parser.add_argument("--bazel", default="bazel")
    return parser.parse_args(argv)


def base_env() -> dict[str, str]:
    """The caller's environment, without variables that would point Bazel at other caches or rcs."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BAZELISK_")}


def hermetic_env(work: pathlib.Path) -> dict[str, str]:
    """Environment of copy C: another HOME, TZ and locale; nothing else of the caller's shell."""
    home = work / "home-c"
    home.mkdir(exist_ok=True)
    keep = (
        "PATH",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "PIP_CERT",
        "PIP_DEFAULT_TIMEOUT",
        "PIP_CONFIG_FILE",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
    )
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HOME=str(home), TZ="Asia/Kolkata", LC_ALL="C", LANG="C", USER="nobody-in-particular")
    return env


class Run:
    """State shared by the phases: the copies, their Bazel clients, the checks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: pathlib.Path = args.work_dir.resolve()
        self.targets: list[str] = args.targets
        self.mnemonics = [m for m in args.mnemonics.split(",") if m]
        self.checks = Checks()
        self.clients: list[workspace.Bazel] = []
        self.repo = servers.REPO

    def client(self, name: str, path: str, env: dict[str, str]) -> workspace.Bazel:
        """A copy of the checkout at `work/<path>` with its own, fresh output root.

        Every copy comes from one snapshot taken at the start, so edits made to the checkout while
        the checks run cannot make the copies differ.
        """
        snapshot = self.work / "snapshot"
        if not snapshot.exists():
            workspace.copy_checkout(self.repo, snapshot)
        tree = self.work / path
        if not tree.exists():
            shutil.copytree(snapshot, tree, symlinks=True)
        bazel = workspace.Bazel(tree, self.work / "output-roots" / name, self.work / "logs", env, bazel=self.args.bazel)
        self.clients.append(bazel)
        return bazel

    def built(self, result: workspace.Result, what: str) -> bool:
        return self.checks.check(
            result.exit_code == 0,
            f"{what} exits 0 ({result.seconds:.1f} s)",
            ""
            if result.exit_code == 0
            else f"exit {result.exit_code}, {result.console}:\n" + workspace.tail(result.console),
        )

    def counts(self, result: workspace.Result) -> dict[str, execlog.Tally]:
        return execlog.tally(execlog.read_spawns(result.exec_log), self.mnemonics)

    @staticmethod
    def digests(result: workspace.Result) -> dict[str, str]:
        return bep.output_digests(result.bep)

    def check_outputs_present(self, digests: dict[str, str], what: str) -> bool:
        labels = {key.split(" ", 1)[0] for key in digests}
        missing = [t for t in self.targets if t not in labels]
        return self.checks.check(
            bool(digests) and not missing,
            f"{what}: every target has outputs",
            f"no outputs for {missing}" if missing else "",
        )

    def compare(self, reference: dict[str, str], other: dict[str, str], what: str) -> None:
        differing = [k for k in reference if other.get(k) != reference[k]]
        detail = "; ".join(f"{k}: {reference[k][:12]} vs {other.get(k, 'missing')[:12]}" for k in differing)
        if not differing:
            detail = (
                f"{len(reference)} files, e.g. {next(iter(reference.items()))[0]} "
                f"sha256 {next(iter(reference.values()))}"
                if reference
                else "no files"
            )
        self.checks.check(bool(reference) and not differing, what, detail)


def cache_round(
    run: Run, kind: str, server: servers.Server, builder_a: workspace.Bazel, first: bool
) -> dict[str, str] | None:
    """A fills the cache, B (another path, fresh output base) must get every action from it."""
    flags = ["--disk_cache=", "--config=remote", f"--remote_cache={server.url}"]  # .bazelrc's config
    if not first:  # A's outputs and action cache from the previous cache's round must not count
        builder_a.run("clean", f"a-{kind}-clean", [], [])
    result_a = builder_a.run("build", f"a-{kind}", run.targets, flags)
    if not run.built(result_a, f"[{kind}] A builds {' '.join(run.targets)} with {server.url}"):
        return None
    counts_a = run.counts(result_a)
    print(f"[{kind}] A: {execlog.format_tally(counts_a)}", flush=True)
    digests_a = run.digests(result_a)
    run.check_outputs_present(digests_a, f"[{kind}] A")

    builder_b = run.client(f"b-{kind}", f"elsewhere/b-{kind}/rules_ota", base_env())
    result_b = builder_b.run("build", f"b-{kind}", run.targets, flags)
    builder_b.shutdown()
    if not run.built(result_b, f"[{kind}] B (other path, fresh output base) builds with {server.url}"):
        return digests_a
    counts_b = run.counts(result_b)
    print(f"[{kind}] B: {execlog.format_tally(counts_b)}", flush=True)
    for mnemonic in run.mnemonics:
        a, b = counts_a[mnemonic], counts_b[mnemonic]
        run.checks.check(
            b.total > 0 and b.total == a.total and b.executed == 0,
            f"[{kind}] B executed 0 of its {b.total} {mnemonic} actions (A had {a.total}, {a.executed} executed)",
            f"{b.hits} hits, {b.executed} executed" if b.executed or not b.total else "",
        )
    run.compare(digests_a, run.digests(result_b), f"[{kind}] A and B outputs have the same SHA-256")
    return digests_a


def hermetic_round(run: Run, reference: dict[str, str]) -> None:
    """C: third path, HOME/TZ/locale changed, sandboxed, no network, no cache: same bytes as A."""
    builder_c = run.client("c", "third/place/c-hermetic", hermetic_env(run.work))
    # `local` only for what the BUILD files tag no-sandbox (loop devices, a nested Bazel); counted below.
    flags = [
        "--disk_cache=",
        "--remote_cache=",
        "--spawn_strategy=sandboxed,local",
        "--incompatible_strict_action_env",
        "--sandbox_default_allow_network=false",
    ]
    command, targets = ("test", ["//..."]) if run.args.hermetic == "test" else ("build", run.targets)
    result = builder_c.run(command, "c-hermetic", targets, flags)
    builder_c.shutdown()
    env = hermetic_env(run.work)
    run.built(
        result,
        f"[hermetic] C `bazel {command} {' '.join(targets)}` with HOME={env['HOME']}, "
        f"TZ={env['TZ']}, LC_ALL={env['LC_ALL']}, sandboxed, no network, no cache",
    )
    if result.exit_code not in (0, 3):  # 3: built, but a test failed; the packages still compare
        return
    counts = run.counts(result)
    print(f"[hermetic] C: {execlog.format_tally(counts)}", flush=True)
    runners = collections.Counter(s.runner for s in execlog.read_spawns(result.exec_log))
    print(f"[hermetic] C spawns by runner: {dict(sorted(runners.items()))}", flush=True)
    run.checks.check(
        all(t.total > 0 and t.hits == 0 for t in counts.values()),
        "[hermetic] C executed every counted action itself (nothing from a cache)",
    )
    run.compare(reference, run.digests(result), "[hermetic] A and C outputs have the same SHA-256")


def start_server(run: Run, kind: str) -> servers.Server | None:
    pid_dir = run.work / "pids"
    try:
        if kind == "grpc":
            start = time.monotonic()
            venv = servers.buildgrid_venv(run.args.buildgrid_python, run.args.venv_root)
            print(f"[grpc] BuildGrid venv {venv} ready in {time.monotonic() - start:.1f} s", flush=True)
            server = servers.start_buildgrid(venv, run.work, pid_dir)
        elif kind == "http":
            server = servers.start_nginx(run.args.nginx, run.work, pid_dir)
        else:
            raise ValueError(f"unknown cache kind {kind!r} (grpc or http)")
    except Exception as error:  # noqa: BLE001 - any failure to start is one failed check, not a crash
        run.checks.check(False, f"[{kind}] cache server starts", str(error))
        return None
    run.checks.check(True, f"[{kind}] cache server {server.name} listens on {server.url} (pid {server.process.pid})")
    return server


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too
    run = Run(args)
    started = time.monotonic()
    reference: dict[str, str] | None = None
    try:
        builder_a = run.client("a", "a/rules_ota", base_env())
        for index, kind in enumerate(k for k in args.caches.split(",") if k):
            server = start_server(run, kind)
            if server is None:
                continue
            try:
                digests = cache_round(run, kind, server, builder_a, first=index == 0)
                reference = reference or digests
            finally:
                server.stop()
        if args.hermetic != "off":
            if reference is None:
                result = builder_a.run("build", "a-local", run.targets, ["--disk_cache=", "--remote_cache="])
                if run.built(result, "A builds without a cache (reference for C)"):
                    reference = run.digests(result)
            if reference is not None:
                hermetic_round(run, reference)
    finally:
        for client in run.clients:
            client.shutdown()
    print(f"cache checks took {time.monotonic() - started:.0f} s")
    print(run.checks.summary())
    return 0 if run.checks.failed == 0 and run.checks.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
