"""Source/target builds with every kind of change, and their real packages, for the ota_apply tests.

The two builds differ in every way an update can: patched files (bsdiff, and a gzip file that
imgdiff patches), kept files, new and deleted files and directories, a file that becomes a
directory and a directory that becomes a file, new/re-pointed/removed symlinks, mode and owner
changes, a file-backed boot partition holding a real Android boot image (IMGDIFF2 patch) and an
MTD (NAND simulator) partition patched with BSDIFF40.
"""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from ota.actions.zipwrite import Compression, ZipSource, write_zip
from ota.format import bootimg
from ota.format import layout as package_layout
from ota.proto import ota_manifest_pb2 as pb
from ota.testing.builds import Spec, make_package, write_build
from ota.testing.device_check import Build, Layout, layout_for

DEVICE = "sailfish"
SOURCE_FP = "rules_ota/sailfish/1.0:user/release-keys"
TARGET_FP = "rules_ota/sailfish/2.0:user/release-keys"


def _blob(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(300)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def _noise(seed: int, size: int) -> bytes:
    """Incompressible bytes: a gzip of them is larger than they are (see test_imgdiff_limit)."""
    return random.Random(seed).randbytes(size)


def _edit(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(20):
        at = rng.randrange(len(out))
        out[at : at + 4] = b"EDIT"
    return bytes(out) + b"appended tail\n"


def _boot(kernel: bytes, ramdisk_text: bytes, cmdline: bytes) -> bytes:
    ramdisk = gzip.compress(ramdisk_text, mtime=0)
    return bootimg.build(bootimg.BootImage(header_version=0, kernel=kernel, ramdisk=ramdisk, cmdline=cmdline))


def source_spec() -> Spec:
    lib = _blob(1, 150_000)
    items = {
        "bin/sh": (_blob(2, 40_000), 0o755, 0, 2000),
        "bin/toolbox": (_blob(3, 20_000), 0o755, 0, 2000),
        "lib/libc.so": lib,
        "lib/libc.so.old": ("symlink", "libc.so"),
        "lib/libm.so": ("symlink", "libc.so"),
        "etc/hosts": b"127.0.0.1 localhost\n",
        "etc/motd.gz": gzip.compress(_noise(4, 30_000), mtime=0),
        "etc/removed.conf": b"gone in 2.0\n",
        "etc/oldstuff/a": b"a\n",
        "etc/oldstuff/b": b"b\n",
        "etc/becomes_dir": b"I am a file in 1.0\n",
        "app/becomes_file/x": b"x\n",
        "app/same.apk": _blob(5, 10_000),
        "build.prop": b"ro.build.fingerprint=" + SOURCE_FP.encode() + b"\n",
        "xbin": ("dir", 0o750, 0, 2000),
    }
    return Spec(
        DEVICE,
        SOURCE_FP,
        1_700_000_000,
        items,
        {"boot": _boot(_blob(6, 60_000), _blob(7, 40_000), b"console=ttyS0"), "radio": _blob(8, 50_000)},
    )


def target_spec() -> Spec:
    source = source_spec()
    items = dict(source.items)
    lib = source.items["lib/libc.so"]
    items.update(
        {
            "bin/sh": (_edit(source.items["bin/sh"][0], 10), 0o750, 0, 2000),  # patched + mode change
            "bin/toolbox": (source.items["bin/toolbox"][0], 0o755, 1000, 1000),  # kept, owner change
            "lib/libc.so": _edit(lib, 11),
            "lib/libm.so": ("symlink", "libc.so.6"),  # re-pointed
            "lib/libc.so.6": ("symlink", "libc.so"),  # new
            "etc/motd.gz": gzip.compress(_edit(_noise(4, 30_000), 12), mtime=0),  # imgdiff
            "etc/new.conf": b"new in 2.0\n",
            "xbin/su": (_blob(17, 3_000), 0o4750, 0, 2000),  # setuid, group 2000
            "etc/newdir/deep/file": _blob(13, 5_000),
            "etc/becomes_dir/inside": b"now a directory\n",
            "app/becomes_file": b"a file now\n",
            "build.prop": b"ro.build.fingerprint=" + TARGET_FP.encode() + b"\n",
        }
    )
    for gone in (
        "etc/removed.conf",
        "etc/oldstuff/a",
        "etc/oldstuff/b",
        "lib/libc.so.old",
        "etc/becomes_dir",
        "app/becomes_file/x",
    ):
        items.pop(gone)
    return Spec(
        DEVICE,
        TARGET_FP,
        1_800_000_000,
        items,
        {
            "boot": _boot(_edit(_blob(6, 60_000), 14), _edit(_blob(7, 40_000), 15), b"console=ttyS0 quiet"),
            "radio": _edit(_blob(8, 50_000), 16),
        },
    )


@dataclass(frozen=True)
class Release:
    """Both builds, the incremental and full packages, and a device layout (radio on MTD)."""

    source: Build
    target: Build
    incremental: str
    full: str
    layout: Layout


def make_release(directory: str, cache_limit: int | None = None) -> Release:
    source = write_build(source_spec(), os.path.join(directory, "source"))
    target = write_build(target_spec(), os.path.join(directory, "target"))
    incremental = make_package(source, target, directory, os.path.join(directory, "incremental.zip"))
    full = make_package(None, target, directory, os.path.join(directory, "full.zip"))
    return Release(
        source, target, incremental, full, layout_for(source, target, mtd=("radio",), cache_limit=cache_limit)
    )


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs the real ota_apply CLI on a test device. `make_release`'s devices simulate their radio
    partition on NAND, a kind only the test bench entry point knows (ota.testing.testbench_cli);
    without fault options it runs the tool unchanged."""
    return subprocess.run(
        [sys.executable, "-m", "ota.testing.testbench_cli", "ota_apply", *args],
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )


def rewrite_package(package: str, out: str, edit: Callable[[pb.OtaManifest, dict[str, bytes]], None]) -> None:
    """Rewrites a package with an edited manifest and entries (`edit` changes both in place)."""
    with zipfile.ZipFile(package) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = pb.OtaManifest.FromString(entries.pop(package_layout.MANIFEST_ENTRY))
    entries.pop(package_layout.SIGNATURE_ENTRY, None)
    edit(manifest, entries)
    sources = [ZipSource(name, Compression.STORED, data=data) for name, data in sorted(entries.items())]
    sources.append(
        ZipSource(
            package_layout.MANIFEST_ENTRY, Compression.STORED, data=manifest.SerializeToString(deterministic=True)
        )
    )
    write_zip(out, sources)


def run_testbench_cli(faults: list[str], *args: str) -> subprocess.CompletedProcess:
    """Runs the real ota_apply CLI under the test bench entry point (ota.testing.testbench_cli):
    the NAND simulator's kind `mtdsim` is known, and `faults` are the injector's options (e.g.
    ["--fault=tear:7"] or ["--fault_log=ops.log"]; [] for none)."""
    return subprocess.run(
        [sys.executable, "-m", "ota.testing.testbench_cli", *faults, "ota_apply", *args],
        capture_output=True,
        text=True,
        check=False,
    )
