"""Everything that can fail an update is decided before the first write, and no stuck state lacks a way out.

Packages are the real release built by the rules' tools (apply_helpers), mutated and signed with
the TEST-ONLY key the device trusts (the hostile-pipeline model: a signature proves nothing about
a manifest's sanity). Each refusal must be one line and leave the device directory, and the
working directory the tool runs in, byte for byte as they were; the genuine package must still
apply afterwards. The stuck states are the ones docs/ota_apply.md ("Stuck states and the way
out") lists; each is produced for real (a cut, an I/O error, a device changed mid-update,
another package's journal, an unreadable journal) and left the documented way.
"""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from apply_helpers import make_release, rewrite_package, run_cli
from ota.device.updater.manifest_rules import shown
from ota.errors import OtaError
from ota.format import signing
from ota.proto import ota_manifest_pb2 as pb
from ota.testing import device_check as dc
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_KEY = os.path.join(REPO, "release", "keys", "TEST_ONLY_ota_ed25519.pem")
TEST_PUB = os.path.join(REPO, "release", "keys", "TEST_ONLY_ota_ed25519.pub.pem")
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("release")))


@pytest.fixture(scope="module")
def signed(release, tmp_path_factory):
    """The genuine incremental and full packages, signed with the TEST-ONLY key."""
    directory = tmp_path_factory.mktemp("signed")
    key = signing.load_private_key(TEST_KEY)
    out = {}
    for kind, package in (("incremental", release.incremental), ("full", release.full)):
        out[kind] = str(directory / f"{kind}.zip")
        signing.sign(package, out[kind], [key])
    return out


def _layout(release):
    return dc.Layout(
        release.layout.kinds, release.layout.capacity, release.layout.cache_limit, trusted_keys=(TEST_PUB,)
    )


@pytest.fixture
def device(release, tmp_path):
    directory = str(tmp_path / "dev")
    return directory, dc.materialize(release.source, directory, _layout(release))


def _hostile(release, tmp_path, name: str, edit) -> str:
    """The release incremental with `edit(manifest, entries)` applied, signed by the trusted key."""
    unsigned, out = str(tmp_path / f"{name}.unsigned.zip"), str(tmp_path / f"{name}.zip")
    rewrite_package(release.incremental, unsigned, edit)
    signing.sign(unsigned, out, [signing.load_private_key(TEST_KEY)])
    os.unlink(unsigned)
    return out


def _states(*directories: str) -> list[dict[str, str]]:
    return [dc.snapshot(d) for d in directories]


def _refused_before_any_write(config: str, package: str, watched: list[str]) -> str:
    """Applies `package`; it must raise one OtaError line and change nothing under `watched`."""
    before = _states(*watched)
    with pytest.raises(OtaError) as info:
        dc.apply(config, package)
    message = str(info.value)
    assert "\n" not in message
    assert _states(*watched) == before, message
    return message


def _applies(config: str, package: str, target) -> None:
    dc.apply(config, package)
    assert dc.compare(config, target) == []


def _set_payload(manifest: pb.OtaManifest, entries: dict[str, bytes]) -> None:
    del manifest.payload[:]
    for name, data in sorted(entries.items()):
        manifest.payload.add(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _partition(manifest: pb.OtaManifest, name: str) -> pb.PartitionOperation:
    return next(p for p in manifest.partitions if p.name == name)


# --- item: a partition must be one the device config names ---------------------------------------


def _unknown_names(rng: random.Random, directory: str, cwd: str) -> list[str]:
    fixed = [
        "victim",
        "../x",
        "../../etc/passwd",
        "/tmp/victim-abs",
        "./boot",
        "boot/",
        "sub/victim",
        "cwdlink",
        "cfglink",
        "partitions/boot.img",
        os.path.join(directory, "partitions", "boot.img"),
        os.path.join(cwd, "victim"),
        "BOOT",
        "boot.img",
        "radio ",
    ]
    generated = ["".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(1, 24))) for _ in range(10)]
    return fixed + [name for name in generated if name not in ("boot", "radio")]


def _add_partition(kind: str, name: str, release):
    """An edit adding partition `name`: WHOLE (an image), PATCH (boot's real patch) or CHECK (no entry)."""

    def edit(manifest: pb.OtaManifest, entries: dict[str, bytes]) -> None:
        boot = _partition(manifest, "boot")
        added = manifest.partitions.add()
        if kind == "WHOLE":
            image = b"pwned" * 100
            entries["victim.img"] = image
            added.name, added.entry, added.method = name, "victim.img", pb.WHOLE
            added.target.size, added.target.sha256 = len(image), hashlib.sha256(image).hexdigest()
        elif kind == "PATCH":
            added.CopyFrom(boot)
            added.name = name
        else:
            added.name = name
            added.target.CopyFrom(boot.target)
        _set_payload(manifest, entries)

    return edit


@pytest.mark.parametrize("kind", ["WHOLE", "PATCH", "CHECK"])
def test_a_partition_the_config_does_not_name_is_refused_before_any_write(
    release, signed, device, tmp_path, monkeypatch, kind
):
    directory, config = device
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "victim").write_bytes(b"\0" * 8192)  # what the bug overwrote
    os.symlink(os.path.join(directory, "partitions", "boot.img"), str(cwd / "cwdlink"))
    os.symlink(os.path.join(directory, "partitions", "radio.img"), os.path.join(directory, "cfglink"))
    monkeypatch.chdir(cwd)
    rng = random.Random(f"unknown partitions {kind}")
    names = _unknown_names(rng, directory, str(cwd))
    for index, name in enumerate(names):
        package = _hostile(release, tmp_path, f"{kind}-{index}", _add_partition(kind, name, release))
        message = _refused_before_any_write(config, package, [directory, str(cwd)])
        assert message == (
            f"{package}: manifest.pb partitions: {shown(name)} is not a partition of this device "
            "(its config lists boot, radio)"
        )
    _applies(config, signed["incremental"], release.target)


def test_the_cli_refuses_an_unknown_partition_in_one_line(release, device, tmp_path):
    directory, config = device
    package = _hostile(release, tmp_path, "victim", _add_partition("WHOLE", "victim", release))
    before = dc.device_hash(directory)
    result = run_cli("--package", package, "--device", config)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"ota_apply: error: {package}: manifest.pb partitions: 'victim' is not a partition "
        "of this device (its config lists boot, radio)\n"
    )
    assert dc.device_hash(directory) == before
    assert not os.path.exists("victim")


# --- item: every final check has a pre-write counterpart ----------------------------------------


def _check_only(name: str, target: tuple[int, str] | None = None, keep_source: bool = False):
    """Turns partition `name` into a check-only one (no entry), with `target` (size, sha256) if given."""

    def edit(manifest: pb.OtaManifest, entries: dict[str, bytes]) -> None:
        part = _partition(manifest, name)
        part.entry = ""
        if not keep_source:
            part.ClearField("source")
        if target is not None:
            part.target.size, part.target.sha256 = target

    return edit


def _random_digest(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _keep_with_other_target(path: str, rng: random.Random):
    def edit(manifest: pb.OtaManifest, entries: dict[str, bytes]) -> None:
        op = next(op for op in manifest.files if op.path == path.encode())
        op.target.sha256 = bytes.fromhex(_random_digest(rng))

    return edit


def _rule_edit(path: str, change):
    def edit(manifest: pb.OtaManifest, entries: dict[str, bytes]) -> None:
        change(next(op for op in manifest.files if op.path == path.encode()))

    return edit


def _mutations(release, rng: random.Random) -> list[tuple[str, object, str]]:
    """(name, edit, expected message suffix) for every post-write check, several members each."""
    out = []
    for name in ("boot", "radio"):
        for _ in range(3):
            size = rng.randint(1, 40_000)
            out.append(
                (
                    f"check-only {name}, target not on the device",
                    _check_only(name, (size, _random_digest(rng))),
                    (
                        f"partition {name}: does not hold the target image, and the package does not write it "
                        "(a check-only partition)"
                    ),
                )
            )
        # Used to pass: the device holds the source, the check accepted source or target.
        out.append(
            (
                f"check-only {name} with its source",
                _check_only(name, keep_source=True),
                (
                    f"partition {name}: does not hold the target image, and the package does not write it "
                    "(a check-only partition)"
                ),
            )
        )
    kept = sorted(
        op.path.decode()
        for op in pb.OtaManifest.FromString(_manifest_bytes(release)).files
        if op.op == pb.FileOperation.KEEP
    )
    out.extend(
        (
            f"KEEP {path} with another target",
            _keep_with_other_target(path, rng),
            f"manifest.pb files: {shown(path)}: a KEEP's target is not its source",
        )
        for path in rng.sample(kept, min(3, len(kept)))
    )
    out.extend(
        (
            f"PATCH {path} to another target",
            _rule_edit(path, lambda op: setattr(op.target, "sha256", bytes.fromhex(_random_digest(rng)))),
            "is not the expected target",
        )
        for path in ("bin/sh", "lib/libc.so")
    )

    def other_partition_target(manifest: pb.OtaManifest, entries: dict[str, bytes]) -> None:
        _partition(manifest, "boot").target.sha256 = _random_digest(rng)

    out.append(("patched boot to another target", other_partition_target, "is not the expected target"))
    out.append(
        (
            "mode with file-type bits",
            _rule_edit("etc/new.conf", lambda op: setattr(op, "mode", 0o100644)),
            "has bits beyond the permission bits",
        )
    )
    out.append(
        (
            "uid (uid_t)-1",
            _rule_edit("etc/new.conf", lambda op: setattr(op, "uid", 0xFFFFFFFF)),
            "which chown reads as 'leave unchanged'",
        )
    )
    out.append(
        (
            "WRITE target not its data",
            _rule_edit("etc/new.conf", lambda op: setattr(op.target, "sha256", bytes.fromhex(_random_digest(rng)))),
            "is not the target",
        )
    )
    out.append(
        (
            "empty symlink target",
            _rule_edit("lib/libc.so.6", lambda op: setattr(op, "symlink_target", b"")),
            "symlink_target is empty",
        )
    )
    return out


def _manifest_bytes(release) -> bytes:
    from ota.format.package_reader import open_package

    with open_package(release.incremental) as package:
        return package.manifest_bytes


def test_each_final_check_is_decided_before_the_first_write(release, signed, device, tmp_path):
    directory, config = device
    for index, (name, edit, expected) in enumerate(_mutations(release, random.Random("final checks"))):
        package = _hostile(release, tmp_path, f"m{index}", edit)
        message = _refused_before_any_write(config, package, [directory])
        assert expected in message, (name, message)
    _applies(config, signed["incremental"], release.target)


def test_two_config_names_for_one_device_are_refused(release, signed, device, tmp_path):
    """Through a second config line, or a symlink in the config directory: one device, two names."""
    directory, config = device
    os.symlink("partitions/boot.img", os.path.join(directory, "bootlink"))
    with open(os.path.join(directory, "partitions.conf"), "a", encoding="utf-8") as stream:
        stream.write("partition boot2 file partitions/boot.img\npartition boot3 file bootlink\n")
    for alias in ("boot2", "boot3"):

        def edit(manifest: pb.OtaManifest, entries: dict[str, bytes], alias=alias) -> None:
            twin = manifest.partitions.add()
            twin.CopyFrom(_partition(manifest, "boot"))
            twin.name = alias

        package = _hostile(release, tmp_path, alias, edit)
        message = _refused_before_any_write(config, package, [directory])
        assert message == (
            f"{package}: manifest.pb partitions: {alias} and boot are the same device "
            f"({os.path.join(directory, 'partitions.conf')[: -len('partitions.conf')]}"
            f"{'partitions/boot.img' if alias == 'boot2' else 'bootlink'}) in the device config"
        )
    _applies(config, signed["incremental"], release.target)


def test_a_patched_partition_whose_target_does_not_fit_is_refused(release, tmp_path):
    """The radio partition (a plain image file here) holds the source exactly: too small for the target."""
    source_size = os.path.getsize(release.source.partitions["radio"])
    target_size = os.path.getsize(release.target.partitions["radio"])
    assert target_size > source_size
    directory = str(tmp_path / "dev")
    layout = dc.Layout(
        {**release.layout.kinds, "radio": "file"},
        {**release.layout.capacity, "radio": source_size},
        release.layout.cache_limit,
        trusted_keys=(TEST_PUB,),
    )
    config = dc.materialize(release.source, directory, layout)
    package = str(tmp_path / "signed.zip")
    signing.sign(release.incremental, package, [signing.load_private_key(TEST_KEY)])
    message = _refused_before_any_write(config, package, [directory])
    assert message == (f"EMMC:radio: partition ({source_size} bytes) is smaller than the target ({target_size} bytes)")


def test_a_whole_image_larger_than_the_partition_is_refused(release, device, tmp_path):
    directory, config = device
    rng = random.Random("whole too big")
    capacity = os.path.getsize(os.path.join(directory, "partitions", "boot.img"))
    for extra in (1, rng.randint(2, 4096), rng.randint(4097, 1 << 20)):
        image = rng.randbytes(capacity + extra)

        def edit(manifest: pb.OtaManifest, entries: dict[str, bytes], image=image) -> None:
            part = _partition(manifest, "boot")
            del entries[part.entry]
            entries["boot.img"] = image
            part.ClearField("source")
            part.entry, part.method = "boot.img", pb.WHOLE
            part.target.size, part.target.sha256 = len(image), hashlib.sha256(image).hexdigest()
            _set_payload(manifest, entries)

        package = _hostile(release, tmp_path, f"big{extra}", edit)
        assert _refused_before_any_write(config, package, [directory]) == (
            f"EMMC:boot: partition ({capacity} bytes) is smaller than the target ({capacity + extra} bytes)"
        )


# --- stuck states and the way out (docs/ota_apply.md) --------------------------------------------


@pytest.fixture(scope="module")
def operation_count(release, signed, tmp_path_factory):
    """How many I/O operations a clean incremental update performs (fault points range over them)."""
    directory = str(tmp_path_factory.mktemp("count") / "dev")
    config = dc.materialize(release.source, directory, _layout(release))
    ops = FaultyFsOps()
    dc.apply(config, signed["incremental"], ops)
    return len(ops.log)


def _other_incremental(release, tmp_path) -> str:
    """Another genuine-looking incremental for the same source (a different manifest, so another id)."""

    def edit(manifest: pb.OtaManifest, entries: dict[str, bytes]) -> None:
        manifest.precondition.build_fingerprint.append("rules_ota/sailfish/1.1:user/release-keys")

    return _hostile(release, tmp_path, "other", edit)


def _cut(config: str, package: str, fault: FaultPoint) -> None:
    with pytest.raises(PowerLoss):
        dc.apply(config, package, FaultyFsOps(fault))


@pytest.mark.parametrize("seed", range(3))
def test_another_packages_journal_refuses_incrementals_and_a_full_package_takes_over(
    release, signed, operation_count, tmp_path, seed
):
    rng = random.Random(f"journal {seed}")
    directory = str(tmp_path / "dev")
    config = dc.materialize(release.source, directory, _layout(release))
    _cut(config, signed["incremental"], FaultPoint("before", rng.randint(5, operation_count - 2)))
    message = _refused_before_any_write(config, _other_incremental(release, tmp_path), [directory])
    assert message.endswith("is in progress; rerun that package, or apply a full package")
    if seed % 2:
        _applies(config, signed["incremental"], release.target)  # way out 1: rerun the same package
    else:
        _applies(config, signed["full"], release.target)  # way out 2: a full package
    assert not os.path.exists(os.path.join(directory, "cache", "ota_journal"))


@pytest.mark.parametrize("seed", range(3))
def test_an_io_error_mid_update_is_one_line_and_a_rerun_finishes(release, signed, operation_count, tmp_path, seed):
    rng = random.Random(f"eio {seed}")
    directory = str(tmp_path / "dev")
    config = dc.materialize(release.source, directory, _layout(release))
    index = rng.randint(3, operation_count - 1)
    with pytest.raises(OtaError) as info:
        dc.apply(config, signed["incremental"], FaultyFsOps(FaultPoint("eio", index)))
    assert "Input/output error" in str(info.value) and "\n" not in str(info.value)
    _applies(config, signed["incremental"] if seed % 2 else signed["full"], release.target)


class _ChangesTheDevice(FaultyFsOps):
    """Overwrites the boot partition with garbage at operation `at`: the device changed between the
    checks and the step that needs it (a failing flash, another writer)."""

    def __init__(self, at: int, image: str) -> None:
        super().__init__()
        self.at, self.image = at, image

    def perform(self, kind, target, action, tear=None):
        if len(self.log) + 1 == self.at:
            with open(self.image, "r+b") as stream:
                stream.write(b"garbage" * 64)
        return super().perform(kind, target, action, tear)


def test_a_device_changed_mid_update_is_refused_cleanly_and_a_full_package_recovers(
    release, signed, operation_count, tmp_path
):
    directory = str(tmp_path / "dev")
    config = dc.materialize(release.source, directory, _layout(release))
    image = os.path.join(directory, "partitions", "boot.img")
    with pytest.raises(OtaError):
        dc.apply(config, signed["incremental"], _ChangesTheDevice(3, image))
    # The same package now finds a boot partition holding neither image: a clean refusal, every time.
    for _ in range(2):
        message = _refused_before_any_write(config, signed["incremental"], [directory])
        assert message == (
            "partition boot: holds neither the source nor the target image (and the cache holds no copy of either)"
        )
    _applies(config, signed["full"], release.target)


def test_an_unreadable_journal_is_replaced_only_by_a_full_package(release, signed, device):
    directory, config = device
    journal = os.path.join(directory, "cache", "ota_journal")
    with open(journal, "wb") as stream:
        stream.write(b"\x00not a journal\n")
    message = _refused_before_any_write(config, signed["incremental"], [directory])
    assert message.startswith(f"{journal}: journal: ")
    _applies(config, signed["full"], release.target)
    assert not os.path.exists(journal)
