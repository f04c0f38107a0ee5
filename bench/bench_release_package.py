#!/usr/bin/env python3
"""Package and boot-patch sizes on real inputs: the benchmark behind docs/rules.md's size figures.

(a) //release: incremental package bytes against full package bytes. Either pass the two built
    zips (--incremental, --full) or let the script build both in a scratch copy of this checkout
    under /var/tmp with its own Bazel output root (never in the checkout itself).

(b) A boot image pair built from two real Debian arm64 kernels. Debian ships arm64 kernels as an
    uncompressed Image (so EFI can verify its signature), so a raw Image is gzip'd by GNU
    `gzip -n -9`, the command kbuild's Image.gz target runs; a kernel that is already gzip is used
    as it is. The ramdisk is a newc cpio (ota.format.cpio) of real files from /usr/share/doc, gzip'd by
    zlib (ota.format.gzipper), v2 with a few files edited, removed and added. Patch sizes printed:

    * imgdiff with normalization on: ota.format.gzipper.normalize on kernel and ramdisk before
      ota.format.bootimg.build, as the ota_boot_image rule does by default;
    * imgdiff with normalization off (the GNU gzip kernel stays as it is);
    * bsdiff of the whole image as shipped;
    * the ideal: bsdiff of the inflated kernel + bsdiff of the ramdisk cpio + bsdiff of the rest
      of the image (header and padding).

    Every patch is applied and checked against its target. Expectation: normalized <= 1.05 x ideal.

Not a test (minutes of CPU, network for the kernels). Run from the repository root:

    PYTHONPATH=py python3 bench/bench_release_package.py \\
        --incremental bazel-bin/release/incremental_ota.zip --full bazel-bin/release/full_ota.zip

Without --kernel_a/--kernel_b the kernels are fetched once into --cache_dir with
`apt-get download` (needs `dpkg --add-architecture arm64 && apt-get update`).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "py"), str(REPO)]
from ota.actions import imgdiff, make_bsdiff  # noqa: E402
from ota.format import bootimg, cpio, gzipper, patch  # noqa: E402
from tests.cache import workspace  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("incremental", None, "built //release:incremental_ota zip (else built in a scratch copy)")
flags.DEFINE_string("full", None, "built //release:full_ota zip (else built in a scratch copy)")
flags.DEFINE_string("kernel_a", None, "source kernel: gzip'd Image, or raw Image (gzip'd here by GNU gzip -n -9)")
flags.DEFINE_string("kernel_b", None, "target kernel, like --kernel_a")
flags.DEFINE_list(
    "kernel_packages",
    ["linux-image-6.1.0-47-cloud-arm64-unsigned:arm64", "linux-image-6.1.0-50-cloud-arm64-unsigned:arm64"],
    "two Debian packages to take vmlinuz from when --kernel_a/--kernel_b are not given",
)
flags.DEFINE_string("cache_dir", "/var/tmp/rules_ota-bench-kernels", "where fetched packages are kept")
flags.DEFINE_string("doc_root", "/usr/share/doc", "real files for the ramdisk")
flags.DEFINE_integer("ramdisk_files", 400, "files in the ramdisk", lower_bound=10)
flags.DEFINE_float("expected_ratio", 1.05, "normalized boot patch / ideal must be at most this")

RELEASE_TARGETS = ["//release:incremental_ota", "//release:full_ota"]
MAX_DOC_FILE = 64 << 10


# --- (a) //release ----------------------------------------------------------------------------


def build_release(work: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Builds both packages in a copy of this checkout with a fresh output root under `work`."""
    tree = work / "rules_ota"
    workspace.copy_checkout(REPO, tree)
    client = workspace.Bazel(tree, work / "root", work / "logs", dict(os.environ))
    try:
        result = client.run("build", "release", RELEASE_TARGETS, [])
    finally:
        client.shutdown()
    if result.exit_code:
        raise SystemExit(f"bazel build failed (exit {result.exit_code}):\n{workspace.tail(result.console)}")
    print(f"built {' '.join(RELEASE_TARGETS)} in {result.seconds:.0f} s (cold, scratch output root)")
    copies = []
    for name in ("incremental_ota.zip", "full_ota.zip"):
        copies.append(work / name)
        shutil.copyfile(tree / "bazel-bin" / "release" / name, copies[-1])
    return copies[0], copies[1]


def release_rows(incremental: pathlib.Path, full: pathlib.Path) -> list[tuple[str, int, str]]:
    inc, whole = incremental.stat().st_size, full.stat().st_size
    return [
        ("//release full package", whole, "1.000 of full"),
        ("//release incremental package", inc, f"{inc / whole:.3f} of full"),
    ]


# --- (b) inputs -------------------------------------------------------------------------------


def fetch_kernel(package: str, cache: pathlib.Path) -> pathlib.Path:
    """vmlinuz from a Debian package, downloaded and unpacked once into `cache`."""
    unpacked = cache / package.replace(":", "_")
    found = sorted(unpacked.glob("boot/vmlinuz-*"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True, stderr=subprocess.DEVNULL)
        deb = max(cache.glob(package.split(":")[0] + "_*.deb"), key=lambda p: p.stat().st_mtime)
        unpacked.mkdir(exist_ok=True)
        subprocess.run(f"dpkg-deb --fsys-tarfile {deb} | tar -x -C {unpacked} ./boot", shell=True, check=True)
        found = sorted(unpacked.glob("boot/vmlinuz-*"))
    return found[0]


def gzip_kernel(path: pathlib.Path) -> tuple[bytes, str]:
    """The kernel as a gzip file, and how it got that way."""
    data = path.read_bytes()
    if data.startswith(b"\x1f\x8b"):
        return data, f"{path.name}: gzip as shipped"
    gz = subprocess.run(["gzip", "-n", "-9"], input=data, capture_output=True, check=True).stdout
    return gz, f"{path.name}: raw Image {len(data):,} B, gzip -n -9 (GNU, as kbuild's Image.gz) -> {len(gz):,} B"


def doc_files(root: pathlib.Path, count: int) -> dict[str, bytes]:
    """The first `count + 3` small regular files under `root` in sorted path order."""
    tree: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = pathlib.Path(dirpath, name)
            if full.is_file() and not full.is_symlink() and 0 < full.stat().st_size <= MAX_DOC_FILE:
                tree["usr/share/doc/" + full.relative_to(root).as_posix()] = full.read_bytes()
                if len(tree) == count + 3:
                    return tree
    return tree


def ramdisk_trees(root: pathlib.Path, count: int) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """v1: `count` real files. v2: every 40th edited mid-file, every 97th removed, 3 more added."""
    everything = doc_files(root, count)
    paths = sorted(everything)
    v1 = {p: everything[p] for p in paths[:count]}
    v2 = dict(v1)
    for index, path in enumerate(paths[:count]):
        if index % 97 == 50:
            del v2[path]
        elif index % 40 == 7:
            body = v1[path]
            middle = len(body) // 2
            v2[path] = body[:middle] + b"\n[v2: revised paragraph]\n" + body[middle + 16 :]
    for path in paths[count:]:
        v2[path.replace("usr/share/doc/", "usr/share/doc/added/")] = everything[path]
    return v1, v2


def pack_cpio(tree: dict[str, bytes]) -> bytes:
    dirs = {"/".join(p.split("/")[:depth]) for p in tree for depth in range(1, p.count("/") + 1)}
    entries = [cpio.Entry(d, cpio.Kind.DIR, 0o755) for d in sorted(dirs)]
    entries += [cpio.Entry(p, cpio.Kind.FILE, 0o644, data=tree[p]) for p in sorted(tree)]
    return cpio.write(entries)


def boot_image(kernel_gz: bytes, ramdisk_gz: bytes, normalize: bool) -> bytes:
    """A v2 boot image; with `normalize`, kernel and ramdisk pass gzipper.normalize first (ota_boot_image rule)."""
    if normalize:
        kernel_gz, kernel_report = gzipper.normalize(kernel_gz, "kernel")
        ramdisk_gz, ramdisk_report = gzipper.normalize(ramdisk_gz, "ramdisk")
        print(f"  normalize kernel: {kernel_report.line()}\n  normalize ramdisk: {ramdisk_report.line()}")
    fields = bootimg.addresses(2, has_ramdisk=True, has_second=False)
    return bootimg.build(
        bootimg.BootImage(
            header_version=2,
            kernel=kernel_gz,
            ramdisk=ramdisk_gz,
            page_size=4096,
            cmdline=b"console=ttyAMA0 root=/dev/vda2 rw",
            **fields,
        )
    )


def rest_of_image(image: bytes) -> bytes:
    """The image bytes outside its kernel and ramdisk sections (header, padding)."""
    parsed = bootimg.parse(image, "boot image")
    out, at = bytearray(), 0
    for section in sorted((s for s in parsed.sections if s.name in ("kernel", "ramdisk")), key=lambda s: s.offset):
        out += image[at : section.offset]
        at = section.offset + section.size
    return bytes(out + image[at:])


# --- (b) measuring ----------------------------------------------------------------------------


@dataclass
class Measured:
    name: str
    size: int
    seconds: float


def checked(name: str, make: Callable[[], bytes], source: bytes, target: bytes) -> Measured:
    """Makes a patch, applies it, and stops the run if the output is not `target`."""
    start = time.monotonic()
    made = make()
    seconds = time.monotonic() - start
    if patch.apply_patch(source, made, where=name) != target:
        raise SystemExit(f"{name}: applying the patch does not give the target")
    return Measured(name, len(made), seconds)


def boot_rows(kernel_a: pathlib.Path, kernel_b: pathlib.Path) -> list[tuple[str, int, str]]:
    kernels = []
    for path in (kernel_a, kernel_b):
        gz, how = gzip_kernel(path)
        print(f"kernel {how}")
        kernels.append(gz)
    trees = ramdisk_trees(pathlib.Path(FLAGS.doc_root), FLAGS.ramdisk_files)
    cpios = [pack_cpio(tree) for tree in trees]
    ramdisks = [gzipper.compress(c) for c in cpios]
    print(
        f"ramdisk: {len(trees[0])} -> {len(trees[1])} files from {FLAGS.doc_root}, cpio {len(cpios[0]):,} B, "
        f"zlib gz {len(ramdisks[0]):,} B"
    )
    shipped = [boot_image(k, r, normalize=False) for k, r in zip(kernels, ramdisks, strict=True)]
    print("boot image with normalization:")
    normalized = [boot_image(k, r, normalize=True) for k, r in zip(kernels, ramdisks, strict=True)]
    images = [gzipper.parse_member(k, "kernel").inflated for k in kernels]
    print(f"boot image {len(shipped[1]):,} B (normalized {len(normalized[1]):,} B); Image {len(images[1]):,} B")

    on = checked("imgdiff, normalization on", lambda: imgdiff.make_image_patch(*normalized), *normalized)
    off = checked("imgdiff, normalization off", lambda: imgdiff.make_image_patch(*shipped), *shipped)
    whole = checked("bsdiff, whole image", lambda: make_bsdiff.diff(*shipped), *shipped)
    parts = [
        checked(f"  bsdiff {what}", lambda pair=pair: make_bsdiff.diff(*pair), *pair)
        for what, pair in (
            ("kernel Image", images),
            ("ramdisk cpio", cpios),
            ("rest (header, padding)", [rest_of_image(i) for i in normalized]),
        )
    ]
    ideal = sum(p.size for p in parts)
    target = len(normalized[1])
    rows = [
        (m.name, m.size, f"{m.size / ideal:.3f} x ideal, {m.size / target:.2%} of image, {m.seconds:.0f} s")
        for m in (on, off, whole)
    ]
    rows.append(("ideal: bsdiff of decompressed parts", ideal, f"{ideal / target:.2%} of image"))
    rows += [(p.name, p.size, f"{p.seconds:.0f} s") for p in parts]
    verdict = "holds" if on.size <= FLAGS.expected_ratio * ideal else "FAILS"
    rows.append(
        (f"expectation: normalized <= {FLAGS.expected_ratio} x ideal", on.size, f"{on.size / ideal:.3f} -> {verdict}")
    )
    return rows


def print_table(rows: list[tuple[str, int, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    for name, size, note in rows:
        print(f"{name:<{width}}  {size:>12,}  {note}")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with tempfile.TemporaryDirectory(prefix="rules_ota-bench-release.", dir="/var/tmp") as tmp:
        if FLAGS.incremental and FLAGS.full:
            incremental, full = pathlib.Path(FLAGS.incremental), pathlib.Path(FLAGS.full)
        else:
            incremental, full = build_release(pathlib.Path(tmp))
            subprocess.run(["chmod", "-R", "u+w", tmp], check=False)  # Bazel leaves read-only trees
        rows = release_rows(incremental, full)
    if FLAGS.kernel_a and FLAGS.kernel_b:
        kernel_a, kernel_b = pathlib.Path(FLAGS.kernel_a), pathlib.Path(FLAGS.kernel_b)
    else:
        kernel_a, kernel_b = (fetch_kernel(p, pathlib.Path(FLAGS.cache_dir)) for p in FLAGS.kernel_packages)
    rows += boot_rows(kernel_a, kernel_b)
    print()
    print_table(rows)


if __name__ == "__main__":
    app.run(main)
