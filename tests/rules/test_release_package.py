"""//release:incremental_ota and //release:full_ota: exact contents, and the patches work.

Expectations come from the two system manifests (what v1 and v2 contain), not from the package:
every path's operation, the exact zip entries, and that applying every patch to v1's bytes gives
v2's (files and the boot image). Both packages are signed by the OtaSign action with the TEST key:
the signature verifies with its public half and with no other key.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pathlib
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ota.errors import OtaError
from ota.format import bootimg, layout, signing
from ota.format.package_reader import open_package
from ota.format.patch import apply_patch
from ota.proto import ota_manifest_pb2 as pb

REPO = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): stay inside Bazel runfiles
RELEASE = REPO / "release"
Op = pb.FileOperation


def _entries(version: int) -> dict[str, dict]:
    doc = json.loads((RELEASE / f"v{version}_system.manifest.json").read_text())
    return {e["path"]: e for e in doc["entries"]}


TEST_PUBLIC_KEY = REPO / "release/keys/TEST_ONLY_ota_ed25519.pub.pem"
TEST_KEY_ID = "5ef43117130f6ea998f86a374f063b1b1b9b173fad1e3955d56afa7399bf477b"  # release/keys/README.md
PACKAGES = ("incremental_ota.zip", "full_ota.zip")


def _runfile(exec_path: str) -> pathlib.Path:
    """A tree.json exec path (bazel-out/<config>/bin/release/...) as a runfiles path."""
    parts = exec_path.split("/")
    if parts[0] == "bazel-out":
        parts = parts[3:]
    return REPO.joinpath(*parts)


V1, V2 = _entries(1), _entries(2)
FILES1 = {p for p, e in V1.items() if e["kind"] == "file"}
FILES2 = {p for p, e in V2.items() if e["kind"] == "file"}
CHANGED = {p for p in FILES1 & FILES2 if V1[p]["sha256"] != V2[p]["sha256"]}
ADDED = FILES2 - FILES1
# Firmware blobs are incompressible and rewritten whole in v2: no patch can pay off.
NOT_WORTH_PATCHING = {p for p in CHANGED if p.startswith("firmware/")}


def test_release_is_realistic_in_size_and_mix() -> None:
    assert len(FILES1) >= 500 and sum(V1[p]["size"] for p in FILES1) >= 30_000_000
    assert len(CHANGED) >= 20 and len(ADDED) >= 10 and len(FILES1 - FILES2) >= 5
    suffixes = {pathlib.PurePath(p).suffix for p in CHANGED}
    assert {".so", ".ko", ".conf", ".gz", ".apk", ".jar", ".bin", ".txt", ".prop"} <= suffixes
    assert sum(e["kind"] == "symlink" for e in V2.values()) >= 20
    assert NOT_WORTH_PATCHING


@pytest.fixture(scope="module")
def incremental():
    with open_package(str(RELEASE / "incremental_ota.zip")) as pkg:
        pkg.verify_all()
        yield pkg


def _same(old: dict, new: dict) -> bool:
    """A path the package leaves alone: same kind, contents or link, mode and owner in both trees."""
    keys = ("kind", "mode", "uid", "gid", "sha256", "target")
    return all(old.get(key) == new.get(key) for key in keys)


UNCHANGED = {p for p in set(V1) & set(V2) if _same(V1[p], V2[p])}


def test_incremental_entries_are_exactly_the_expected_ones(incremental) -> None:
    assert set(incremental.payload) == {"patch/boot.img.p", layout.PAYLOAD_BLOB_ENTRY}
    with_data = {op.path.decode(): op.op for op in incremental.manifest.files if op.HasField("data")}
    assert with_data == dict.fromkeys(CHANGED - NOT_WORTH_PATCHING, Op.PATCH) | dict.fromkeys(
        ADDED | NOT_WORTH_PATCHING, Op.WRITE
    )


@pytest.mark.parametrize("name", PACKAGES)
def test_zip_holds_the_payload_the_manifest_and_the_signature(name: str) -> None:
    with open_package(str(RELEASE / name)) as pkg:
        payload = set(pkg.payload)
    with zipfile.ZipFile(RELEASE / name) as zf:
        names = zf.namelist()
    assert len(names) == len(set(names))
    assert set(names) == payload | {layout.MANIFEST_ENTRY, layout.SIGNATURE_ENTRY}
    assert names[-1] == layout.SIGNATURE_ENTRY  # appended by OtaSign, nothing else rewritten


@pytest.mark.parametrize("name", PACKAGES)
def test_package_is_signed_by_the_test_key(name: str) -> None:
    assert signing.verify(str(RELEASE / name), [signing.load_public_key(str(TEST_PUBLIC_KEY))]) == TEST_KEY_ID


@pytest.mark.parametrize("name", PACKAGES)
def test_signature_does_not_verify_with_another_key(name: str) -> None:
    other = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    with pytest.raises(
        OtaError, match=f"unknown key: signed only by keys the device does not trust \\({TEST_KEY_ID}\\)"
    ):
        signing.verify(str(RELEASE / name), [other])


def test_incremental_operation_for_every_path(incremental) -> None:
    ops = {f.path.decode(): f for f in incremental.manifest.files}
    assert list(ops) == sorted(ops)
    assert set(ops) == (set(V1) | set(V2)) - UNCHANGED
    assert sum(group.count for group in incremental.manifest.unchanged) == len(UNCHANGED) > 100
    for path, op in ops.items():
        new = V2.get(path)
        if new is None:
            want = Op.DELETE
        elif new["kind"] == "dir":
            want = Op.MKDIR
        elif new["kind"] == "symlink":
            want = Op.SYMLINK
            assert op.symlink_target == new["target"].encode(), path
        elif path in ADDED or path in NOT_WORTH_PATCHING:
            want = Op.WRITE
        elif path in CHANGED:
            want = Op.PATCH
        else:
            want = Op.KEEP
        assert Op.Op.Name(op.op) == Op.Op.Name(want), path
        if new is not None:
            assert (op.mode, op.uid, op.gid) == (new["mode"], new["uid"], new["gid"]), path
    # xbin/su (mode 4750, group 2000: release/BUILD) is the same in both builds: xbin's unchanged
    # group covers it. The owners of changed paths reach their operations.
    assert "xbin/su" in UNCHANGED and (V2["xbin/su"]["mode"], V2["xbin/su"]["gid"]) == (0o4750, 2000)
    assert any(op.gid == 2000 for op in ops.values())


def test_every_file_patch_turns_v1_into_v2(incremental) -> None:
    tree1 = {e["path"]: e for e in json.loads((RELEASE / "v1_system.tree.json").read_text())["entries"]}
    ops = {f.path.decode(): f for f in incremental.manifest.files}
    methods = set()
    for path in sorted(CHANGED - NOT_WORTH_PATCHING):
        source = _runfile(tree1[path]["file"]).read_bytes()
        patch = incremental.read_slice(ops[path].data, ops[path].data.length)
        result = apply_patch(source, patch, where=path)
        assert hashlib.sha256(result).hexdigest() == V2[path]["sha256"], path
        methods.add(pb.PatchMethod.Name(ops[path].method))
    assert methods == {"BSDIFF", "IMGDIFF", "IMGDIFF_ZIP"}


def test_boot_patch_is_small_and_turns_v1_boot_into_v2_boot(incremental) -> None:
    (boot,) = incremental.manifest.partitions
    assert boot.name == "boot" and boot.method == pb.IMGDIFF
    source = (RELEASE / "v1_boot.img").read_bytes()
    patch = incremental.read(boot.entry)
    # Normalized (zlib) kernels let imgdiff work in uncompressed space: a few KB, not megabytes.
    assert len(patch) < len(source) // 100
    result = apply_patch(source, patch, where="boot.img")
    assert hashlib.sha256(result).hexdigest() == boot.target.sha256
    assert hashlib.sha256(source).hexdigest() == boot.source.sha256


def test_boot_kernel_is_normalized_gnu_gzip() -> None:
    """The release kernel is made by `gzip -9n`, whose stream zlib cannot reproduce; boot_image
    recompressed it with zlib (same contents), which is what keeps the boot patch small."""
    gnu = (RELEASE / "kernel_v1/Image.gz").read_bytes()
    kernel = bootimg.parse((RELEASE / "v1_boot.img").read_bytes(), "v1_boot.img").image.kernel
    assert kernel != gnu
    assert gzip.decompress(kernel) == gzip.decompress(gnu) == (RELEASE / "kernel_v1/Image").read_bytes()


def test_full_package_holds_every_v2_file_and_the_boot_image() -> None:
    with open_package(str(RELEASE / "full_ota.zip")) as pkg:
        pkg.verify_all()
        assert set(pkg.payload) == {"boot.img", layout.PAYLOAD_BLOB_ENTRY}
        for op in pkg.manifest.files:
            path = op.path.decode()
            if path in FILES2:
                assert op.op == Op.WRITE and op.target.sha256.hex() == V2[path]["sha256"], path
                assert hashlib.sha256(pkg.read_slice(op.data, op.target.size)).hexdigest() == V2[path]["sha256"]
