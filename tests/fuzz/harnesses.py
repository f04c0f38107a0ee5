"""Fuzz targets: every parser that reads untrusted bytes on the device, and their seed corpora.

Each target takes arbitrary bytes and must either succeed or raise OtaError; any other exception
(IndexError, struct.error, MemoryError, a zlib or bz2 error leaking out...) is a bug. The same
harness functions are driven by atheris (coverage-guided, `atheris_main.py`) and by the
deterministic mutation loop (`mutate.py`), which runs anywhere, including Bazel's sandbox.

Seeds are generated here at run time from the real writers (bsdiff, imgdiff, mkbootimg-like
builder, cpio writer, signer), so no binary corpus lives in git and seeds follow format changes.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519

from ota.actions import imgdiff, make_bsdiff
from ota.errors import OtaError
from ota.format import bootimg, bsdiff, cpio, gzipper, imgpatch, layout, signing
from ota.proto import ota_manifest_pb2

# Every buffer a fuzzed patch may make the appliers allocate; the device passes the real target
# size, which is of this order for the small seeds.
OUTPUT_LIMIT = 1 << 20
WHERE = "fuzz-input"


@dataclass(frozen=True)
class Target:
    """One fuzz target: `run(data)` may only raise OtaError; `seeds()` builds its corpus."""

    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]


def _noise(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _text_blob(seed: int, lines: int) -> bytes:
    rng = random.Random(seed)
    words = [b"kernel", b"ramdisk", b"system", b"vendor", b"ota", b"patch", b"init", b"0x%04x"]
    return b"\n".join(b" ".join(rng.choice(words) for _ in range(6)) for _ in range(lines)) + b"\n"


# --- BSDIFF40 --------------------------------------------------------------------------------
# The first input byte selects the source file, the rest is the patch: mutations then reach
# sources of different sizes, including the empty one.

_BSDIFF_SOURCES = (b"", _text_blob(1, 40), _noise(2, 3000) + _text_blob(3, 30))


def _bsdiff_run(data: bytes) -> None:
    if not data:
        return
    bsdiff.apply(_BSDIFF_SOURCES[data[0] % len(_BSDIFF_SOURCES)], data[1:], where=WHERE, limit=OUTPUT_LIMIT)


def _bsdiff_seeds() -> list[bytes]:
    return [
        bytes([index]) + make_bsdiff.diff(source, target)
        for index, source in enumerate(_BSDIFF_SOURCES)
        for target in (source + b"appended tail\n", source[::-1][:500], _text_blob(10 + index, 25), b"")
    ]


# --- IMGDIFF2 --------------------------------------------------------------------------------


def _image(seed: int) -> bytes:
    """Raw bytes, a zlib gzip member, raw bytes: the shape of a kernel+ramdisk boot image."""
    return _noise(seed, 700) + gzipper.compress(_text_blob(seed, 120)) + _text_blob(seed + 1, 10)


def _small_zip(seed: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("a.txt", "b/c.txt"):
            zf.writestr(
                zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)),
                _text_blob(seed + len(name), 40),
                compress_type=zipfile.ZIP_DEFLATED,
            )
    return buffer.getvalue()


_IMG_SOURCES = (_image(20), _small_zip(30), gzip.compress(_text_blob(40, 50), mtime=0))


def _imgdiff_run(data: bytes) -> None:
    if not data:
        return
    imgpatch.apply(_IMG_SOURCES[data[0] % len(_IMG_SOURCES)], data[1:], where=WHERE, limit=OUTPUT_LIMIT)


def _imgdiff_seeds() -> list[bytes]:
    return [
        b"\0" + imgdiff.make_image_patch(_IMG_SOURCES[0], _image(21)),
        b"\0" + imgdiff.make_image_patch(_IMG_SOURCES[0], _IMG_SOURCES[0]),
        b"\1" + imgdiff.make_zip_patch(_IMG_SOURCES[1], _small_zip(31)),
        b"\2" + imgdiff.make_image_patch(_IMG_SOURCES[2], gzip.compress(_text_blob(41, 50), mtime=0)),
    ]


# --- boot images and their ramdisk cpio --------------------------------------------------------


def _bootimg_run(data: bytes) -> None:
    bootimg.parse(data, WHERE)


def _bootimg_seeds() -> list[bytes]:
    seeds = []
    for version in range(bootimg.MAX_VERSION + 1):
        fields: dict[str, object] = {
            "header_version": version,
            "kernel": _noise(version, 300),
            "ramdisk": gzipper.compress(_text_blob(version, 20)),
            "cmdline": b"console=ttyS0",
        }
        if version <= 2:
            fields.update(second=b"2nd" * 10, board=b"fuzz", page_size=2048)
        if version in (1, 2):
            fields["recovery_dtbo"] = b"dtbo" * 8
        if version == 2:
            fields["dtb"] = b"dtb!" * 8
        if version == 4:
            fields["boot_signature"] = b"sig" * 20
        seeds.append(bootimg.build(bootimg.BootImage(**fields)))
    return seeds


def _cpio_run(data: bytes) -> None:
    cpio.read(data, WHERE)


def _cpio_seeds() -> list[bytes]:
    k = cpio.Kind
    entries = [
        cpio.Entry("dev", k.DIR, 0o755),
        cpio.Entry("dev/console", k.CHARDEV, 0o600, rdev=(5, 1)),
        cpio.Entry("init", k.FILE, 0o750, data=_text_blob(50, 10)),
        cpio.Entry("sbin", k.DIR, 0o755),
        cpio.Entry("sbin/sh", k.SYMLINK, 0o777, data=b"/system/bin/sh"),
        cpio.Entry("fifo", k.FIFO, 0o600),
        cpio.Entry("empty", k.FILE, 0o644),
    ]
    return [cpio.write(entries), cpio.write(entries[:1]), cpio.write([])]


# --- package zip, manifest and signature block -----------------------------------------------
# A fixed key (so runs are reproducible) stands for the device's trust store.

_FUZZ_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"rules_ota fuzz key").digest())
_TRUSTED = [_FUZZ_KEY.public_key()]


def _signature_run(data: bytes) -> None:
    signing.verify_manifest(b"manifest", data, _TRUSTED, where=WHERE)


def _signature_seeds() -> list[bytes]:
    rotation = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"second key").digest())
    return [signing.sign_manifest(b"manifest", [_FUZZ_KEY]), signing.sign_manifest(b"manifest", [rotation, _FUZZ_KEY])]


def _package_run(data: bytes) -> None:
    signing.verify(io.BytesIO(data), _TRUSTED)


def _package_bytes(payload: dict[str, bytes]) -> bytes:
    manifest = ota_manifest_pb2.OtaManifest(
        format_version=layout.FORMAT_VERSION, type=ota_manifest_pb2.OtaManifest.INCREMENTAL
    )
    for name, data in sorted(payload.items()):
        manifest.payload.add(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_bytes = manifest.SerializeToString(deterministic=True)
    entries = [
        ("manifest.pb", manifest_bytes),
        *sorted(payload.items()),
        (layout.SIGNATURE_ENTRY, signing.sign_manifest(manifest_bytes, [_FUZZ_KEY])),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries:
            method = zipfile.ZIP_STORED if name.endswith(".p") else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, compress_type=method)
    return buffer.getvalue()


def _package_seeds() -> list[bytes]:
    payload = {"patch/system/bin/app.p": _BSDIFF_SOURCES[1][:64], "system/etc/new.conf": _text_blob(60, 5)}
    return [_package_bytes(payload), _package_bytes({})]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("bsdiff", _bsdiff_run, _bsdiff_seeds),
        Target("imgdiff", _imgdiff_run, _imgdiff_seeds),
        Target("bootimg", _bootimg_run, _bootimg_seeds),
        Target("cpio", _cpio_run, _cpio_seeds),
        Target("signature_block", _signature_run, _signature_seeds),
        Target("package", _package_run, _package_seeds),
    )
}


def run_guarded(target: Target, data: bytes) -> None:
    """Runs one input: OtaError is the expected outcome of bad input and is swallowed."""
    with contextlib.suppress(OtaError):
        target.run(data)
