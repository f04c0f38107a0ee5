"""The package carries no fat: generated trees through writer -> signer -> device reader.

Seeded tree pairs shaped like a distribution (ota.testing.generated_trees) are packaged by the
real tools, signed, and read back through the device's bounded reader: every file's slice of the
payload blob must give back exactly the target (whole files) or, applied, the target (patches);
every path without an operation must be unchanged and counted by its directory's group;
manifest.pb must be deflated, the blob and patches stored, whole files deflated exactly when
that is smaller; two builds must be byte-identical; and package bytes stay within 1.03x the
payload bytes on thousands of files, full or incremental.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ota.actions import zipwrite
from ota.cli import ota_inspect
from ota.format import layout, package_reader, signing, zipscan
from ota.format.layout import MANIFEST_ENTRY
from ota.format.patch import apply_patch
from ota.proto import ota_manifest_pb2 as pb
from ota.testing import builds, generated_trees

Op = pb.FileOperation
_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _package(work: Path, files: int, seed: int) -> tuple[builds.Build, builds.Build, Path, Path]:
    """Writes both builds, the unsigned package and the signed one under `work`."""
    source_spec, target_spec = generated_trees.tree_pair(files, seed)
    source = builds.write_build(source_spec, str(work / "source"))
    target = builds.write_build(target_spec, str(work / "target"))
    unsigned = work / "unsigned.zip"
    builds.make_package(source, target, str(work), str(unsigned))
    signed = work / "signed.zip"
    signing.sign(str(unsigned), str(signed), [_KEY])
    return source, target, unsigned, signed


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_packages_round_trip_through_signer_and_device_reader(tmp_path: Path, seed: int) -> None:
    source, target, unsigned, signed = _package(tmp_path, 300, seed)
    with open(unsigned, "rb") as stream:  # signing appends: the entries' local records are a prefix
        records = zipscan.find_directory(stream, str(unsigned)).offset
    assert signed.read_bytes()[:records] == unsigned.read_bytes()[:records]
    signing.verify(str(signed), [_KEY.public_key()])
    with package_reader.open_package(str(signed)) as package:
        package.verify_all()
        members = package.members()
        ops = {op.path.decode("utf-8", "surrogateescape"): op for op in package.manifest.files}
        changed = {path for path, op in ops.items() if op.op != Op.DELETE}
        unchanged = {e.path for e in target.entries} - changed
        assert sum(group.count for group in package.manifest.unchanged) == len(unchanged) > 0
        groups = {group.directory.decode("utf-8", "surrogateescape") for group in package.manifest.unchanged}
        assert {path.rpartition("/")[0] for path in unchanged} == groups
        for path, file in target.files.items():
            want = _read(file)
            if path in unchanged:
                assert _read(source.files[path]) == want
                continue
            op = ops[path]
            if op.op == Op.WRITE:
                assert package.read_slice(op.data, op.target.size) == want
                stored = package.read_slice(pb.DataSlice(offset=op.data.offset, length=op.data.length), op.data.length)
                deflated = zipwrite.deflated_size(iter([want])) < len(want)  # exactly when deflate saves bytes
                assert op.data.compression == (pb.DataSlice.DEFLATED if deflated else pb.DataSlice.STORED), path
                assert stored == (want if not deflated else stored)
            elif op.op == Op.PATCH:
                assert op.data.compression == pb.DataSlice.STORED, path
                patch = package.read_slice(op.data, op.data.length)
                assert apply_patch(_read(source.files[path]), patch) == want
            else:
                assert op.op == Op.KEEP and _read(source.files[path]) == want
        assert members[MANIFEST_ENTRY].method == zipfile.ZIP_DEFLATED
        assert members[layout.PAYLOAD_BLOB_ENTRY].method == zipfile.ZIP_STORED
        slices = sorted((op.data.offset, op.data.length) for op in ops.values() if op.HasField("data"))
        assert [offset for offset, _ in slices] == [0] + [o + n for o, n in slices[:-1]]  # back to back
        assert sum(n for _, n in slices) == members[layout.PAYLOAD_BLOB_ENTRY].uncompressed_size


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    first = _package(tmp_path / "a", 400, 7)
    second = _package(tmp_path / "b", 400, 7)
    for one, two in zip(first[2:], second[2:], strict=True):
        assert one.read_bytes() == two.read_bytes()


def test_smallest_compression_never_grows_an_entry(tmp_path: Path) -> None:
    """Generated mixes of noise and repetition: SMALLEST stores or deflates, whichever is smaller."""
    rng = random.Random(5)
    sources = []
    for n in range(60):
        noise = rng.randint(0, 4096)
        data = rng.randbytes(noise) + bytes([rng.randrange(256)]) * rng.randint(0, 4096 - noise)
        sources.append(zipwrite.ZipSource(f"e{n:02d}", zipwrite.Compression.SMALLEST, data=data))
    out = tmp_path / "smallest.zip"
    zipwrite.write_zip(str(out), sources)
    with zipfile.ZipFile(out) as archive:
        for info, source in zip(archive.infolist(), sources, strict=True):
            deflated = zipwrite.deflated_size(iter([source.data]))
            assert info.compress_size == min(deflated, len(source.data)), info.filename
            assert archive.read(info) == source.data


def _sizes(package_path: Path) -> ota_inspect.PackageBytes:
    with package_reader.open_package(str(package_path)) as package:
        sizes = ota_inspect.package_bytes(package)
    print("\n".join(ota_inspect.overhead_lines(sizes)))
    assert sizes.package == package_path.stat().st_size
    return sizes


def test_overhead_of_thousands_of_shipped_small_files_is_within_three_percent(tmp_path: Path) -> None:
    """Payload is most of the package (every file ships): zip headers plus manifest stay <= 3 %."""
    _, target_spec = generated_trees.tree_pair(3000, 11)
    target = builds.write_build(target_spec, str(tmp_path / "target"))
    full = builds.make_package(None, target, str(tmp_path), str(tmp_path / "full.zip"))
    sizes = _sizes(Path(full))
    assert len(target.files) > 2500 and sizes.payload_stored < sizes.payload_inflated
    assert sizes.ratio is not None and sizes.ratio <= 1.03, sizes


def test_incremental_overhead_of_thousands_of_files_is_within_three_percent(tmp_path: Path) -> None:
    """The goal's shape (bench/bench_package_overhead.py --generated 7000): an incremental where a
    few percent of the bytes change; unchanged paths cost only their directories' digests, so the
    package stays within 1.03x its payload."""
    _, _, _, signed = _package(tmp_path, 7000, 11)
    sizes = _sizes(signed)
    assert sizes.ratio is not None and sizes.ratio <= 1.03, sizes


def test_incremental_overhead_is_only_headers_deflated_manifest_and_signature(tmp_path: Path) -> None:
    """A realistic incremental (few percent of the bytes change): the manifest is deflated, and
    what is left is accounted for entry by entry (docs/package-format.md)."""
    _, _, unsigned, signed = _package(tmp_path, 2000, 12)
    sizes = _sizes(signed)
    assert sizes.manifest_stored < sizes.manifest_inflated
    with zipfile.ZipFile(signed) as archive:
        infos = archive.infolist()
    # Each entry: a 30-byte local header and a 46-byte central one, both with the name; one end record.
    headers = sum(30 + 46 + 2 * len(info.filename.encode()) for info in infos) + 22
    assert sizes.zip_structure == headers
    assert sizes.signature_stored == signed.stat().st_size - unsigned.stat().st_size - 76 - 2 * len(
        layout.SIGNATURE_ENTRY
    )
