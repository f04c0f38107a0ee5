"""package_reader: every malformed package is one exact OtaError line, nothing else escapes."""

from __future__ import annotations

import hashlib
import random
import zipfile
import zlib
from pathlib import Path

import pytest

from ota.errors import OtaError
from ota.format import package_reader
from ota.proto import ota_manifest_pb2 as pb

PATCH, WHOLE = b"patch bytes", b"whole file"
GOOD = {"boot.img": b"boot image", "payload.bin": PATCH + WHOLE}


def _manifest(entries: dict[str, bytes], **fields) -> pb.OtaManifest:  # type: ignore[no-untyped-def]
    m = pb.OtaManifest(format_version=2, type=pb.OtaManifest.INCREMENTAL, **fields)
    m.files.add(path=b"a", op=pb.FileOperation.PATCH, data=pb.DataSlice(length=len(PATCH)), method=pb.BSDIFF)
    m.files.add(path=b"b", op=pb.FileOperation.WRITE, data=pb.DataSlice(offset=len(PATCH), length=10), method=pb.WHOLE)
    m.partitions.add(name="boot", entry="boot.img", method=pb.WHOLE)
    for name, data in sorted(entries.items()):
        m.payload.add(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return m


def _write(path: Path, entries: dict[str, bytes] | list[tuple[str, bytes]], manifest: bytes | None) -> str:
    items = list(entries.items()) if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w") as archive:
        if manifest is not None:
            archive.writestr("manifest.pb", manifest)
        for name, data in items:
            archive.writestr(name, data, zipfile.ZIP_STORED if name == "payload.bin" else zipfile.ZIP_DEFLATED)
    return str(path)


def _error(path: str, **limits: int) -> str:
    with pytest.raises(OtaError) as info, package_reader.open_package(path, package_reader.Limits(**limits)) as package:
        package.verify_all()
    return str(info.value)


def test_good_package_reads_verified_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.zip", GOOD, _manifest(GOOD).SerializeToString())
    with package_reader.open_package(path) as package:
        assert package.read("boot.img") == b"boot image" and package.signature is None
        package.verify_all()
        assert package.read_slice(package.manifest.files[1].data, 10) == WHOLE
        assert package.read_slice(package.manifest.files[0].data, len(PATCH)) == PATCH


def test_rejections(tmp_path: Path) -> None:
    p = str(tmp_path / "p.zip")
    good = _manifest(GOOD).SerializeToString()
    (tmp_path / "p.zip").write_bytes(b"not a zip")
    assert _error(p) == f"{p}: not a zip file (no end of central directory record)"
    _write(tmp_path / "p.zip", GOOD, None)
    assert _error(p) == f"{p}: manifest.pb: missing"
    _write(tmp_path / "p.zip", GOOD, b"\xff\xff\xff")
    assert _error(p).startswith(f"{p}: manifest.pb: not a valid OtaManifest (")
    _write(tmp_path / "p.zip", GOOD, pb.OtaManifest(format_version=1, type=1).SerializeToString())
    assert _error(p) == (
        f"{p}: manifest.pb format_version: 1 is not supported (this reader knows only 2; "
        "rebuild the package with this release's tools)"
    )
    _write(tmp_path / "p.zip", {**GOOD, "extra": b"x"}, good)
    assert _error(p) == f"{p}: zip entry 'extra': not listed in the manifest payload"
    _write(tmp_path / "p.zip", {"payload.bin": GOOD["payload.bin"]}, good)
    assert _error(p) == f"{p}: payload entry boot.img: missing from the zip"
    _write(tmp_path / "p.zip", {**GOOD, "boot.img": b"boot image!"}, good)
    assert _error(p) == f"{p}: zip entry boot.img: 11 bytes, the manifest says 10"
    _write(tmp_path / "p.zip", {**GOOD, "boot.img": b"BOOT IMAGE"}, good)
    assert _error(p) == (
        f"{p}: zip entry boot.img: sha256 {hashlib.sha256(b'BOOT IMAGE').hexdigest()} does not "
        f"match the manifest's {hashlib.sha256(b'boot image').hexdigest()}"
    )
    with pytest.warns(UserWarning, match="Duplicate name"):
        _write(tmp_path / "p.zip", [*GOOD.items(), ("boot.img", b"boot image")], good)
    assert _error(p) == f"{p}: zip entry 'boot.img': appears twice"
    _write(tmp_path / "p.zip", GOOD, good)
    assert _error(p, max_entries=2) == f"{p}: zip: 3 entries, more than the limit of 2"
    assert _error(p, max_manifest_bytes=10) == f"{p}: manifest.pb: {len(good)} bytes, more than the limit of 10"
    unsafe = {"../evil": b"x"}
    _write(tmp_path / "p.zip", unsafe, _manifest(unsafe).SerializeToString())
    assert _error(p) == f"{p}: manifest.pb payload name \"../evil\": a '..' component is not allowed"
    no_blob = {"boot.img": b"boot image"}
    _write(tmp_path / "p.zip", no_blob, _manifest(no_blob).SerializeToString())
    assert _error(p) == f"{p}: manifest.pb files: a: data: the payload has no payload.bin"
    no_boot = {"payload.bin": GOOD["payload.bin"]}
    _write(tmp_path / "p.zip", no_boot, _manifest(no_boot).SerializeToString())
    assert _error(p) == f"{p}: manifest.pb partitions: boot: entry 'boot.img' is not in the payload"
    with zipfile.ZipFile(p, "w") as archive:  # the blob deflated: it could not be read by offset
        archive.writestr("manifest.pb", good)
        for name, data in GOOD.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED)
    assert _error(p) == f"{p}: zip entry payload.bin: not stored as it is; it must be (it is read by offset)"
    no_data = _manifest(GOOD)
    no_data.files[0].ClearField("data")
    _write(tmp_path / "p.zip", GOOD, no_data.SerializeToString())
    assert _error(p) == f"{p}: manifest.pb files: a: data is set exactly for PATCH and WRITE operations"
    stray_data = _manifest(GOOD)
    stray_data.files.add(path=b"c", op=pb.FileOperation.MKDIR, data=pb.DataSlice(length=1))
    _write(tmp_path / "p.zip", GOOD, stray_data.SerializeToString())
    assert _error(p) == f"{p}: manifest.pb files: c: data is set exactly for PATCH and WRITE operations"
    for group, problem in (
        (pb.UnchangedGroup(directory=b"../x", count=1, sha256=b"0" * 32), 'unchanged directory "../x"'),
        (pb.UnchangedGroup(directory=b"x", count=1, sha256=b"0" * 31), "unchanged: x: needs a count and a 32-byte"),
        (pb.UnchangedGroup(directory=b"x", count=0, sha256=b"0" * 32), "unchanged: x: needs a count and a 32-byte"),
    ):
        bad_group = _manifest(GOOD)
        bad_group.unchanged.append(group)
        _write(tmp_path / "p.zip", GOOD, bad_group.SerializeToString())
        assert problem in _error(p)
    twice = _manifest(GOOD)
    twice.unchanged.add(directory=b"x", count=1, sha256=b"0" * 32)
    twice.unchanged.add(directory=b"x", count=1, sha256=b"0" * 32)
    _write(tmp_path / "p.zip", GOOD, twice.SerializeToString())
    assert _error(p) == f"{p}: manifest.pb unchanged: x: directories not sorted and unique"
    bad_path = _manifest(GOOD)
    bad_path.files.add(path=b"/etc/passwd", op=pb.FileOperation.DELETE)
    _write(tmp_path / "p.zip", GOOD, bad_path.SerializeToString())
    assert _error(p) == f'{p}: manifest.pb files path "/etc/passwd": absolute paths are not allowed'


def test_entry_inflating_beyond_its_declared_size_is_refused(tmp_path: Path) -> None:
    """A deflate stream of 1 MB of zeros whose headers claim 10 bytes (a zip bomb's shape)."""
    bomb = {**GOOD, "boot.img": b"\0" * 1_000_003}
    small = {**GOOD, "boot.img": b"\0" * 10}
    path = tmp_path / "p.zip"
    _write(path, bomb, _manifest(small).SerializeToString())
    raw = bytearray(path.read_bytes())
    size_field = (1_000_003).to_bytes(4, "little")
    assert raw.count(size_field) == 2  # local header and central directory
    raw[:] = raw.replace(size_field, (10).to_bytes(4, "little"))
    path.write_bytes(raw)
    assert _error(str(path)) == f"{path}: zip entry boot.img: holds more than its declared 10 bytes"


def test_every_slice_is_inside_the_blob_or_refused(tmp_path: Path) -> None:
    """Seeded offsets and lengths around the blob's end: in range reads exactly those bytes, out
    of range (by one byte or by 2**63) is refused before anything is read."""
    rng = random.Random(14)
    blob = GOOD["payload.bin"]
    p = str(tmp_path / "p.zip")
    cases = [(0, len(blob)), (len(blob), 0), (len(blob) - 1, 1), (len(blob), 1), (1, len(blob)), (1 << 63, 1 << 63)]
    cases += [(rng.randint(0, len(blob) + 3), rng.randint(0, len(blob) + 3)) for _ in range(60)]
    for offset, length in cases:
        manifest = _manifest(GOOD)
        manifest.files[0].data.offset, manifest.files[0].data.length = offset, length
        _write(tmp_path / "p.zip", GOOD, manifest.SerializeToString())
        if offset + length <= len(blob):
            with package_reader.open_package(p) as package:
                package.verify_all()
                assert package.read_slice(package.manifest.files[0].data, length) == blob[offset : offset + length]
        else:
            assert _error(p) == (
                f"{p}: manifest.pb files: a: data: offset {offset} + length {length} runs past the end of "
                f"payload.bin ({len(blob)} bytes)"
            )


def test_a_deflated_slice_inflates_to_exactly_its_size(tmp_path: Path) -> None:
    """A deflated whole file: the declared size, a bomb capped at it, a short one, and garbage."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = packer.compress(b"\0" * 100_000) + packer.flush()
    entries = {"boot.img": b"boot image", "payload.bin": PATCH + packed + b"junk"}
    manifest = _manifest(entries)
    write = manifest.files[1]
    write.data.length, write.data.compression = len(packed), pb.DataSlice.DEFLATED
    p = _write(tmp_path / "p.zip", entries, manifest.SerializeToString())
    with package_reader.open_package(p) as package:
        package.verify_all()
        assert package.read_slice(write.data, 100_000) == b"\0" * 100_000
        for size in (10, 99_999, 100_001):
            with pytest.raises(OtaError, match=r"holds|does not end"):
                package.read_slice(write.data, size)
        garbage = pb.DataSlice(offset=len(PATCH) + len(packed), length=4, compression=pb.DataSlice.DEFLATED)
        with pytest.raises(OtaError, match=r"not a deflate stream|does not end"):
            package.read_slice(garbage, 10)
