"""Boot images v0-v4 round-trip byte for byte through imgdiff and imgpatch, whatever made the
ramdisk's gzip: zlib (ours, level 9 and 6), GNU `gzip -9n`, or GNU `gzip` with a stored name.

Only zlib streams can be patched in uncompressed space; the GNU ones must still round-trip, as
NORMAL chunks (docs/formats.md#where-the-gzip-streams-are).
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from engine_helpers import run_tool
from ota.actions import imgdiff, make_bsdiff
from ota.format import bootimg, cpio, gzipper, imgdiff_format, patch
from ota.format.imgdiff_format import DeflateChunk


def _tree(seed: int, files: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    words = [b"service", b"class", b"setprop", b"on", b"boot", b"/system/bin", b"user", b"root"]
    return {
        f"etc/init/f{i}.rc": b"\n".join(b" ".join(rng.choices(words, k=8)) for _ in range(40)) for i in range(files)
    }


def _cpio(tree: dict[str, bytes]) -> bytes:
    entries = [cpio.Entry("etc", cpio.Kind.DIR, 0o755), cpio.Entry("etc/init", cpio.Kind.DIR, 0o755)]
    entries += [cpio.Entry(path, cpio.Kind.FILE, 0o644, data=data) for path, data in tree.items()]
    return cpio.write(entries)


SOURCE_TREE = _tree(1, 80)
TARGET_TREE = {
    **SOURCE_TREE,
    "etc/init/f7.rc": b"on boot\n    setprop ro.changed 1\n",
    "etc/init/new.rc": b"class main\n",
}
RAMDISKS = {version: _cpio(tree) for version, tree in (("source", SOURCE_TREE), ("target", TARGET_TREE))}


def _gnu(data: bytes, tmp_path: Path, *flags: str) -> bytes:
    (tmp_path / "ramdisk.cpio").write_bytes(data)
    subprocess.run(["gzip", "-f", *flags, str(tmp_path / "ramdisk.cpio")], check=True)
    return (tmp_path / "ramdisk.cpio.gz").read_bytes()


COMPRESSORS = {
    "zlib level 9": lambda data, _: gzipper.compress(data, 9),
    "zlib level 6": lambda data, _: gzipper.compress(data, 6),
    "GNU gzip -9n": lambda data, tmp_path: _gnu(data, tmp_path, "-9n"),
    "GNU gzip, stored name": _gnu,
}


KERNEL = random.Random(3).randbytes(20_000)


def _image(version: int, ramdisk: bytes, kernel_edit: bool) -> bytes:
    """Every section the version has, so the ramdisk sits among them as on a device."""
    kernel = KERNEL[:100] + b"new kernel" + KERNEL[110:] if kernel_edit else KERNEL
    sections = {
        1: {"recovery_dtbo": b"\xd7\xb7\xab\x1e" * 300},
        2: {"recovery_dtbo": b"\xd7\xb7\xab\x1e" * 300, "dtb": b"\xd0\x0d\xfe\xed" * 700},
        4: {"boot_signature": bytes(4096)},
    }.get(version, {})
    if version < 3:
        sections.update(
            second=b"second stage",
            cmdline=b"console=ttyS0",
            **bootimg.addresses(version, has_ramdisk=True, has_second=True),
        )
    return bootimg.build(
        bootimg.BootImage(
            header_version=version,
            kernel=kernel,
            ramdisk=ramdisk,
            os_version=bootimg.encode_os_version("14.0.0", "2025-01"),
            **sections,
        )
    )


@pytest.mark.parametrize("compressor", sorted(COMPRESSORS))
@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_imgdiff_round_trip(tmp_path: Path, version: int, compressor: str) -> None:
    compress = COMPRESSORS[compressor]
    gz_source, gz_target = (compress(RAMDISKS[v], tmp_path) for v in ("source", "target"))
    if compressor == "GNU gzip, stored name":
        assert gz_source[3] == 0x08  # FLG = FNAME: AOSP's scan would not even see this member
    source, target = _image(version, gz_source, False), _image(version, gz_target, True)
    made = imgdiff.make_image_patch(source, target)
    assert patch.apply_patch(source, made) == target
    deflates = [c for c in imgdiff_format.parse(made, "p") if isinstance(c, DeflateChunk)]
    if compressor.startswith("zlib"):
        (chunk,) = deflates
        assert (chunk.src_expanded_len, chunk.tgt_expanded_len) == (len(RAMDISKS["source"]), len(RAMDISKS["target"]))
        assert chunk.level == int(compressor[-1])
        assert len(made) * 4 < len(make_bsdiff.diff(source, target))


def test_command_lines_round_trip_a_gnu_gzip_ramdisk(tmp_path: Path) -> None:
    """What a user runs: ota_bootimg build, imgdiff, bspatch; GNU gzip with a stored name."""
    for version, tree in (("source", SOURCE_TREE), ("target", TARGET_TREE)):
        (tmp_path / f"kernel.{version}").write_bytes(random.Random(version).randbytes(8000))
        ramdisk = _gnu(_cpio(tree), tmp_path)
        (tmp_path / f"ramdisk.{version}").write_bytes(ramdisk)
        done = run_tool(
            "bootimg",
            "build",
            "--header_version=2",
            f"--kernel={tmp_path / f'kernel.{version}'}",
            f"--ramdisk={tmp_path / f'ramdisk.{version}'}",
            "--cmdline=console=ttyS0",
            f"--output={tmp_path / f'{version}.img'}",
        )
        assert (done.returncode, done.stderr) == (0, "")
    paths = [tmp_path / name for name in ("source.img", "target.img", "boot.p")]
    assert run_tool("imgdiff", *paths).returncode == 0
    done = run_tool("bspatch", paths[0], tmp_path / "out.img", paths[2])
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "out.img").read_bytes() == paths[1].read_bytes()
