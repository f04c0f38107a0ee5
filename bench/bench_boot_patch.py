#!/usr/bin/env python3
"""Boot-image patch sizes: our imgdiff against whole-image bsdiff, xdelta3 and zstd --patch-from.

Builds (fixed seed, so every run measures the same bytes) two versions of a realistic boot image:
a kernel-like blob (code-like words, pointer and string tables; about as compressible as an arm64
Image) gzip'd, and a ramdisk of a few thousand files as a deterministic newc cpio gzip'd by zlib.
The second version changes a few percent of each. Every tool runs in a child process (its peak
RSS read with os.wait4), and every patch is applied and checked against the target.

Scenarios: both parts gzip'd by zlib (what ota_bootimg makes); the ramdisk.gz alone; the kernel
gzip'd by GNU `gzip -9n` (what kernel builds ship), which no zlib setting reproduces; and that
kernel after `gzipper.normalize`. Run from the repository root:

    PYTHONPATH=py python3 bench/bench_boot_patch.py [--scale 0.2]
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ota.format import bootimg, cpio, deflate, gzipper

MB = 1 << 20
KERNEL_BASE = 0xFFFF800008000000


# --- synthetic inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Isa:
    """Code idioms: short runs of 4-byte words, reused with a skewed frequency as compilers do
    (prologues, loads, calls). Gives gzip ratios and level-9 speeds close to a real arm64 Image."""

    snippets: list[bytes]
    weights: list[float]


def make_isa(rng: random.Random) -> Isa:
    words = [struct.pack("<I", rng.getrandbits(32)) for _ in range(4000)]
    snippets = [b"".join(rng.choices(words, k=rng.randint(2, 12))) for _ in range(3000)]
    return Isa(snippets, [1.0 / (rank + 1) ** 0.8 for rank in range(len(snippets))])


def _code(rng: random.Random, isa: Isa, size: int) -> bytes:
    """About `size` bytes of idioms; one word in eight gets a random immediate."""
    body = bytearray(b"".join(rng.choices(isa.snippets, isa.weights, k=max(1, size // 28))))
    for at in rng.sample(range(0, len(body) - 3, 4), len(body) // 32):
        body[at + 1 : at + 3] = rng.randbytes(2)
    return bytes(body)


def _symbols(rng: random.Random, count: int) -> list[bytes]:
    parts = [
        b"init",
        b"get",
        b"set",
        b"dev",
        b"irq",
        b"dma",
        b"mm",
        b"page",
        b"lock",
        b"sched",
        b"net",
        b"fs",
        b"probe",
        b"free",
        b"alloc",
        b"read",
        b"write",
        b"ops",
        b"ctl",
        b"buf",
        b"queue",
        b"work",
    ]
    return [b"_".join(rng.choices(parts, k=rng.randint(2, 4))) + b"%d" % rng.randrange(100) for _ in range(count)]


@dataclass
class Kernel:
    """Functions of code plus tables derived from them; `render` lays them out as an Image."""

    functions: list[bytes]
    names: list[bytes]
    rodata: bytes  # firmware/crypto blobs and string tables (the strings are where GNU gzip and zlib part ways)

    def render(self) -> bytes:
        code = bytearray()
        starts = []
        for body in self.functions:
            starts.append(len(code))
            code += body
            code += bytes(-len(code) & 15)  # functions are 16-byte aligned
        pointers = b"".join(struct.pack("<Q", KERNEL_BASE + start) for start in starts)
        names = b"\0".join(self.names) + b"\0"
        return bytes(code) + self.rodata + pointers + names + bytes(-len(names) & 4095)


def make_kernel(rng: random.Random, isa: Isa, size: int) -> Kernel:
    functions = []
    total = 0
    while total < size * 0.85:
        body = _code(rng, isa, rng.choice((64, 128, 256, 512, 1024, 4096, 16384)))
        functions.append(body)
        total += len(body) + 8
    blobs = b"".join(
        rng.randbytes(rng.randint(1000, 9000)) + bytes(rng.randint(0, 3000)) for _ in range(size // 100000)
    )
    strings = b"\0".join(rng.choices(_symbols(rng, 3000), k=size // 160))  # printk formats, kallsyms
    rodata = blobs + strings
    return Kernel(functions, _symbols(rng, len(functions)), rodata)


def change_kernel(rng: random.Random, isa: Isa, kernel: Kernel, fraction: float) -> Kernel:
    """Edits `fraction` of the functions, inserts and drops a few (shifting every later address)."""
    functions, names = list(kernel.functions), list(kernel.names)
    budget = fraction * sum(map(len, functions))
    while budget > 0:
        index = rng.randrange(len(functions))
        body = bytearray(functions[index])
        span = rng.randrange(4, len(body) // 2 + 8, 4)
        cut = rng.randrange(0, len(body), 4)
        body[cut : cut + span] = _code(rng, isa, span + rng.choice((-16, 0, 16, 64)))
        functions[index] = bytes(body)
        budget -= span
    for _ in range(max(1, len(functions) // 200)):
        at = rng.randrange(len(functions))
        functions.insert(at, _code(rng, isa, rng.choice((256, 1024))))
        names.insert(at, _symbols(rng, 1)[0])
        del functions[rng.randrange(len(functions))], names[rng.randrange(len(names))]
    return Kernel(functions, names, kernel.rodata)


def _text_file(rng: random.Random, words: list[bytes], size: int) -> bytes:
    lines = []
    while sum(map(len, lines)) < size:
        lines.append(b" ".join(rng.choices(words, k=rng.randint(2, 10))) + b"\n")
    return b"".join(lines)


def make_ramdisk(rng: random.Random, isa: Isa, files: int) -> dict[str, bytes]:
    """path -> content: rc/xml/prop text, ELF-like binaries, and some incompressible blobs."""
    words = _symbols(rng, 400) + [b"on", b"service", b"class", b"user", b"group", b"setprop", b"=", b"/system"]
    tree: dict[str, bytes] = {}
    dirs = [f"{top}/{sub}" for top in ("system", "vendor", "etc", "lib", "firmware") for sub in "abcdefghij"]
    for number in range(files):
        kind = rng.random()
        where = rng.choice(dirs)
        if kind < 0.6:
            tree[f"{where}/conf{number}.rc"] = _text_file(rng, words, rng.randint(200, 6000))
        elif kind < 0.9:
            tree[f"{where}/lib{number}.so"] = b"\x7fELF" + _code(rng, isa, rng.randint(2000, 12000))
        else:
            tree[f"{where}/blob{number}.bin"] = rng.randbytes(rng.randint(2000, 10000))
    return tree


def change_ramdisk(rng: random.Random, tree: dict[str, bytes], fraction: float) -> dict[str, bytes]:
    changed = dict(tree)
    paths = sorted(changed)
    budget = fraction * sum(map(len, tree.values()))
    while budget > 0:
        path = rng.choice(paths)
        body = bytearray(changed[path])
        span = rng.randint(1, len(body) // 3 + 1)
        at = rng.randrange(len(body))
        body[at : at + span] = rng.randbytes(max(0, span + rng.randint(-8, 32)))
        changed[path] = bytes(body)
        budget -= span
    for path in rng.sample(paths, len(paths) // 300):
        del changed[path]
    for number in range(len(paths) // 150):
        changed[f"system/new/added{number}.rc"] = rng.randbytes(200) * rng.randint(1, 20)
    return changed


def pack_ramdisk(tree: dict[str, bytes]) -> bytes:
    dirs = {"/".join(path.split("/")[:depth]) for path in tree for depth in range(1, path.count("/") + 1)}
    entries = [cpio.Entry(d, cpio.Kind.DIR, 0o755) for d in dirs]
    entries += [cpio.Entry(p, cpio.Kind.FILE, 0o755 if p.endswith(".so") else 0o644, data=d) for p, d in tree.items()]
    return gzipper.compress(cpio.write(entries))


def gnu_gzip(data: bytes) -> bytes:
    return subprocess.run(["gzip", "-9n"], input=data, capture_output=True, check=True).stdout


def boot_image(kernel_gz: bytes, ramdisk_gz: bytes) -> bytes:
    fields = bootimg.addresses(2, has_ramdisk=True, has_second=False)
    return bootimg.build(
        bootimg.BootImage(
            header_version=2,
            kernel=kernel_gz,
            ramdisk=ramdisk_gz,
            dtb=b"\xd0\x0d\xfe\xed" * 16000,
            page_size=4096,
            cmdline=b"console=ttyAMA0 androidboot.hardware=bench",
            **fields,
        )
    )


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_mb: float


def run_child(argv: list[str], work: Path) -> Run:
    """Runs one tool under /usr/bin/time, which reports that tool's own peak RSS. (wait4 from
    here would not do: Linux carries a parent's RSS high-water mark into a forked child across
    exec, so every tool would appear to use at least this script's memory.)"""
    env = dict(os.environ, PYTHONPATH=str(Path(gzipper.__file__).resolve().parent.parent))
    report = work / "time.txt"
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(report), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return Run(elapsed, int(report.read_text().split()[-1]) / 1024)


def _python_tool(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"ota.cli.{module}", *args]


def tools(old: Path, new: Path, patch: Path, out: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (diff argv, apply argv writing `out`)."""
    apply = _python_tool("bspatch", str(old), str(out), str(patch))  # BSDIFF40 and IMGDIFF2 alike
    return {
        "imgdiff (ours)": (_python_tool("imgdiff", str(old), str(new), str(patch)), apply),
        "bsdiff (ours, whole)": (_python_tool("bsdiff", str(old), str(new), str(patch)), apply),
        "xdelta3 -9 -D": (
            ["xdelta3", "-9", "-D", "-f", "-e", "-s", str(old), str(new), str(patch)],
            ["xdelta3", "-D", "-f", "-d", "-s", str(old), str(patch), str(out)],
        ),
        "zstd -19 --long=27": (
            ["zstd", "-q", "-f", "-19", "--long=27", f"--patch-from={old}", str(new), "-o", str(patch)],
            ["zstd", "-q", "-f", "-d", "--long=27", f"--patch-from={old}", str(patch), "-o", str(out)],
        ),
    }


def measure(name: str, old_bytes: bytes, new_bytes: bytes, work: Path) -> list[tuple]:
    stem = "".join(c if c.isalnum() else "_" for c in name)
    old, new, patch, out = (work / f"{stem}.{suffix}" for suffix in ("old", "new", "patch", "out"))
    old.write_bytes(old_bytes)
    new.write_bytes(new_bytes)
    rows = []
    for tool, (diff_argv, apply_argv) in tools(old, new, patch, out).items():
        diffed = run_child(diff_argv, work)
        applied = run_child(apply_argv, work)
        if out.read_bytes() != new_bytes:
            raise SystemExit(f"{tool} on {name}: applied output differs from the target")
        out.unlink()
        size = patch.stat().st_size
        rows.append(
            (name, tool, size, size / len(new_bytes), diffed.seconds, applied.seconds, diffed.peak_mb, applied.peak_mb)
        )
    return rows


def search_cost(name: str, member_gz: bytes) -> str:
    """What imgdiff's zlib-parameter search (81 level/memLevel pairs, each dropped once its output
    differs) costs on one gzip member, in CPU seconds and in level-9 compressions of the same data."""
    member = gzipper.parse_member(member_gz, name)
    compressed = memoryview(member_gz)[member.deflate_start : member.footer_start]
    start = time.process_time()
    found = deflate.find_reproducing_params(member.inflated, compressed)
    searched = time.process_time() - start
    start = time.process_time()
    deflate.deflate(member.inflated, 9)
    once = time.process_time() - start
    outcome = f"found (level, memLevel) {found}" if found else "no setting reproduces it"
    return (
        f"search {name}: {outcome}; {searched:.2f}s CPU = {searched / once:.2f}x one level-9 compression ({once:.2f}s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (1.0: ~24 MB kernel, 3000 files)")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--change", type=float, default=0.03, help="fraction of functions/files changed")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    started = time.perf_counter()
    isa = make_isa(random.Random(0))
    kernel_v1 = make_kernel(random.Random(1), isa, int(24 * MB * args.scale))
    kernel_v2 = change_kernel(rng, isa, kernel_v1, args.change)
    images = {"v1": kernel_v1.render(), "v2": kernel_v2.render()}
    tree_v1 = make_ramdisk(random.Random(2), isa, max(50, int(3000 * args.scale)))
    ramdisks = {"v1": pack_ramdisk(tree_v1), "v2": pack_ramdisk(change_ramdisk(rng, tree_v1, args.change))}
    zlib_kernels = {v: gzipper.compress(images[v]) for v in images}
    gnu_kernels = {v: gnu_gzip(images[v]) for v in images}
    normalized = {}
    for version, gnu in gnu_kernels.items():
        normalized[version], report = gzipper.normalize(gnu, f"Image.gz ({version})")
        print(f"normalize Image.gz ({version}): {report.line()}")
    print(
        f"inputs built in {time.perf_counter() - started:.1f}s: kernel {len(images['v1']) / MB:.1f} MB "
        f"(zlib gz {len(zlib_kernels['v1']) / MB:.1f} MB, GNU gz {len(gnu_kernels['v1']) / MB:.1f} MB), "
        f"ramdisk {len(tree_v1)} files, gz {len(ramdisks['v1']) / MB:.1f} MB"
    )

    for name, member in (
        ("ramdisk.gz (zlib 9)", ramdisks["v2"]),
        ("Image.gz (zlib 9)", zlib_kernels["v2"]),
        ("Image.gz (GNU -9n)", gnu_kernels["v2"]),
    ):
        print(search_cost(name, member))

    scenarios = {
        "boot, zlib kernel": {v: boot_image(zlib_kernels[v], ramdisks[v]) for v in images},
        "ramdisk.gz alone": ramdisks,
        "boot, GNU kernel": {v: boot_image(gnu_kernels[v], ramdisks[v]) for v in images},
        "boot, GNU normalized": {v: boot_image(normalized[v], ramdisks[v]) for v in images},
    }
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="bench_boot_") as tmp:
        for name, pair in scenarios.items():
            same = [other for other, seen in scenarios.items() if other != name and seen == pair]
            if same and any(row[0] == same[0] for row in rows):
                print(f"{name}: byte-identical to '{same[0]}' (normalize output equals our zlib gzip); not re-run")
                continue
            rows += measure(name, pair["v1"], pair["v2"], Path(tmp))

    header = ("scenario", "tool", "patch bytes", "ratio", "diff s", "apply s", "diff MB", "apply MB")
    print(
        f"\n{header[0]:<22} {header[1]:<21} {header[2]:>12} {header[3]:>7} {header[4]:>7} {header[5]:>7} "
        f"{header[6]:>8} {header[7]:>8}"
    )
    for scenario, tool, size, ratio, diff_s, apply_s, diff_mb, apply_mb in rows:
        print(
            f"{scenario:<22} {tool:<21} {size:>12,} {ratio:>7.2%} {diff_s:>7.1f} {apply_s:>7.1f} {diff_mb:>8.0f} {apply_mb:>8.0f}"
        )
    sizes = {(row[0], row[1]): row[2] for row in rows}
    gain = sizes[("ramdisk.gz alone", "bsdiff (ours, whole)")] / sizes[("ramdisk.gz alone", "imgdiff (ours)")]
    verdict = "holds" if gain >= 4 else "FAILS"
    print(f"\nexpectation (zlib ramdisk: imgdiff >= 4x smaller than whole bsdiff): {gain:.1f}x -> {verdict}")


if __name__ == "__main__":
    main()
