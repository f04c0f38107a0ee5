"""ota_inspect: manifest text and the size breakdown of a package with known sizes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from google.protobuf import text_format

from build_helpers import run_ok, run_tool
from ota.actions import zipwrite
from ota.proto import ota_manifest_pb2 as pb

ENTRIES = {"payload.bin": b"p" * 100 + b"w" * 50, "patch/boot.img.p": b"i" * 300}


def _package(path: Path) -> pb.OtaManifest:
    m = pb.OtaManifest(format_version=2, type=pb.OtaManifest.INCREMENTAL)
    m.files.add(
        path=b"a",
        op=pb.FileOperation.PATCH,
        data=pb.DataSlice(length=100),
        method=pb.BSDIFF,
        target=pb.FileContent(size=1000),
    )
    m.files.add(
        path=b"b",
        op=pb.FileOperation.WRITE,
        data=pb.DataSlice(offset=100, length=50),
        method=pb.WHOLE,
        target=pb.FileContent(size=50),
    )
    m.files.add(path=b"c", op=pb.FileOperation.DELETE)
    m.unchanged.add(directory=b"", count=7, sha256=b"\1" * 32)
    m.partitions.add(name="boot", entry="patch/boot.img.p", method=pb.IMGDIFF, target=pb.ContentInfo(size=4000))
    for name, data in sorted(ENTRIES.items()):
        m.payload.add(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    sources = [zipwrite.ZipSource(n, zipwrite.Compression.STORED, data=d) for n, d in ENTRIES.items()]
    zipwrite.write_zip(
        str(path),
        [*sources, zipwrite.ZipSource("manifest.pb", zipwrite.Compression.STORED, data=m.SerializeToString())],
    )
    return m


def test_report(tmp_path: Path) -> None:
    manifest = _package(tmp_path / "p.zip")
    manifest_bytes = manifest.SerializeToString()
    size = (tmp_path / "p.zip").stat().st_size
    # Each entry: a 30-byte local header and a 46-byte central one, both carrying the name.
    names = [*ENTRIES, "manifest.pb"]
    zip_structure = sum(30 + 46 + 2 * len(name) for name in names) + 22
    assert size == 450 + len(manifest_bytes) + zip_structure
    out = run_ok("ota.cli.ota_inspect", "--top", "2", "p.zip", cwd=tmp_path).stdout
    assert (
        out
        == "\n".join(
            [
                "# manifest.pb",
                text_format.MessageToString(manifest).rstrip(),
                "",
                "# payload by operation and method",
                "         300 bytes       1 items  partition IMGDIFF",
                "         100 bytes       1 items  file PATCH BSDIFF stored",
                "          50 bytes       1 items  file WRITE WHOLE stored",
                "",
                "# largest items (top 2)",
                "         300  patch/boot.img.p",
                "         100  payload.bin@0+100  a",
                "",
                (
                    "# total: 450 payload bytes in 3 items; 3 operations, 7 unchanged paths in 1 directories; "
                    "a full package would carry 5050 bytes; ratio 8.91%"
                ),
                "",
                "# package bytes",
                "         450 bytes  payload in the zip (450 bytes inflated)",
                f"{len(manifest_bytes):>12} bytes  manifest.pb ({len(manifest_bytes)} bytes inflated)",
                "           0 bytes  META-INF/ota/signature",
                f"{zip_structure:>12} bytes  zip headers and central directory",
                f"# package: {size} bytes, payload: 450 bytes, ratio {size / 450:.4f}",
            ]
        )
        + "\n"
    )


def test_bad_package_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "p.zip").write_bytes(b"PK\x03\x04 nonsense")
    proc = run_tool("ota.cli.ota_inspect", "p.zip", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        "ota_inspect: error: p.zip: not a zip file (no end of central directory record)\n",
    )
    assert run_tool("ota.cli.ota_inspect", cwd=tmp_path).returncode == 2
