#!/usr/bin/env python3
"""Patch generation speed and memory: today's imgdiff against this tree's, and this tree's BSDIFF40
diff against bsdiff4's, with the ratios of the goals of docs/performance.md.

Builds (fixed seeds, the generators of bench/bench_boot_patch.py) a kernel Image of tens of MB
with a few percent of its functions changed, a ramdisk of thousands of files packed by our cpio
and gzip'd by zlib, and boot images holding both. Then, in one run (the machine's load changes
from run to run; only ratios within one run mean anything), each tool runs in a child process:

* imgdiff on the boot images: today's code (`git archive` of --baseline) against this tree's;
* BSDIFF40 on the kernel Image (a large ELF-like file): bsdiff4's diff against this tree's
  `bsdiff` tool (libdivsufsort's sort and ota/native/bsdiff_scan.c).

This tree's code must run its compiled diff: the script stops if ota.actions.make_bsdiff.engine() is not
"native" (build the library beside its module first, docs/performance.md says how).

With --aosp_imgdiff (and --aosp_bsdiff), AOSP's own C++ tools, built by
bench/build_aosp_imgdiff.sh (docs/performance.md says from which sources), run in the same
round on the same inputs, timed the same way: imgdiff on the boot images, bsdiff on the kernel
Image. The script then prints this tree's ratios to AOSP's and the goal "wall <= 1.2x AOSP's".

Every patch is applied (our bspatch for IMGDIFF2, Debian's bspatch for BSDIFF40) and compared
with the target.

Time: wall seconds, and CPU seconds (user + system of the tool and the children it waited for),
which other builds on a shared machine disturb less.

Memory: "peak MB" is the largest single process's peak RSS (GNU time, i.e. wait4's ru_maxrss);
"tree MB" is the largest sum of PSS over the tool and all its child processes, sampled every
50 ms (PSS shares copy-on-write pages between a parent and its forked children fairly).

    PYTHONPATH=py python3 bench/bench_diff_speed.py [--scale 1.0] [--repeat 2] \
        [--aosp_imgdiff BUILD/imgdiff] [--aosp_bsdiff BUILD/bsdiff]

The goals it checks (each a ratio within one run): imgdiff at most 0.25 times today's time, its
peak memory at most 10 times the larger decompressed chunk (the largest process's, as the issue
measured it; the tree's is checked too), its patch at most 1.005 times today's bytes; BSDIFF40
at least 3 times faster than bsdiff4's diff, its peak at most 5 times the input (old plus new),
its patch at most 1.005 times bsdiff4's bytes.
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
from ota.format import gzipper

MB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
# The last commit whose diffs all ran bsdiff4 (before the compiled diff): "today" in the tables.
DEFAULT_BASELINE = "410b634"


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system, waited-for children included
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
        ["/usr/bin/time", "-f", "%U %S %M", "-o", str(report), *argv],
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
    user, system, peak_kb = report.read_text().split()[-3:]
    return Run(elapsed, float(user) + float(system), int(peak_kb) / 1024, tree_kb / 1024)


# bsdiff4 as a library user calls it, in a thread with room for its recursive sort.
_PEER = textwrap.dedent("""
    import sys, threading, bsdiff4
    threading.stack_size(1 << 30)
    mode, old, new, patch = sys.argv[1:]
    def work():
        source = open(old, "rb").read()
        open(patch, "wb").write(bsdiff4.diff(source, open(new, "rb").read()))
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
""")


def peer(old: Path, new: Path, patch: Path) -> list[str]:
    return [sys.executable, "-c", _PEER, "diff", str(old), str(new), str(patch)]


def ours(tool: str, *args: Path) -> list[str]:
    return [sys.executable, "-m", f"ota.cli.{tool}", *map(str, args)]


def engine_of(env: dict[str, str]) -> str:
    """ota.actions.make_bsdiff.engine() as the tools see it under `env`."""
    probe = [sys.executable, "-c", "from ota.actions import make_bsdiff; print(make_bsdiff.engine())"]
    return subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip()


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
    ramdisks = (
        boot.pack_ramdisk(tree_v1),
        boot.pack_ramdisk(boot.change_ramdisk(rng, tree_v1, change)),
    )
    boots = tuple(
        boot.boot_image(gzipper.compress(image), ramdisk) for image, ramdisk in zip(images, ramdisks, strict=False)
    )
    ramdisk_size = len(gzipper.parse_member(ramdisks[1], "ramdisk").inflated)
    return Inputs(images, boots, max(*map(len, images), ramdisk_size))  # type: ignore[arg-type]


def check(applied: Path, expected: bytes, what: str) -> None:
    if applied.read_bytes() != expected:
        raise SystemExit(f"{what}: the applied patch does not give the target")
    applied.unlink()


@dataclass(frozen=True)
class AospTools:
    """AOSP's C++ binaries to measure beside ours, each optional."""

    imgdiff: Path | None = None
    bsdiff: Path | None = None


AOSP_IMGDIFF = "imgdiff AOSP (C++)"
AOSP_BSDIFF = "bsdiff AOSP (C++)"


def one_round(inputs: Inputs, work: Path, baseline_py: Path, aosp: AospTools) -> dict[str, tuple[Run, int]]:
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
        results[label] = (
            run_child(argv, work, env),
            patch.stat().st_size if patch else 0,
        )
        run = results[label][0]
        print(
            f"  {label:<28} {run.seconds:7.1f} s wall, {run.cpu_seconds:7.1f} s CPU",
            flush=True,
        )

    boot_old, boot_new = files["boot"]
    imgdiffs = [
        (label, ours("imgdiff", boot_old, boot_new, work / f"{label.replace(' ', '_')}.patch"), env)
        for label, env in (("imgdiff today", env_today), ("imgdiff now", env_now))
    ]
    if aosp.imgdiff:
        imgdiffs.append(
            (AOSP_IMGDIFF, [str(aosp.imgdiff), str(boot_old), str(boot_new), str(work / "aosp.patch")], env_now)
        )
    for label, argv, env in imgdiffs:
        patch = Path(argv[-1])
        timed(label, argv, env, patch)
        subprocess.run(ours("bspatch", boot_old, out, patch), env=env_now, check=True)
        check(out, inputs.boot[1], label)
    kernel_old, kernel_new = files["kernel"]
    bsdiffs = [
        ("bsdiff4.diff (peer)", peer(kernel_old, kernel_new, work / "peer.patch")),
        ("bsdiff now", ours("bsdiff", kernel_old, kernel_new, work / "now.patch")),
    ]
    if aosp.bsdiff:
        bsdiffs.append(
            (AOSP_BSDIFF, [str(aosp.bsdiff), str(kernel_old), str(kernel_new), str(work / "aosp_bsdiff.patch")])
        )
    for label, argv in bsdiffs:
        patch = Path(argv[-1])
        timed(label, argv, env_now, patch)
        subprocess.run(["bspatch", str(kernel_old), str(out), str(patch)], check=True)
        check(out, inputs.kernel[1], label)
    return results


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(results: dict[str, tuple[Run, int]], inputs: Inputs) -> None:
    print(f"\n{'tool':<30} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'tree MB':>8} {'patch bytes':>12}")
    for label, (run, size) in results.items():
        print(
            f"{label:<30} {run.seconds:>8.1f} {run.cpu_seconds:>8.1f} {run.peak_mb:>8.0f} {run.tree_mb:>8.0f} {size:>12,}"
        )
    today, now = results["imgdiff today"], results["imgdiff now"]
    chunk_mb = inputs.largest_chunk / MB
    time_ratio = now[0].seconds / today[0].seconds
    cpu_ratio = now[0].cpu_seconds / today[0].cpu_seconds
    bytes_ratio = now[1] / today[1]
    print(
        f"\nimgdiff now/today: time {time_ratio:.2f}x (goal <= 0.25x: {_verdict(time_ratio <= 0.25)}; "
        f"CPU {cpu_ratio:.2f}x, the same goal: {_verdict(cpu_ratio <= 0.25)}), "
        f"bytes {bytes_ratio:.4f}x (goal <= 1.005x: {_verdict(bytes_ratio <= 1.005)}), "
        f"peak {now[0].peak_mb / today[0].peak_mb:.2f}x, tree {now[0].tree_mb / today[0].tree_mb:.2f}x"
    )
    print(
        f"imgdiff memory per larger decompressed chunk ({chunk_mb:.1f} MB): peak today "
        f"{today[0].peak_mb / chunk_mb:.1f}x, now {now[0].peak_mb / chunk_mb:.1f}x; tree today "
        f"{today[0].tree_mb / chunk_mb:.1f}x, now {now[0].tree_mb / chunk_mb:.1f}x "
        f"(goal <= 10x, on the peak: {_verdict(now[0].peak_mb <= 10 * chunk_mb)}; "
        f"on the tree: {_verdict(now[0].tree_mb <= 10 * chunk_mb)})"
    )
    peer_run, ours_run = results["bsdiff4.diff (peer)"], results["bsdiff now"]
    old_mb = len(inputs.kernel[0]) / MB
    input_mb = (len(inputs.kernel[0]) + len(inputs.kernel[1])) / MB
    speedup = peer_run[0].seconds / ours_run[0].seconds
    bytes_ratio = ours_run[1] / peer_run[1]
    print(
        f"BSDIFF40 on the kernel Image: {speedup:.2f}x faster than bsdiff4 (goal >= 3x: {_verdict(speedup >= 3)}; "
        f"CPU {peer_run[0].cpu_seconds / ours_run[0].cpu_seconds:.2f}x), "
        f"bytes {bytes_ratio:.4f}x (goal <= 1.005x: {_verdict(bytes_ratio <= 1.005)})"
    )
    print(
        f"BSDIFF40 peak: now {ours_run[0].peak_mb / input_mb:.1f}x the {input_mb:.1f} MB input "
        f"({ours_run[0].peak_mb / old_mb:.1f}x the old file; goal <= 5x the input: "
        f"{_verdict(ours_run[0].peak_mb <= 5 * input_mb)}), bsdiff4 {peer_run[0].peak_mb / input_mb:.1f}x "
        f"({peer_run[0].peak_mb / old_mb:.1f}x the old file)"
    )
    for ours_label, aosp_label, goal in (
        ("imgdiff now", AOSP_IMGDIFF, "imgdiff wall <= 1.2x AOSP's"),
        ("imgdiff today", AOSP_IMGDIFF, None),
        ("bsdiff now", AOSP_BSDIFF, None),
    ):
        if aosp_label in results:
            _against_aosp(ours_label, results[ours_label], aosp_label, results[aosp_label], goal)
    if AOSP_IMGDIFF not in results:
        print("AOSP's C++ imgdiff: not measured (pass --aosp_imgdiff; docs/performance.md says how to build it)")


def _against_aosp(
    label: str, ours_result: tuple[Run, int], aosp_label: str, aosp_result: tuple[Run, int], goal: str | None
) -> None:
    """One line of `label`'s ratios to AOSP's tool in the same round (below 1: ours is less)."""
    (mine, mine_bytes), (theirs, their_bytes) = ours_result, aosp_result
    wall = mine.seconds / theirs.seconds
    verdict = f"; goal {goal}: {_verdict(wall <= 1.2)}" if goal else ""
    print(
        f"{label}/{aosp_label}: wall {wall:.2f}x, CPU {mine.cpu_seconds / theirs.cpu_seconds:.2f}x, "
        f"peak {mine.peak_mb / theirs.peak_mb:.2f}x, tree {mine.tree_mb / theirs.tree_mb:.2f}x, "
        f"bytes {mine_bytes / their_bytes:.4f}x{verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="size factor (1.0: ~24 MB kernel, 3000 files)",
    )
    parser.add_argument("--change", type=float, default=0.03, help="fraction of functions/files changed")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each printing its own ratios")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision whose py/ is 'today'")
    parser.add_argument(
        "--aosp_imgdiff", type=Path, help="AOSP's C++ imgdiff (bench/build_aosp_imgdiff.sh) to measure beside ours"
    )
    parser.add_argument(
        "--aosp_bsdiff",
        type=Path,
        help="AOSP's C++ bsdiff (bench/build_aosp_imgdiff.sh) to measure on the kernel Image",
    )
    args = parser.parse_args()
    aosp = AospTools(args.aosp_imgdiff, args.aosp_bsdiff)
    for tool in (aosp.imgdiff, aosp.bsdiff):
        if tool and not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool}: not an executable file")

    started = time.perf_counter()
    inputs = build_inputs(args.scale, args.change)
    print(
        f"inputs built in {time.perf_counter() - started:.1f}s: kernel Image {len(inputs.kernel[0]) / MB:.1f} MB, "
        f"boot image {len(inputs.boot[0]) / MB:.1f} MB; cores {len(os.sched_getaffinity(0))}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    engine = engine_of(dict(os.environ, PYTHONPATH=str(REPO / "py")))
    if engine != "native":
        raise SystemExit(f"this tree diffs with {engine}, not its compiled diff: build the library first")
    with tempfile.TemporaryDirectory(prefix="bench_diff_") as tmp:
        work = Path(tmp)
        baseline_py = extract_baseline(args.baseline, work)
        for number in range(1, args.repeat + 1):
            print(f"round {number} (load {os.getloadavg()[0]:.1f})")
            report(one_round(inputs, work, baseline_py, aosp), inputs)


if __name__ == "__main__":
    main()
