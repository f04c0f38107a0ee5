"""Resource bombs are refused within the documented bounds (docs/security.md, "Memory and time bounds").

Before the signature is verified: at most PRE_SIGNATURE_MAX_RSS_MIB peak RSS and
PRE_SIGNATURE_MAX_SECONDS, whatever the zip claims - checked on the ota_apply CLI in a child
process for every named bomb, and in process (tracemalloc, so Python's own allocations) for many
generated zip shapes through `signing.verify`, which shares the package reader's pre-signature
pass. After it: within `post_signature_bound_mib` of the manifest and the largest target, for
IMGDIFF2 expansion bombs and manifests flooded with operations for another device, each refused
before any write. Every measurement is printed (and written to resource_bounds.tsv under
TEST_UNDECLARED_OUTPUTS_DIR when Bazel runs the test) for the attack table.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import time
import tracemalloc
import zipfile
import zlib

import pytest

import attacks
import resource_attacks as ra
from ota.actions import imgdiff
from ota.errors import OtaError
from ota.format import imgdiff_format, imgpatch, package_reader, signing, zipscan
from ota.testing import device_check

_REPORT = os.path.join(os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR", ""), "resource_bounds.tsv")


def _record(family: str, name: str, peak_mib: float, seconds: float, outcome: str) -> None:
    line = f"{family}\t{name}\t{peak_mib:.1f} MiB\t{seconds:.2f} s\t{outcome}"
    print(line)
    if os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR"):
        with open(_REPORT, "a", encoding="utf-8") as stream:
            stream.write(line + "\n")


def _one_line(measured: ra.Measured) -> str:
    lines = measured.stderr.strip().splitlines()
    assert (measured.status, measured.stdout, len(lines)) == (1, "", 1), measured
    return lines[0]


@pytest.fixture(scope="module")
def bare_device(tmp_path_factory) -> tuple[str, str]:
    directory = str(tmp_path_factory.mktemp("bare") / "dev")
    return directory, ra.baseline_device(directory)


@pytest.mark.parametrize("bomb", ra.PRE_SIGNATURE, ids=[b.name for b in ra.PRE_SIGNATURE])
def test_pre_signature_bomb_is_refused_within_the_bound(bare_device, tmp_path, bomb):
    directory, config = bare_device
    package = str(tmp_path / "bomb.zip")
    with open(package, "wb") as stream:
        stream.write(bomb.make())
    before = device_check.snapshot(directory)
    measured = ra.measure(package, config, str(tmp_path))
    line = _one_line(measured)
    _record("pre-signature", bomb.name, measured.peak_rss_mib, measured.seconds, line.split(": ", 3)[-1])
    assert bomb.expected in line
    assert device_check.snapshot(directory) == before
    assert measured.peak_rss_mib <= ra.PRE_SIGNATURE_MAX_RSS_MIB
    assert measured.seconds <= ra.PRE_SIGNATURE_MAX_SECONDS


# --- generated shapes, in process ----------------------------------------------------------------


def _shape(rng: random.Random) -> tuple[str, bytes, str]:
    """One random hostile zip: (description, bytes, a fragment its refusal must contain)."""
    limits = package_reader.Limits()
    kind = rng.choice(
        [
            "count",
            "entries",
            "names",
            "inflate",
            "declared",
            "stored",
            "duplicates",
            "signature",
            "ratio",
            "truncated",
            "flipped",
        ]
    )
    if kind == "count":
        count = rng.choice([limits.max_entries + 1, rng.randint(limits.max_entries + 1, 1 << 48)])
        return f"end record claims {count} entries", ra.declared_count_lie(count), "more than the limit of 100000"
    if kind == "entries":
        count = rng.randint(limits.max_entries + 1, 250_000)
        return f"{count} real entries", ra.entry_count_bomb(count), f"zip: {count} entries"
    if kind == "names":
        name_len = rng.randint(20_000, 65_535)
        entries = limits.max_directory_bytes // (46 + name_len) + rng.randint(1, 8)
        return (
            f"{entries} names of {name_len} bytes",
            ra.long_names_directory(entries, name_len),
            f"more than the limit of {limits.max_directory_bytes}",
        )
    if kind == "inflate":
        inflated = rng.randint(1 << 20, 256 << 20)
        declared = rng.randint(0, min(inflated - 1, limits.max_manifest_bytes))
        return (
            f"manifest inflates to {inflated}, declares {declared}",
            ra.manifest_inflate_bomb(inflated, declared),
            f"holds more than its declared {declared} bytes",
        )
    if kind == "declared":
        declared = rng.randint(limits.max_manifest_bytes + 1, (1 << 32) - 2)
        member = ra.Member(ra.MANIFEST, b"\x08\x01", 0, declared, 0)
        return (
            f"manifest declares {declared}",
            ra.zip_of([member]),
            f"manifest.pb: {declared} bytes, more than the limit of {limits.max_manifest_bytes}",
        )
    if kind == "stored":
        real, declared = rng.randint(1, 4096), rng.randint(1, 4096)
        declared += declared == real
        member = ra.Member(ra.MANIFEST, rng.randbytes(real), 0, declared, 0)
        return f"stored {real} bytes, declares {declared}", ra.zip_of([member]), f"stored with {real} bytes"
    if kind == "duplicates":
        copies = rng.randint(2, 20_000)
        name = rng.choice([ra.MANIFEST, ra.SIGNATURE])
        members = [ra.Member.plain(ra.MANIFEST, b"\x08\x01")] + [ra.Member.plain(name, b"x")] * (copies - 1)
        return f"{name} {copies} times", ra.zip_of(members), f"zip entry {name!r}: appears twice"
    if kind == "signature":
        inflated = rng.randint(limits.max_signature_bytes + 1, 128 << 20)
        return (
            f"signature of {inflated} bytes",
            ra.signature_bomb(inflated),
            f"{ra.SIGNATURE}: {inflated} bytes, more than the limit of {limits.max_signature_bytes}",
        )
    if kind == "ratio":
        size = rng.randint(1, limits.max_manifest_bytes)
        noise = rng.randint(0, min(size, 1 << 16))
        data = rng.randbytes(noise) + bytes(size - noise)
        if rng.random() < 0.3:
            member = ra.Member.plain(ra.MANIFEST, data)
        else:  # deflate at a random level over a random mix of noise and zeros
            packer = zlib.compressobj(rng.randint(1, 9), zlib.DEFLATED, -zlib.MAX_WBITS)
            member = ra.Member(ra.MANIFEST, packer.compress(data) + packer.flush(), 8, size, zlib.crc32(data))
        return (
            f"manifest of {size} bytes ({noise} random), untrusted signer",
            ra.zip_of([member, ra.Member.plain(ra.SIGNATURE, signing.sign_manifest(data, [attacks.OTHER_KEY]))]),
            "unknown key",
        )
    genuine = ra.zip_of(
        [ra.Member.zeros(ra.MANIFEST, 1 << 20), ra.Member.plain(ra.SIGNATURE, b"x")], filler=rng.randint(0, 2000)
    )
    if kind == "truncated":
        cut = rng.randint(0, len(genuine) - 1)
        return f"cut at {cut} of {len(genuine)}", genuine[:cut], ""
    raw = bytearray(genuine)
    for _ in range(rng.randint(1, 16)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return "bytes flipped", bytes(raw), ""


def test_generated_zip_shapes_stay_within_the_pre_signature_bound(tmp_path):
    rng = random.Random("zip shapes")
    trusted = [attacks.TRUSTED_KEY.public_key()]
    worst_mib, worst_seconds = 0.0, 0.0
    for index in range(60):
        name, data, expected = _shape(rng)
        path = str(tmp_path / f"{index}.zip")
        with open(path, "wb") as stream:
            stream.write(data)
        del data
        tracemalloc.start()
        started = time.monotonic()
        with pytest.raises(OtaError) as info:
            signing.verify(path, trusted)
        seconds = time.monotonic() - started
        peak_mib = tracemalloc.get_traced_memory()[1] / (1 << 20)
        tracemalloc.stop()
        message = str(info.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, (name, message)
        assert expected in message, (name, message)
        # Python-level allocations only (the interpreter and libraries are in the CLI test's RSS).
        assert peak_mib <= ra.PRE_SIGNATURE_MAX_RSS_MIB - 30, (name, peak_mib)
        assert seconds <= ra.PRE_SIGNATURE_MAX_SECONDS, (name, seconds)
        worst_mib, worst_seconds = max(worst_mib, peak_mib), max(worst_seconds, seconds)
        os.unlink(path)
    _record("pre-signature", "60 generated zip shapes (in process, worst)", worst_mib, worst_seconds, "all refused")


# --- after the signature --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> attacks.Lab:
    return attacks.Lab.create(str(tmp_path_factory.mktemp("lab")))


def _run_on_fresh_device(lab: attacks.Lab, package_bytes: bytes, name: str, tmp_path) -> tuple[ra.Measured, str]:
    package = str(tmp_path / f"{name}.zip")
    with open(package, "wb") as stream:
        stream.write(package_bytes)
    directory = lab.new_device(name)
    before = device_check.snapshot(directory)
    measured = ra.measure(package, os.path.join(directory, "device.json"), str(tmp_path))
    line = _one_line(measured)
    assert device_check.snapshot(directory) == before, line
    return measured, line


def test_imgdiff_expansion_is_bounded_by_the_declared_target_size(lab, tmp_path):
    limit, target = ra.expand_limit(lab), ra.boot_target_size(lab)
    rng = random.Random("expansion")
    over = [limit + 1, rng.randint(limit + 2, 64 << 20), 1_200_000_000, (1 << 31) - 1]
    under = [rng.randint(target, limit - 1), limit]
    bound = ra.post_signature_bound_mib(len(ra.attacks.manifest_bytes(lab.manifest)), target)
    for expanded in over + under:
        measured, line = _run_on_fresh_device(lab, ra.imgdiff_expand_bomb(lab, expanded), f"expand{expanded}", tmp_path)
        _record(
            "post-signature",
            f"IMGDIFF2 chunk expands to {expanded} (limit {limit})",
            measured.peak_rss_mib,
            measured.seconds,
            line.split(": ", 3)[-1],
        )
        if expanded > limit:
            assert f"tgt_expanded_len {expanded} exceeds the expansion limit {limit}" in line
        else:
            assert "is not the expected target" in line
        assert measured.peak_rss_mib <= bound


def test_a_flood_of_operations_for_another_device_is_refused_before_it_is_walked(lab, tmp_path):
    rng = random.Random("flood")
    for count in (100_000, rng.randint(300_000, 550_000)):
        package = ra.mkdir_flood(lab, count)
        measured, line = _run_on_fresh_device(lab, package, f"flood{count}", tmp_path)
        _record(
            "post-signature",
            f"{count} MKDIR operations for another device",
            measured.peak_rss_mib,
            measured.seconds,
            line.split(": ", 3)[-1],
        )
        assert line.endswith(f"package is for device marlin; this device is '{attacks.DEVICE}'")
        manifest_size = 24 * count + len(ra.attacks.manifest_bytes(lab.manifest))  # >= the real size
        assert measured.peak_rss_mib <= ra.post_signature_bound_mib(manifest_size, 0)


def test_the_bounded_reader_agrees_with_zipfile_on_genuine_zips(tmp_path):
    """Generated well-formed zips (names, sizes, methods, comments): same entries, same bytes."""
    rng = random.Random("agreement")
    for index in range(40):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for number in range(rng.randint(0, 40)):
                name = "".join(rng.choice("abcé字 ._-/") for _ in range(rng.randint(1, 30))) + f"{number}"
                data = rng.randbytes(rng.randint(0, 3000)) + bytes(rng.randint(0, 300_000))
                archive.writestr(name, data, rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            archive.comment = rng.randbytes(rng.randint(0, 2000))
        raw = buffer.getvalue()
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            expected = [(info.filename, info.file_size, archive.read(info)) for info in archive.infolist()]
        file = io.BytesIO(raw)
        directory = zipscan.find_directory(file, f"zip {index}", zipscan.DirectoryLimits(100_000, 16 << 20))
        got = []
        for member in zipscan.members(file, directory, f"zip {index}"):
            out = bytearray()
            zipscan.stream(file, member, directory, f"zip {index}", out.extend)
            got.append((member.name, member.uncompressed_size, bytes(out)))
        assert got == expected, index


def test_imgdiff_writes_only_patches_that_apply_within_the_expand_limit():
    """A gzip stream that inflates past the limit for its target is patched as plain bytes."""
    rng = random.Random("imgdiff limit")
    for _ in range(4):
        ratio_bomb = bytes(rng.randint(8 << 20, 40 << 20)) + rng.randbytes(64)
        source = gzip.compress(ratio_bomb, mtime=0)
        target = gzip.compress(ratio_bomb + rng.randbytes(64), mtime=0)
        limit = imgpatch.expand_limit(len(target))
        assert len(ratio_bomb) > limit
        patch = imgdiff.make_image_patch(source, target)
        chunks = imgdiff_format.parse(patch, "patch")
        assert not any(isinstance(c, imgdiff_format.DeflateChunk) for c in chunks)
        assert imgpatch.apply(source, patch, limit=len(target), expand_limit=limit) == target
