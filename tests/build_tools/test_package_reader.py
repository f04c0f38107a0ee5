"""package_reader: every malformed package is one exact OtaError line, nothing else escapes."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from ota.errors import OtaError
from ota.format import package_reader
from ota.proto import ota_manifest_pb2 as pb

GOOD = {"patch/system/a.p": b"patch bytes", "system/b": b"whole file"}


def _manifest(entries: dict[str, bytes], **fields) -> pb.OtaManifest:  # type: ignore[no-untyped-def]
    m = pb.OtaManifest(format_version=1, type=pb.OtaManifest.INCREMENTAL, **fields)
    m.files.add(path=b"a", op=pb.FileOperation.PATCH, entry="patch/system/a.p", method=pb.BSDIFF)
    m.files.add(path=b"b", op=pb.FileOperation.WRITE, entry="system/b", method=pb.WHOLE)
    for name, data in sorted(entries.items()):
        m.payload.add(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return m


def _write(path: Path, entries: dict[str, bytes] | list[tuple[str, bytes]], manifest: bytes | None) -> str:
    items = list(entries.items()) if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w") as archive:
        if manifest is not None:
            archive.writestr("manifest.pb", manifest)
        for name, data in items:
            archive.writestr(name, data, zipfile.ZIP_DEFLATED)
    return str(path)


def _error(path: str, **limits: int) -> str:
    with pytest.raises(OtaError) as info, package_reader.open_package(path, package_reader.Limits(**limits)) as package:
        package.verify_all()
    return str(info.value)


def test_good_package_reads_verified_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.zip", GOOD, _manifest(GOOD).SerializeToString())
    with package_reader.open_package(path) as package:
        assert package.read("system/b") == b"whole file" and package.signature is None
        package.verify_all()


def test_rejections(tmp_path: Path) -> None:
    p = str(tmp_path / "p.zip")
    good = _manifest(GOOD).SerializeToString()
    (tmp_path / "p.zip").write_bytes(b"not a zip")
    assert _error(p) == f"{p}: not a zip file (no end of central directory record)"
    _write(tmp_path / "p.zip", GOOD, None)
    assert _error(p) == f"{p}: manifest.pb: missing"
    _write(tmp_path / "p.zip", GOOD, b"\xff\xff\xff")
    assert _error(p).startswith(f"{p}: manifest.pb: not a valid OtaManifest (")
    _write(tmp_path / "p.zip", GOOD, pb.OtaManifest(format_version=2, type=1).SerializeToString())
    assert _error(p) == f"{p}: manifest.pb format_version: 2 is not supported (this reader knows 1)"
    _write(tmp_path / "p.zip", {**GOOD, "extra": b"x"}, good)
    assert _error(p) == f"{p}: zip entry 'extra': not listed in the manifest payload"
    _write(tmp_path / "p.zip", {"system/b": b"whole file"}, good)
    assert _error(p) == f"{p}: payload entry patch/system/a.p: missing from the zip"
    _write(tmp_path / "p.zip", {**GOOD, "system/b": b"whole file!"}, good)
    assert _error(p) == f"{p}: zip entry system/b: 11 bytes, the manifest says 10"
    _write(tmp_path / "p.zip", {**GOOD, "system/b": b"WHOLE FILE"}, good)
    assert _error(p) == (
        f"{p}: zip entry system/b: sha256 {hashlib.sha256(b'WHOLE FILE').hexdigest()} does not "
        f"match the manifest's {hashlib.sha256(b'whole file').hexdigest()}"
    )
    with pytest.warns(UserWarning, match="Duplicate name"):
        _write(tmp_path / "p.zip", [*GOOD.items(), ("system/b", b"whole file")], good)
    assert _error(p) == f"{p}: zip entry 'system/b': appears twice"
    _write(tmp_path / "p.zip", GOOD, good)
    assert _error(p, max_entries=2) == f"{p}: zip: 3 entries, more than the limit of 2"
    assert _error(p, max_manifest_bytes=10) == f"{p}: manifest.pb: {len(good)} bytes, more than the limit of 10"
    unsafe = {"../evil": b"x"}
    _write(tmp_path / "p.zip", unsafe, _manifest(unsafe).SerializeToString())
    assert _error(p) == f"{p}: manifest.pb payload name \"../evil\": a '..' component is not allowed"
    _write(tmp_path / "p.zip", {"system/b": b"whole file"}, _manifest({"system/b": b"whole file"}).SerializeToString())
    assert _error(p) == f"{p}: manifest.pb files: a: entry 'patch/system/a.p' is not in the payload"
    bad_path = _manifest(GOOD)
    bad_path.files.add(path=b"/etc/passwd", op=pb.FileOperation.DELETE)
    _write(tmp_path / "p.zip", GOOD, bad_path.SerializeToString())
    assert _error(p) == f'{p}: manifest.pb files path "/etc/passwd": absolute paths are not allowed'


def test_entry_inflating_beyond_its_declared_size_is_refused(tmp_path: Path) -> None:
    """A deflate stream of 1 MB of zeros whose headers claim 10 bytes (a zip bomb's shape)."""
    bomb = {**GOOD, "system/b": b"\0" * 1_000_003}
    small = {**GOOD, "system/b": b"\0" * 10}
    path = tmp_path / "p.zip"
    _write(path, bomb, _manifest(small).SerializeToString())
    raw = bytearray(path.read_bytes())
    size_field = (1_000_003).to_bytes(4, "little")
    assert raw.count(size_field) == 2  # local header and central directory
    raw[:] = raw.replace(size_field, (10).to_bytes(4, "little"))
    path.write_bytes(raw)
    assert _error(str(path)) == f"{path}: zip entry system/b: holds more than its declared 10 bytes"
