"""The checks before the first write, one by one: applypatch's dry run, the manifest rules, the
device's kinds, and errors that must be one line (OSError, a real address-space limit)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

from apply_helpers import TARGET_FP, _boot, _noise, make_release, source_spec, target_spec
from ota.actions import make_bsdiff
from ota.device.applypatch import protocol
from ota.device.applypatch.cache import Cache
from ota.device.applypatch.device_config import DeviceConfig, PartitionEntry
from ota.device.applypatch.spec import Digest
from ota.device.fsops import FsOps
from ota.device.updater.manifest_rules import check_manifest
from ota.errors import OtaError
from ota.format.layout import MANIFEST_ENTRY
from ota.proto import ota_manifest_pb2 as pb
from ota.testing import device_check as dc
from ota.testing.builds import make_package, write_build
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss

Op = pb.FileOperation
OLD = b"".join(b"line %d of the old file\n" % i for i in range(2000))
NEW = OLD[:20_000] + b"a change\n" + OLD[20_000:]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("release")))


# --- protocol.dry_run -----------------------------------------------------------------------------


def _context(tmp_path, partition: str | None = None) -> protocol.Context:
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    partitions = {} if partition is None else {"boot": PartitionEntry("boot", "file", partition)}
    config = DeviceConfig(partitions=partitions, cache_dir=str(cache), cache_limit=None)
    return protocol.Context(config=config, cache=Cache(str(cache), None), ops=FsOps(), out=lambda line: None)


def _file_request(path: str, patch: str, target: bytes = NEW) -> protocol.PatchRequest:
    return protocol.PatchRequest(
        source=path,
        target=path,
        target_size=len(target),
        target_digest=Digest("sha256", hashlib.sha256(target).hexdigest()),
        patches=((Digest("sha256", hashlib.sha256(OLD).hexdigest()), patch),),
    )


def test_dry_run_of_a_file_builds_the_target_and_writes_nothing(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(OLD)
    patches = {"the patch": make_bsdiff.diff(OLD, NEW)}
    ctx = _context(tmp_path)
    assert protocol.dry_run(ctx, _file_request(str(path), "the patch"), patches.__getitem__) == protocol.PATCHED
    assert path.read_bytes() == OLD and sorted(os.listdir(tmp_path)) == ["cache", "file"]
    assert os.listdir(tmp_path / "cache") == []
    path.write_bytes(NEW)  # a rerun after the patch step: nothing to build, the patch is not read
    assert protocol.dry_run(ctx, _file_request(str(path), "the patch"), {}.__getitem__) == protocol.ALREADY


def test_dry_run_refuses_a_patch_whose_result_is_not_the_target(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(OLD)
    wrong = make_bsdiff.diff(OLD, NEW[:-1] + b"X")  # the right size, other contents
    with pytest.raises(OtaError) as error:
        protocol.dry_run(_context(tmp_path), _file_request(str(path), "p"), lambda _: wrong)
    assert str(error.value).startswith(f"p: patch result ({len(NEW)} bytes, sha256 ")
    assert path.read_bytes() == OLD


def test_dry_run_of_a_torn_partition_patches_from_the_cache_copy(tmp_path):
    image = tmp_path / "boot.img"
    image.write_bytes((NEW[:5000] + OLD[5000:]).ljust(len(NEW) + 100, b"\0"))  # torn; the backup holds the source
    ctx = _context(tmp_path, str(image))
    ctx.cache.save_backup(OLD, ctx.ops)
    spec = f"EMMC:boot:{len(OLD)}:{hashlib.sha256(OLD).hexdigest()}:{len(NEW)}:{hashlib.sha256(NEW).hexdigest()}"
    request = protocol.PatchRequest(
        spec,
        spec,
        len(NEW),
        Digest("sha256", hashlib.sha256(NEW).hexdigest()),
        ((Digest("sha256", hashlib.sha256(OLD).hexdigest()), "p"),),
    )
    patch = make_bsdiff.diff(OLD, NEW)
    before = image.read_bytes()
    assert protocol.dry_run(ctx, request, lambda _: patch) == protocol.PATCHED
    assert image.read_bytes() == before and ctx.cache.load_backup() == OLD
    big = protocol.PatchRequest(spec, spec, 1 << 40, request.target_digest, request.patches)
    with pytest.raises(OtaError, match="boot"):
        protocol.dry_run(ctx, big, lambda _: patch)


# --- manifest rules -------------------------------------------------------------------------------


def _manifest(*ops: pb.FileOperation, full: bool = False) -> pb.OtaManifest:
    manifest = pb.OtaManifest(type=pb.OtaManifest.FULL if full else pb.OtaManifest.INCREMENTAL)
    manifest.files.add(path=b"etc", op=Op.MKDIR, mode=0o755, source_kind=Op.SOURCE_DIR)
    manifest.files.extend(ops)
    return manifest


@pytest.mark.parametrize(
    "op, problem",
    [
        (Op(path=b"etc/a", op=Op.MKDIR, mode=0o40755), "mode 40755 has bits beyond the permission bits 7777"),
        (
            Op(path=b"etc/a", op=Op.MKDIR, mode=0o755, gid=0xFFFFFFFF),
            "gid 4294967295 is (uid_t)-1, which chown reads as 'leave unchanged'",
        ),
        (
            Op(path=b"etc/a", op=Op.SYMLINK, symlink_target=b"x\0y"),
            "symlink_target 'x\\000y' has a NUL byte or is longer than PATH_MAX allows",
        ),
        (Op(path=b"etc/a", op=Op.DELETE), "source_kind SOURCE_ABSENT: a DELETE removes something the source build has"),
        (
            Op(path=b"etc/a", op=Op.DELETE, source_kind=Op.SOURCE_FILE),
            "source_kind SOURCE_FILE does not agree with source (unset: set exactly for a regular file)",
        ),
        (
            Op(path=b"etc/a", op=Op.MKDIR, source_kind=Op.SOURCE_SYMLINK, source=pb.FileContent(size=1)),
            "source_kind SOURCE_SYMLINK does not agree with source (set: set exactly for a regular file)",
        ),
        (Op(path=b"etc/a", op=Op.MKDIR, source_kind=7), "source_kind 7 is unknown"),
        (
            Op(path=b"etc/a/b", op=Op.MKDIR),
            (
                "parent 'etc/a' is not in the package, not a directory the target has "
                "(MKDIR, or an unchanged entry its directory's group covers)"
            ),
        ),
    ],
)
def test_manifest_rules(op, problem):
    with pytest.raises(OtaError) as error:
        check_manifest(_manifest(op), "pkg.zip", {})
    assert str(error.value) == f"pkg.zip: manifest.pb files: '{op.path.decode()}': {problem}"


def test_full_package_only_writes():
    with pytest.raises(OtaError) as error:
        check_manifest(_manifest(Op(path=b"etc/a", op=Op.DELETE), full=True), "pkg.zip", {})
    assert str(error.value) == (
        "pkg.zip: manifest.pb files: 'etc/a': op DELETE: a FULL package only writes (WRITE, MKDIR, SYMLINK)"
    )


_TARGET = pb.FileContent(size=3, sha256=b"\xab" * 32)


@pytest.mark.parametrize(
    "op, problem",
    [
        (
            Op(path=b"etc/a", op=Op.WRITE, method=pb.WHOLE, mode=0o644, target=_TARGET, data=pb.DataSlice(length=4)),
            "data: 4 stored bytes, but the target is 3 bytes",
        ),
        (
            Op(
                path=b"etc/a",
                op=Op.PATCH,
                method=pb.BSDIFF,
                mode=0o644,
                source_kind=Op.SOURCE_FILE,
                source=_TARGET,
                target=_TARGET,
                data=pb.DataSlice(length=4, compression=pb.DataSlice.DEFLATED),
            ),
            "data: a patch is stored, never deflated",
        ),
        (
            Op(
                path=b"etc/a",
                op=Op.WRITE,
                method=pb.WHOLE,
                mode=0o644,
                target=pb.FileContent(size=3, sha256=b"\xab" * 20),
                data=pb.DataSlice(length=3),
            ),
            "target.sha256: 20 bytes, not 32",
        ),
    ],
)
def test_a_file_s_data_must_fit_its_target(op, problem):
    with pytest.raises(OtaError) as error:
        check_manifest(_manifest(op), "pkg.zip", {})
    assert str(error.value) == f"pkg.zip: manifest.pb files: 'etc/a': {problem}"


def test_a_parent_no_operation_names_needs_its_directory_s_group():
    """`usr` is unchanged (no operation): a path below it is accepted only when the root's group
    covers `usr`, so the device proves `usr` is the source build's directory before any write."""
    write = Op(path=b"usr/a", op=Op.MKDIR, mode=0o755)
    manifest = _manifest(write)
    with pytest.raises(OtaError, match="parent 'usr' is not in the package"):
        check_manifest(manifest, "pkg.zip", {})
    manifest.unchanged.add(directory=b"", count=1, sha256=b"\0" * 32)
    check_manifest(manifest, "pkg.zip", {})
    manifest.unchanged.add(directory=b"usr/a/b", count=1, sha256=b"\0" * 32)  # below a MKDIR, not grouped
    with pytest.raises(OtaError, match="unchanged: 'usr/a/b': parent 'usr/a/b' is not in the package"):
        check_manifest(manifest, "pkg.zip", {})


# --- the device -------------------------------------------------------------------------------------


def _refused(package: str, directory: str, config: str, expected: str) -> None:
    before = dc.device_hash(directory)
    result = subprocess.run(
        [sys.executable, "-m", "ota.testing.testbench_cli", "ota_apply", "--package", package, "--device", config],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"ota_apply: error: {expected}\n")
    assert dc.device_hash(directory) == before


def test_a_directory_the_update_removes_must_hold_only_deleted_paths(release, tmp_path):
    directory = str(tmp_path / "dev")
    config = dc.materialize(release.source, directory, release.layout)
    (tmp_path / "dev" / "system" / "app" / "becomes_file" / "junk").write_bytes(b"left by someone\n")
    _refused(
        release.incremental,
        directory,
        config,
        f"{directory}/system/app/becomes_file: directory holds "
        "'junk', which no build has there; the update would fail "
        "removing the directory",
    )


def test_a_kind_no_build_has_is_refused(release, tmp_path):
    """etc/becomes_dir is a file in the source build and a directory in the target, never a link."""
    directory = str(tmp_path / "dev")
    config = dc.materialize(release.source, directory, release.layout)
    path = tmp_path / "dev" / "system" / "etc" / "becomes_dir"
    path.unlink()
    path.symlink_to("hosts")
    _refused(
        release.incremental,
        directory,
        config,
        f"{directory}/system/etc/becomes_dir: is a symlink; the "
        "source build has a file and the target a directory here",
    )


def test_an_os_error_is_one_line(release, tmp_path):
    """A journal that is a directory: reading it fails with EISDIR, which must not be a traceback."""
    directory = str(tmp_path / "dev")
    config = dc.materialize(release.source, directory, release.layout)
    os.mkdir(os.path.join(directory, "cache", "ota_journal"))
    _refused(
        release.incremental, directory, config, f"{directory}/cache/ota_journal: journal: cannot read: Is a directory"
    )


def test_apply_under_a_real_address_space_limit(release, tmp_path):
    """800 MiB of address space (prlimit --as): nothing may reserve a bound instead of the data."""
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    result = subprocess.run(
        [
            "prlimit",
            "--as=838860800",
            sys.executable,
            "-m",
            "ota.testing.testbench_cli",  # the release's devices simulate their radio on NAND
            "ota_apply",
            "--package",
            release.incremental,
            "--device",
            config,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"ota_apply: updated to {TARGET_FP}\n"
    assert dc.compare(config, release.target) == []


# --- a partition flashed whole, cut half way ------------------------------------------------------


@pytest.fixture(scope="module")
def whole_boot(tmp_path_factory):
    """An incremental whose boot image is new noise, so its patch is too big and boot ships WHOLE."""
    directory = str(tmp_path_factory.mktemp("whole_boot"))
    target = target_spec()
    boot = _boot(_noise(30, 60_000), _noise(31, 40_000), b"console=ttyS0 other")
    target = dataclasses.replace(target, partitions={**target.partitions, "boot": boot})
    source = write_build(source_spec(), os.path.join(directory, "source"))
    target_build = write_build(target, os.path.join(directory, "target"))
    package = make_package(source, target_build, directory, os.path.join(directory, "incremental.zip"))
    with zipfile.ZipFile(package) as archive:
        manifest = pb.OtaManifest.FromString(archive.read(MANIFEST_ENTRY))
    assert {p.name: p.method for p in manifest.partitions}["boot"] == pb.WHOLE
    return source, target_build, package, dc.layout_for(source, target_build, mtd=("radio",))


def _boot_tear(config: str, package: str) -> int:
    """The index of a tearable write into the boot partition, from a clean run's operation log."""
    ops = FaultyFsOps()  # counts the operations
    assert dc.apply(config, package, ops) == "applied"
    return next(record.index for record in ops.log if record.tearable and record.target.startswith("EMMC:boot@"))


def test_a_rerun_finishes_a_whole_partition_cut_half_way(whole_boot, tmp_path):
    source, target, package, layout = whole_boot
    clean = str(tmp_path / "clean")
    index = _boot_tear(dc.materialize(source, clean, layout), package)
    device = str(tmp_path / "device")
    config = dc.materialize(source, device, layout)
    with pytest.raises(PowerLoss):
        dc.apply(config, package, FaultyFsOps(FaultPoint("tear", index)))
    assert dc.apply(config, package) == "applied"
    assert dc.compare(config, target) == []


def test_a_fresh_run_refuses_a_garbage_whole_partition(whole_boot, tmp_path):
    source, _target, package, layout = whole_boot
    config = dc.materialize(source, str(tmp_path / "device"), layout)
    boot = dc.device_mod.load(config).hardware.partitions["boot"].path
    with open(boot, "r+b") as image:
        image.write(b"garbage" * 100)
    before = dc.device_hash(str(tmp_path / "device"))
    with pytest.raises(OtaError) as err:
        dc.apply(config, package)
    assert str(err.value) == (
        "partition boot: holds neither the source nor the target image (and the cache holds no copy of either)"
    )
    assert dc.device_hash(str(tmp_path / "device")) == before
