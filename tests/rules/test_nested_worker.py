"""The patch and package actions give the same package bytes in persistent workers and as one-shot processes,
and a result a worker made is a cache hit for a build without workers (same action keys).

Three builds of //release:incremental_ota in one checkout copy (nested_bazel.py), each after
`bazel clean`: (1) default strategies, which run OtaFilePatch/OtaBootPatch/OtaPackage in workers,
filling a disk cache; (2) `--strategy=...=sandboxed` (`local` for the unsandboxed OtaPackage), no
cache: every patch and the package run as their own processes; (3) the same with the disk cache
of (1): every one of those spawns is a cache hit.
"""

from __future__ import annotations

import collections
import pathlib

from nested_bazel import NestedWorkspace, read_execution_log

TARGET = "//release:incremental_ota"
PACKAGE = "release/incremental_ota.zip"
PATCH_MNEMONICS = ("OtaFilePatch", "OtaBootPatch", "OtaPartitionPatch")
# OtaPackage is a worker too; without one it runs unsandboxed (`no-sandbox`), so `local`.
SANDBOXED = [f"--strategy={m}=sandboxed" for m in PATCH_MNEMONICS] + ["--strategy=OtaPackage=local"]
# What `sandboxed` resolves to is the machine's business, not the test's: linux-sandbox where Bazel
# may create namespaces, processwrapper-sandbox in a chroot or a container that forbids them,
# darwin-sandbox on macOS. Any of them is one sandboxed process per spawn, which is what is tested.
SANDBOX_RUNNERS = frozenset({"linux-sandbox", "processwrapper-sandbox", "darwin-sandbox"})


def _build(ws: NestedWorkspace, log: pathlib.Path, *flags: str) -> tuple[bytes, collections.Counter]:
    """Clean build; returns the package bytes and (mnemonic, runner, cache hit) counts of patch spawns."""
    ws.bazel("clean")
    ws.bazel("build", f"--execution_log_json_file={log}", *flags, TARGET)
    spawns = read_execution_log(log)
    runs = collections.Counter(
        (s["mnemonic"], s.get("runner", ""), bool(s.get("remoteCacheHit")))
        for s in spawns
        if s.get("mnemonic") in (*PATCH_MNEMONICS, "OtaPackage")
    )
    return ws.bin(PACKAGE).read_bytes(), runs


def test_workers_and_one_shot_processes_build_the_same_package(tmp_path: pathlib.Path) -> None:
    ws = NestedWorkspace.create(tmp_path, "ws")
    cache = f"--disk_cache={tmp_path / 'disk_cache'}"
    try:
        with_workers, worker_runs = _build(ws, tmp_path / "workers.log", cache)
        one_shot, one_shot_runs = _build(ws, tmp_path / "sandboxed.log", *SANDBOXED)
        cached, cached_runs = _build(ws, tmp_path / "cached.log", cache, *SANDBOXED)
    finally:
        ws.close()
    assert with_workers == one_shot == cached

    files = worker_runs[("OtaFilePatch", "worker", False)]
    assert files > 10 and worker_runs == {
        ("OtaFilePatch", "worker", False): files,
        ("OtaBootPatch", "worker", False): 1,
        ("OtaPackage", "worker", False): 1,
    }
    sandboxes = {runner for mnemonic, runner, _ in one_shot_runs if mnemonic != "OtaPackage"}
    assert len(sandboxes) == 1 and sandboxes <= SANDBOX_RUNNERS, one_shot_runs
    (sandbox,) = sandboxes
    assert one_shot_runs == {
        ("OtaFilePatch", sandbox, False): files,
        ("OtaBootPatch", sandbox, False): 1,
        ("OtaPackage", "local", False): 1,
    }
    assert cached_runs == {
        ("OtaFilePatch", "remote cache hit", True): files,
        ("OtaBootPatch", "remote cache hit", True): 1,
        ("OtaPackage", "remote cache hit", True): 1,
    }
