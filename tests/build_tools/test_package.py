"""package: exact manifest of a hand-made pair, patches that apply, reproducibility, input checks."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import pytest
from google.protobuf import text_format

import package_fixture as fx
from build_helpers import run_ok, run_tool
from ota.format import package_reader
from ota.format.patch import apply_patch
from ota.proto import ota_manifest_pb2 as pb

Op = pb.FileOperation


def _ci(data: bytes) -> pb.ContentInfo:
    return pb.ContentInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest(), sha1=hashlib.sha1(data).hexdigest())


def _fc(data: bytes) -> pb.FileContent:
    return pb.FileContent(size=len(data), sha256=hashlib.sha256(data).digest())


def _deflated(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _group(records: list[tuple[bytes, int, int, int, int, int, bytes]]) -> bytes:
    """The unchanged-group digest, restated from docs/package-format.md: per entry sorted by name,
    u32 name length, name, kind byte (1 file, 2 dir, 3 symlink), u32 mode, u32 uid, u32 gid,
    u64 size, u32 data length, data (a file's raw SHA-256, a link's text)."""
    out = hashlib.sha256()
    for name, kind, mode, uid, gid, size, data in sorted(records):
        out.update(struct.pack(">I", len(name)) + name + struct.pack(">BIIIQI", kind, mode, uid, gid, size, len(data)))
        out.update(data)
    return out.digest()


def _data(items: list[fx.Item], path: str | bytes) -> bytes:
    return next(item.data for item in items if item.path == (path.decode() if isinstance(path, bytes) else path))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pkg")
    fx.build_inputs(work)
    run_ok("ota.actions.package_writer", "--params", "params.json", "--out", "out.zip", cwd=work)
    return work


def _expected_manifest(work: Path) -> pb.OtaManifest:
    s, t = (lambda p: _fc(_data(fx.SOURCE, p))), (lambda p: _fc(_data(fx.TARGET, p)))
    m = pb.OtaManifest(format_version=2, type=pb.OtaManifest.INCREMENTAL)
    m.precondition.device.append("sargo")
    m.precondition.build_fingerprint.append("v1/fp")
    m.precondition.timestamp = 1000
    m.postcondition.device.append("sargo")
    m.postcondition.build_fingerprint.append("v2/fp")
    m.postcondition.timestamp = 2000
    tool_patch = (work / "p0.data").read_bytes()
    new = _deflated(_data(fx.TARGET, "etc/new"))  # one line repeated: deflate pays
    # bin, bin/keep, etc and lib are unchanged: no operation, only their directories' groups.
    m.files.add(
        path=b"bin/tool",
        op=Op.PATCH,
        source_kind=Op.SOURCE_FILE,
        source=s("bin/tool"),
        target=t("bin/tool"),
        data=pb.DataSlice(offset=0, length=len(tool_patch)),
        method=pb.BSDIFF,
        mode=0o750,
        gid=2000,
    )
    m.files.add(  # same contents, new mode and owner: a KEEP
        path=b"etc/conf",
        op=Op.KEEP,
        source_kind=Op.SOURCE_FILE,
        source=s("etc/conf"),
        target=t("etc/conf"),
        mode=0o600,
        uid=1000,
        gid=1000,
    )
    m.files.add(
        path=b"etc/new",
        op=Op.WRITE,
        target=t("etc/new"),
        data=pb.DataSlice(offset=len(tool_patch), length=len(new), compression=pb.DataSlice.DEFLATED),
        method=pb.WHOLE,
        mode=0o644,
    )
    m.files.add(path=b"etc/old", op=Op.DELETE, source_kind=Op.SOURCE_FILE, source=s("etc/old"))
    m.files.add(  # random bytes: deflate does not pay, stored
        path=b"etc/random",
        op=Op.WRITE,
        source_kind=Op.SOURCE_FILE,
        source=s("etc/random"),
        target=t("etc/random"),
        data=pb.DataSlice(offset=len(tool_patch) + len(new), length=len(fx.RANDOM_NEW)),
        method=pb.WHOLE,
        mode=0o644,
    )
    m.files.add(path=b"lib/libc.so", op=Op.SYMLINK, symlink_target=b"libc.so.6", mode=0o777)
    m.files.add(path=b"lib/link", op=Op.DELETE, source_kind=Op.SOURCE_SYMLINK)
    m.files.add(path=b"var", op=Op.MKDIR, mode=0o771, uid=1000, gid=1000)
    boot_patch = (work / "boot.data").read_bytes()
    m.partitions.add(
        name="boot",
        source=_ci(fx.boot_image(fx.RAMDISK_OLD)),
        target=_ci(fx.boot_image(fx.RAMDISK_NEW)),
        entry="patch/boot.img.p",
        method=pb.IMGDIFF,
    )
    m.cache_bytes_required = len(fx.boot_image(fx.RAMDISK_OLD)) + len(boot_patch) + len(tool_patch)
    blob = tool_patch + new + fx.RANDOM_NEW
    for name, data in (("patch/boot.img.p", boot_patch), ("payload.bin", blob)):
        m.payload.add(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    keep = _data(fx.SOURCE, "bin/keep")
    root = [(b"bin", 2, 0o755, 0, 2000, 0, b""), (b"etc", 2, 0o755, 0, 0, 0, b""), (b"lib", 2, 0o755, 0, 0, 0, b"")]
    m.unchanged.add(directory=b"", count=3, sha256=_group(root))
    bin_keep = [(b"keep", 1, 0o755, 0, 2000, len(keep), hashlib.sha256(keep).digest())]
    m.unchanged.add(directory=b"bin", count=1, sha256=_group(bin_keep))
    return m


def test_manifest_is_exactly_the_hand_computed_one(built: Path) -> None:
    with package_reader.open_package(str(built / "out.zip")) as package:
        assert text_format.MessageToString(package.manifest) == text_format.MessageToString(_expected_manifest(built))
        assert package.manifest_bytes == package.manifest.SerializeToString(deterministic=True)


def test_every_patch_applies_to_its_source_to_the_exact_target(built: Path) -> None:
    sources = {op.path: _data(fx.SOURCE, op.path) for op in _expected_manifest(built).files if op.op == Op.PATCH}
    sources["boot"] = fx.boot_image(fx.RAMDISK_OLD)
    with package_reader.open_package(str(built / "out.zip")) as package:
        ops = [
            *[op for op in package.manifest.files if op.op == Op.PATCH],
            *[p for p in package.manifest.partitions if p.method in (pb.BSDIFF, pb.IMGDIFF, pb.IMGDIFF_ZIP)],
        ]
        assert len(ops) == 2
        for op in ops:
            if isinstance(op, pb.FileOperation):
                patch, want = package.read_slice(op.data, op.data.length), op.target.sha256.hex()
                target = apply_patch(sources[op.path], patch, where=op.path.decode())
            else:
                target, want = apply_patch(sources[op.name], package.read(op.entry), where=op.entry), op.target.sha256
            assert hashlib.sha256(target).hexdigest() == want
        random = next(op for op in package.manifest.files if op.path == b"etc/random")
        assert package.read_slice(random.data, random.target.size) == fx.RANDOM_NEW


def test_zip_layout_is_fixed(built: Path) -> None:
    import zipfile

    with zipfile.ZipFile(built / "out.zip") as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == ["manifest.pb", "patch/boot.img.p", "payload.bin"]
    assert {(i.date_time, i.create_system, i.external_attr >> 16) for i in infos} == {
        ((1980, 1, 1, 0, 0, 0), 3, 0o100644)
    }
    # manifest deflated; patches stored (bzip2 inside); the blob stored (read by offset; each whole
    # file in it deflated only if that pays: see the manifest test) (docs/package-format.md).
    assert [i.compress_type for i in infos] == [8, 0, 0]


def test_package_is_byte_reproducible_across_cwd_tz_umask(tmp_path: Path, built: Path) -> None:
    work = tmp_path / "elsewhere" / "deeper"
    fx.build_inputs(work, umask=0o077, TZ="America/Los_Angeles")
    run_ok(
        "ota.actions.package_writer",
        "--params",
        "params.json",
        "--out",
        "again.zip",
        cwd=work,
        umask=0o077,
        TZ="America/Los_Angeles",
    )
    assert (work / "again.zip").read_bytes() == (built / "out.zip").read_bytes()


def test_full_package(tmp_path: Path, built: Path) -> None:
    params = json.loads((built / "params.json").read_text())
    files = [i.path for i in fx.TARGET if i.kind == "file"]
    params.update(
        type="FULL",
        source=None,
        file_patches=[],
        whole_files=[{"path": p, "file": str(built / "target" / p)} for p in files],
        partitions=[{"name": "boot", "info": "full_boot.json", "data": "full_boot.data"}],
    )
    params["target"]["system_manifest"] = str(built / "target.manifest.json")
    (tmp_path / "boot.img").write_bytes(fx.boot_image(fx.RAMDISK_NEW))
    run_ok(
        "ota.actions.file_patch",
        "--target",
        "boot.img",
        "--path",
        "boot.img",
        "--out_data",
        "full_boot.data",
        "--out_info",
        "full_boot.json",
        cwd=tmp_path,
    )
    (tmp_path / "p.json").write_text(json.dumps(params))
    run_ok("ota.actions.package_writer", "--params", "p.json", "--out", "full.zip", cwd=tmp_path)
    with package_reader.open_package(str(tmp_path / "full.zip")) as package:
        m = package.manifest
        assert m.type == pb.OtaManifest.FULL and list(m.precondition.device) == ["sargo"]
        assert not m.precondition.build_fingerprint and m.cache_bytes_required == 0
        assert [(op.path.decode(), Op.Op.Name(op.op)) for op in m.files if op.op in (Op.WRITE, Op.DELETE)] == [
            (p, "WRITE") for p in files
        ]
        assert [(p.name, p.entry, p.HasField("source")) for p in m.partitions] == [("boot", "boot.img", False)]
        assert package.read("boot.img") == fx.boot_image(fx.RAMDISK_NEW)
        assert not m.unchanged and max(e.name for e in m.payload) == "payload.bin"
        tool = next(op for op in m.files if op.path == b"bin/tool")
        assert package.read_slice(tool.data, tool.target.size) == _data(fx.TARGET, "bin/tool")


def _edit(work: Path, change) -> str:  # type: ignore[no-untyped-def]
    params = json.loads((work / "params.json").read_text())
    change(params)
    (work / "bad.json").write_text(json.dumps(params))
    proc = run_tool("ota.actions.package_writer", "--params", "bad.json", "--out", "bad.zip", cwd=work)
    assert proc.returncode == 1 and not (work / "bad.zip").exists()
    return proc.stderr


def _set(key: str, value: object):  # type: ignore[no-untyped-def]
    return lambda p: p.__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["file_patches"].append(p["file_patches"][0]), 'bad.json: file_patches: "bin/tool" listed twice'),
        (
            lambda p: p["whole_files"].append({"path": "bin/tool", "file": "target/bin/tool"}),
            "bad.json: bin/tool: listed in both file_patches and whole_files",
        ),
        (
            lambda p: p["whole_files"].append({"path": "../etc/passwd", "file": "x"}),
            "bad.json: whole_files[1].path \"../etc/passwd\": a '..' component is not allowed",
        ),
        (
            lambda p: p["whole_files"].append({"path": "/abs", "file": "x"}),
            'bad.json: whole_files[1].path "/abs": absolute paths are not allowed',
        ),
        (
            lambda p: p["whole_files"].append({"path": "a//b", "file": "x"}),
            "bad.json: whole_files[1].path \"a//b\": an empty component ('//' or a trailing '/') is not allowed",
        ),
        (
            lambda p: p["whole_files"].append({"path": "a\0b", "file": "x"}),
            'bad.json: whole_files[1].path "a\\000b": a NUL byte is not allowed in a file name',
        ),
        (
            lambda p: p.__setitem__("whole_files", []),
            "bad.json: etc/new: new in the target build but has no file_patches or whole_files entry",
        ),
        (
            lambda p: p["file_patches"].pop(0),
            "bad.json: bin/tool: changed in the target build but has no file_patches or whole_files entry",
        ),
        (
            lambda p: p["whole_files"].append({"path": "var", "file": "x"}),
            "bad.json: var: has a file_patches/whole_files entry but is not a file of the target build",
        ),
        (
            lambda p: p["file_patches"][0].__setitem__("info", "p1.json"),
            'bad.json: bin/tool: its info file says path "etc/conf"',
        ),
        (
            lambda p: p["file_patches"][0].__setitem__("data", "p1.data"),
            "p1.data: sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 is not the patch info's data_sha256 ",
        ),
        (
            lambda p: p["target"].__setitem__("timestamp", 10),
            "bad.json: target.timestamp 10 is older than source.timestamp 1000: set downgrade to build a downgrade package",
        ),
        (
            lambda p: p.__setitem__("downgrade", True),
            "bad.json: downgrade: set, but the target build is not older than the source build",
        ),
        (
            lambda p: p["source"].__setitem__("device", "other"),
            "bad.json: target.device 'sargo' differs from source.device 'other'",
        ),
        (
            lambda p: p["partitions"][0].__setitem__("name", "../boot"),
            "bad.json: partitions: name '../boot' must match ",
        ),
        (lambda p: p.__setitem__("type", "DELTA"), "bad.json: type: 'DELTA' is not FULL or INCREMENTAL"),
        (lambda p: p["target"].pop("fingerprint"), "bad.json: target.fingerprint: missing"),
    ],
)
def test_bad_params_are_one_line_errors(built: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    stderr = _edit(built, change)
    assert stderr.startswith("package: error: " + message) and stderr.count("\n") == 1, stderr


def test_stale_patch_info_is_refused(built: Path) -> None:
    def swap_target(p: dict) -> None:
        p["target"]["system_manifest"] = "source.manifest.json"
        p["whole_files"] = []

    stderr = _edit(built, swap_target)
    assert stderr.startswith("package: error: bad.json: bin/tool: patch info target ")
    assert "is not the target build's" in stderr
