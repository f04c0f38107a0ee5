"""Every refusal: one exact error line, exit 1, and the device's full hash unchanged."""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile

import pytest

from apply_helpers import SOURCE_FP, make_release, rewrite_package, run_cli
from ota.proto import ota_manifest_pb2 as pb
from ota.testing import device_check as dc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_KEY = os.path.join("release", "keys", "TEST_ONLY_ota_ed25519.pem")
TEST_PUB = os.path.join("release", "keys", "TEST_ONLY_ota_ed25519.pub.pem")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("release")))


@pytest.fixture
def device(release, tmp_path):
    directory = str(tmp_path / "dev")
    return directory, dc.materialize(release.source, directory, release.layout)


def _refused(package: str, device: tuple[str, str], expected: str) -> None:
    directory, config = device
    before = dc.device_hash(directory)
    result = run_cli("--package", package, "--device", config)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"ota_apply: error: {expected}\n"
    assert dc.device_hash(directory) == before


def _edit_json(path: str, **changes) -> None:
    with open(path, encoding="utf-8") as stream:
        doc = json.load(stream)
    doc.update(changes)
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(doc, stream)


def test_wrong_device(release, device):
    directory, config = device
    _edit_json(config, name="marlin")
    _edit_json(os.path.join(directory, "build.json"), device="marlin")
    _refused(
        release.incremental, device, f"{release.incremental}: package is for device sailfish; this device is 'marlin'"
    )


def test_wrong_source_build(release, device):
    directory, _ = device
    _edit_json(os.path.join(directory, "build.json"), fingerprint="rules_ota/sailfish/0.9:user/release-keys")
    _refused(
        release.incremental,
        device,
        f"{release.incremental}: package updates build {SOURCE_FP}; the device "
        "runs 'rules_ota/sailfish/0.9:user/release-keys'",
    )


def test_older_target_needs_a_downgrade_package(release, device):
    directory, _ = device
    _edit_json(os.path.join(directory, "build.json"), timestamp=1_900_000_000)
    _refused(
        release.full,
        device,
        f"{release.full}: package build timestamp 1800000000 is older than the "
        "device's 1900000000 and the package is not a downgrade package",
    )


def _append(path: str) -> None:
    with open(path, "ab") as stream:
        stream.write(b"changed on the device\n")


def _create(path: str) -> None:
    with open(path, "wb") as stream:
        stream.write(b"not from any build\n")


_NEITHER = "(neither the source nor the target build's contents, and no matching cache copy)"


@pytest.mark.parametrize(
    "path, change, problem",
    [
        ("bin/sh", _append, f"system file is modified {_NEITHER}"),
        (
            "etc/hosts",
            _append,
            "<etc: 1 unchanged entry: at least one differs from the source build (contents, kind, link, mode or owner)",
        ),
        ("lib/libc.so", os.unlink, f"system file is missing {_NEITHER}"),
        (
            "app/same.apk",
            os.unlink,
            "<app: holds 0 entries the update leaves unchanged; the source build has 1 (an entry added or missing)",
        ),
        (
            "etc/new.conf",
            _create,
            ("unexpected file where the package creates a new one (not the target build's contents)"),
        ),
    ],
)
def test_system_file_not_as_expected(release, device, path, change, problem):
    """A problem starting with '<' names the directory whose unchanged group the path is in."""
    directory, _ = device
    change(os.path.join(directory, "system", path))
    where, problem = problem[1:].split(": ", 1) if problem.startswith("<") else (path, problem)
    _refused(release.incremental, device, f"{directory}/system/{where}: {problem}")


@pytest.mark.parametrize("name", ["boot", "radio"])
def test_partition_holding_neither_source_nor_target(release, device, name):
    directory, config = device
    image = os.path.join(directory, "partitions", f"{name}.img")
    if name == "radio":  # NAND: program garbage into the erased chip the way flash allows
        from ota.device.applypatch.backends import open_partition
        from ota.device.fsops import FsOps
        from ota.device.updater.device import load

        partition = open_partition("MTD", name, load(config).hardware, FsOps(), writable=True)
        partition.write_image(b"garbage" * 1000)
        partition.close()
    else:
        with open(image, "r+b") as stream:
            stream.write(b"garbage")
    _refused(
        release.incremental,
        device,
        f"partition {name}: holds neither the source nor the target image (and the cache holds no copy of either)",
    )


def test_not_enough_cache(release, tmp_path):
    layout = dc.Layout(release.layout.kinds, release.layout.capacity, cache_limit=100_000)
    directory = str(tmp_path / "dev")
    config = dc.materialize(release.source, directory, layout)
    with open(os.path.join(directory, "cache", "last_log"), "wb") as stream:
        stream.write(b"\0" * 50_000)
    result = run_cli("--package", release.incremental, "--device", config)
    assert result.returncode == 1
    # Numbers depend on the package; the sentence and the freeable bytes (the 50,000-byte log) do not.
    prefix = f"ota_apply: error: {directory}/cache: not enough cache space: the update needs "
    assert result.stderr.startswith(prefix) and result.stderr.endswith(
        "-byte reserve, 50000 are free and at most 50000 could be freed\n"
    ), result.stderr
    assert os.path.exists(os.path.join(directory, "cache", "last_log"))


def test_truncated_package(release, device, tmp_path):
    truncated = str(tmp_path / "truncated.zip")
    with open(release.incremental, "rb") as stream:
        data = stream.read()
    with open(truncated, "wb") as stream:
        stream.write(data[: len(data) // 2])
    _refused(truncated, device, f"{truncated}: not a zip file (no end of central directory record)")


def _data_of(package: str, path: bytes) -> tuple[pb.DataSlice, int]:
    """Where `path`'s patch or contents lie in the payload blob, and the blob's offset in the file."""
    with zipfile.ZipFile(package) as archive:
        manifest = pb.OtaManifest.FromString(archive.read("manifest.pb"))
        info = archive.getinfo("payload.bin")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    return next(op.data for op in manifest.files if op.path == path), start


def test_corrupted_patch_data(release, device, tmp_path):
    corrupted = str(tmp_path / "corrupted.zip")
    shutil.copyfile(release.incremental, corrupted)
    data, start = _data_of(corrupted, b"bin/sh")
    assert data.length > 40
    offset = start + data.offset + 40
    with open(corrupted, "r+b") as stream:
        stream.seek(offset)
        byte = stream.read(1)
        stream.seek(offset)
        stream.write(bytes([byte[0] ^ 0xFF]))
    with zipfile.ZipFile(corrupted) as archive:
        crc = archive.getinfo("payload.bin").CRC
    directory, config = device
    before = dc.device_hash(directory)
    result = run_cli("--package", corrupted, "--device", config)
    assert result.returncode == 1 and dc.device_hash(directory) == before
    assert re.fullmatch(
        rf"ota_apply: error: {re.escape(corrupted)}: zip entry payload.bin: CRC-32 "
        rf"[0-9a-f]{{8}} does not match the directory's {crc:08x}\n",
        result.stderr,
    ), result.stderr


@pytest.mark.parametrize("past", [0, 1, 1 << 40])
def test_manifest_data_past_the_end_of_the_blob(release, device, tmp_path, past):
    broken = str(tmp_path / "past-end.zip")

    def move_past_end(manifest, entries):
        blob = len(entries["payload.bin"])
        op = next(op for op in manifest.files if op.path == b"lib/libc.so")
        op.data.offset = blob - op.data.length + past

    rewrite_package(release.incremental, broken, move_past_end)
    with zipfile.ZipFile(broken) as archive:
        blob = archive.getinfo("payload.bin").file_size
        op = next(
            op for op in pb.OtaManifest.FromString(archive.read("manifest.pb")).files if op.path == b"lib/libc.so"
        )
    if past == 0:  # the last bytes of the blob: a slice that ends exactly at its end is in range
        result = run_cli("--package", broken, "--device", device[1])
        assert "runs past the end" not in result.stderr
        return
    _refused(
        broken,
        device,
        f"{broken}: manifest.pb files: lib/libc.so: data: offset {op.data.offset} + length {op.data.length} "
        f"runs past the end of payload.bin ({blob} bytes)",
    )


def test_path_through_a_symlink_out_of_the_root_is_refused(release, device, tmp_path):
    """The device's lib/ is a symlink to a directory outside the root holding the source libc."""
    directory, _ = device
    outside = tmp_path / "outside"
    shutil.copytree(os.path.join(directory, "system", "lib"), outside, symlinks=True)
    shutil.rmtree(os.path.join(directory, "system", "lib"))
    os.symlink(str(outside), os.path.join(directory, "system", "lib"))
    outside_before = dc.device_hash(str(outside))
    _refused(
        release.incremental,
        device,
        f"{directory}/system: 5 unchanged entries: at least one differs from the source build "
        "(contents, kind, link, mode or owner)",
    )
    assert dc.device_hash(str(outside)) == outside_before


@pytest.fixture
def signed(release, tmp_path):
    from ota.format import signing

    out = str(tmp_path / "signed.zip")
    signing.sign(release.incremental, out, [signing.load_private_key(os.path.join(REPO, TEST_KEY))])
    return out


def _trust(config: str, keys: list[str]) -> None:
    _edit_json(config, trusted_keys=keys, policy={"require_signature": True})


def test_unsigned_package_refused_when_keys_are_trusted(release, device):
    _, config = device
    _trust(config, [os.path.join(REPO, TEST_PUB)])
    _refused(release.incremental, device, f"{release.incremental}: unsigned: no META-INF/ota/signature entry")


def test_signed_package_by_an_untrusted_key_refused(signed, device, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from ota.format import signing

    other = tmp_path / "other.pub.pem"
    other.write_bytes(signing.public_key_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    _, config = device
    _trust(config, [str(other)])
    result = run_cli("--package", signed, "--device", config)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"ota_apply: error: {signed}: unknown key: signed only by keys the device does not trust ("
    )


def test_signed_package_applies_with_the_trusted_key(release, signed, device):
    _, config = device
    _trust(config, [os.path.join(REPO, TEST_PUB)])
    result = run_cli("--package", signed, "--device", config)
    assert result.returncode == 0, result.stderr
    assert dc.compare(config, release.target) == []


def test_signatures_are_required_by_default(release, device):
    _, config = device
    with open(config, encoding="utf-8") as stream:
        doc = json.load(stream)
    del doc["policy"]
    with open(config, "w", encoding="utf-8") as stream:
        json.dump(doc, stream)
    _refused(release.incremental, device, f"{release.incremental}: unsigned: no META-INF/ota/signature entry")
