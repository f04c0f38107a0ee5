#!/usr/bin/env python3
"""Patch generation speed and memory: today's imgdiff/bsdiff against this tree's and bsdiff4's.

Builds (fixed seeds, the generators of bench/bench_boot_patch.py) a kernel Image of tens of MB
with a few percent of its functions changed, a ramdisk of thousands of files packed by our cpio
and gzip'd by zlib, and boot images holding both. Then, in one run (the machine's load changes
from run to run; only ratios within one run mean anything), each tool runs in a child process:

* imgdiff on the boot images: today's code (`git archive` of --baseline) against this tree's;
* BSDIFF40 on the kernel Image: bsdiff4's diff (the peer named by the issue) against this tree's;
* the suffix sort alone: bsdiff4's qsufsort (its diff against an empty target, where the match
  search has nothing to do) against libdivsufsort's 32-bit sort (pydivsufsort, when installed),
  which tells how much of a diff is the sort and how much a faster sort could save.

Every patch is applied (our bspatch for IMGDIFF2, Debian's bspatch for BSDIFF40) and compared
with the target. AOSP's C++ imgdiff cannot be built on this machine (no network to AOSP's
sources), so the issue's AOSP figures are not re-measured here.

Memory: "peak MB" is the largest single process's peak RSS (GNU time, i.e. wait4's ru_maxrss);
"tree MB" is the largest sum of PSS over the tool and all its child processes, sampled every
50 ms (PSS shares copy-on-write pages between a parent and its forked children fairly).

    PYTHONPATH=py python3 bench/bench_diff_speed.py [--scale 1.0] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_boot_patch as boot
from ota import gzipper

MB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
# The last commit before the diff engine ran diffs in child processes: "today" in the tables.
DEFAULT_BASELINE = "d9d3687"


@dataclass
class Run:
    seconds: float
    peak_mb: float  # largest single process
    tree_mb: float  # largest PSS sum over the process tree


def _children(pids: set[int]) -> set[int]:
    """`pids` and every process whose parent is among them (one /proc scan per generation)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = set(pids)
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            return found
        found |= more


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(argv: list[str], work: Path, env: dict[str, str]) -> Run:
    """Runs `argv` under /usr/bin/time (a fresh process, so its peak RSS is the tool's own and not
    this script's: Linux carries a parent's high-water mark into a child across exec) while a
    thread samples the PSS of the whole process tree."""
    report = work / "time.txt"
    start = time.perf_counter()
    child = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", "-o", str(report), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    tree_kb = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal tree_kb
        while not done.wait(0.05):
            tree_kb = max(tree_kb, sum(_pss_kb(pid) for pid in _children({child.pid})))

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = child.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({child.returncode}): {stderr.decode()[-2000:]}")
    return Run(elapsed, int(report.read_text().split()[-1]) / 1024, tree_kb / 1024)


# bsdiff4 as a library user calls it, in a thread with room for its recursive sort.
_PEER = textwrap.dedent("""
    import sys, threading, bsdiff4
    threading.stack_size(1 << 30)
    mode, old, new, patch = sys.argv[1:]
    def work():
        source = open(old, "rb").read()
        if mode == "diff":
            open(patch, "wb").write(bsdiff4.diff(source, open(new, "rb").read()))
        elif mode == "qsufsort":
            bsdiff4.diff(source, b"")
        else:
            import pydivsufsort
            pydivsufsort.divsufsort(source)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
""")


def peer(mode: str, old: Path, new: Path, patch: Path) -> list[str]:
    return [sys.executable, "-c", _PEER, mode, str(old), str(new), str(patch)]


def ours(tool: str, *args: Path) -> list[str]:
    return [sys.executable, "-m", f"ota.cli.{tool}", *map(str, args)]


def has_divsufsort() -> bool:
    try:
        import pydivsufsort  # noqa: F401
    except ImportError:
        return False
    return True


def extract_baseline(rev: str, into: Path) -> Path:
    """Today's py/ (at `rev`) unpacked under `into`, with its generated protos copied in."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "py"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    proto_dir = REPO / "py/ota/proto"
    for generated in proto_dir.glob("*_pb2.py"):
        (into / "py/ota/proto" / generated.name).write_bytes(generated.read_bytes())
    return into / "py"


@dataclass(frozen=True)
class Inputs:
    kernel: tuple[bytes, bytes]
    boot: tuple[bytes, bytes]
    largest_chunk: int  # bytes of the larger decompressed chunk (the kernel Image)


def build_inputs(scale: float, change: float) -> Inputs:
    rng = random.Random(20261202)
    isa = boot.make_isa(random.Random(0))
    kernel_v1 = boot.make_kernel(random.Random(1), isa, int(24 * MB * scale))
    kernel_v2 = boot.change_kernel(rng, isa, kernel_v1, change)
    images = (kernel_v1.render(), kernel_v2.render())
    tree_v1 = boot.make_ramdisk(random.Random(2), isa, max(50, int(3000 * scale)))
    ramdisks = (boot.pack_ramdisk(tree_v1), boot.pack_ramdisk(boot.change_ramdisk(rng, tree_v1, change)))
    boots = tuple(
        boot.boot_image(gzipper.compress(image), ramdisk) for image, ramdisk in zip(images, ramdisks, strict=False)
    )
    ramdisk_size = len(gzipper.parse_member(ramdisks[1], "ramdisk").inflated)
    return Inputs(images, boots, max(*map(len, images), ramdisk_size))  # type: ignore[arg-type]


def check(applied: Path, expected: bytes, what: str) -> None:
    if applied.read_bytes() != expected:
        raise SystemExit(f"{what}: the applied patch does not give the target")
    applied.unlink()


def one_round(inputs: Inputs, work: Path, baseline_py: Path) -> dict[str, tuple[Run, int]]:
    """tool -> (its run, its patch bytes or 0), every patch applied and checked."""
    env_now = dict(os.environ, PYTHONPATH=str(REPO / "py"))
    env_today = dict(os.environ, PYTHONPATH=str(baseline_py))
    files = {}
    for name, (v1, v2) in (("boot", inputs.boot), ("kernel", inputs.kernel)):
        files[name] = (work / f"{name}.v1", work / f"{name}.v2")
        files[name][0].write_bytes(v1)
        files[name][1].write_bytes(v2)
    out = work / "out"
    results: dict[str, tuple[Run, int]] = {}

    def timed(label: str, argv: list[str], env: dict[str, str], patch: Path | None) -> None:
        results[label] = (run_child(argv, work, env), patch.stat().st_size if patch else 0)
        print(f"  {label:<28} {results[label][0].seconds:7.1f} s", flush=True)

    boot_old, boot_new = files["boot"]
    for label, env in (("imgdiff today", env_today), ("imgdiff now", env_now)):
        patch = work / f"{label.replace(' ', '_')}.patch"
        timed(label, ours("imgdiff", boot_old, boot_new, patch), env, patch)
        subprocess.run(ours("bspatch", boot_old, out, patch), env=env_now, check=True)
        check(out, inputs.boot[1], label)
    kernel_old, kernel_new = files["kernel"]
    for label, argv, env in (
        ("bsdiff4.diff (peer)", peer("diff", kernel_old, kernel_new, work / "peer.patch"), env_now),
        ("bsdiff now", ours("bsdiff", kernel_old, kernel_new, work / "now.patch"), env_now),
    ):
        patch = work / ("peer.patch" if "peer" in label else "now.patch")
        timed(label, argv, env, patch)
        subprocess.run(["bspatch", str(kernel_old), str(out), str(patch)], check=True)
        check(out, inputs.kernel[1], label)
    timed("sort only: qsufsort 64-bit", peer("qsufsort", kernel_old, kernel_new, out), env_now, None)
    if has_divsufsort():
        timed("sort only: divsufsort 32-bit", peer("divsufsort", kernel_old, kernel_new, out), env_now, None)
    return results


def report(results: dict[str, tuple[Run, int]], inputs: Inputs) -> None:
    print(f"\n{'tool':<30} {'seconds':>8} {'peak MB':>8} {'tree MB':>8} {'patch bytes':>12}")
    for label, (run, size) in results.items():
        print(f"{label:<30} {run.seconds:>8.1f} {run.peak_mb:>8.0f} {run.tree_mb:>8.0f} {size:>12,}")
    today, now = results["imgdiff today"], results["imgdiff now"]
    chunk_mb = inputs.largest_chunk / MB
    print(
        f"\nimgdiff now/today: time {now[0].seconds / today[0].seconds:.2f}x, "
        f"tree memory {now[0].tree_mb / today[0].tree_mb:.2f}x, bytes {now[1] / today[1]:.4f}x; "
        f"memory per larger decompressed chunk ({chunk_mb:.1f} MB): today {today[0].tree_mb / chunk_mb:.1f}x, "
        f"now {now[0].tree_mb / chunk_mb:.1f}x"
    )
    peer_run, ours_run = results["bsdiff4.diff (peer)"], results["bsdiff now"]
    input_mb = len(inputs.kernel[0]) / MB
    print(
        f"bsdiff now/bsdiff4: time {ours_run[0].seconds / peer_run[0].seconds:.2f}x, "
        f"tree memory {ours_run[0].tree_mb / peer_run[0].tree_mb:.2f}x ({ours_run[0].tree_mb / input_mb:.1f}x the "
        f"{input_mb:.1f} MB input), bytes {ours_run[1] / peer_run[1]:.4f}x"
    )
    sort = results["sort only: qsufsort 64-bit"][0]
    print(
        f"qsufsort alone is {sort.seconds / peer_run[0].seconds:.0%} of bsdiff4's diff time "
        f"({sort.peak_mb:.0f} MB peak)"
    )
    if "sort only: divsufsort 32-bit" in results:
        fast = results["sort only: divsufsort 32-bit"][0]
        print(f"divsufsort/qsufsort: time {fast.seconds / sort.seconds:.2f}x, peak {fast.peak_mb / sort.peak_mb:.2f}x")
    print("AOSP's C++ imgdiff: not built here (its sources need network access); docs/performance.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (1.0: ~24 MB kernel, 3000 files)")
    parser.add_argument("--change", type=float, default=0.03, help="fraction of functions/files changed")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each printing its own ratios")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision whose py/ is 'today'")
    args = parser.parse_args()

    started = time.perf_counter()
    inputs = build_inputs(args.scale, args.change)
    print(
        f"inputs built in {time.perf_counter() - started:.1f}s: kernel Image {len(inputs.kernel[0]) / MB:.1f} MB, "
        f"boot image {len(inputs.boot[0]) / MB:.1f} MB; cores {len(os.sched_getaffinity(0))}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_diff_") as tmp:
        work = Path(tmp)
        baseline_py = extract_baseline(args.baseline, work)
        for number in range(1, args.repeat + 1):
            print(f"round {number} (load {os.getloadavg()[0]:.1f})")
            report(one_round(inputs, work, baseline_py), inputs)


if __name__ == "__main__":
    main()
