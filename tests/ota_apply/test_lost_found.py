"""The file system's `lost+found` at the system root (docs/ota_apply.md, "The file system's lost+found").

Generated: seeded tree pairs (tree_pairs.py) get a root file and a directory `lfdir` that both
builds keep unchanged (so the root and `lfdir` have unchanged groups), then every case of the
class is applied by the real engine, as an incremental and a FULL package:

* the device root holds its own `lost+found` directory the builds do not list (empty, with files,
  with a subdirectory, mode 0700 root-owned, or holding what must never be read: a FIFO, a sparse
  huge file, a mode-000 directory): applied byte-exact, and that directory untouched byte for byte;
* both builds list `lost+found` (an ordinary unchanged entry: a changed mode is refused), the
  target adds it or removes it: applied to the exact target;
* at the root a FILE, a SYMLINK to /proc/version or a FIFO named lost+found, or a directory
  `lfdir/lost+found`: an ordinary stray, refused by an incremental package in one exact line with
  the device unchanged, removed by a FULL package's wipe (never followed);

and a power-cut sweep (bounded) of both packages with a device `lost+found` holding files, plus a
real ext4 partition made by mkfs.ext4 and loop-mounted as the system root.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import stat
import subprocess

import pytest
from environment import require, root_missing, tools_missing

import tree_pairs
from ota.device.updater.engine import ALREADY, APPLIED
from ota.errors import OtaError
from ota.format import package_reader
from ota.testing import device_check as dc
from ota.testing.builds import Spec, make_package, write_build
from ota.testing.scenarios import loop_unavailable
from ota.testing.sweep import sweep

SEEDS = range(6)
LF = "lost+found"
OWN_VARIANTS = ("empty", "files", "subdir", "root0700", "unreadable")
PASSWD_MD5 = "f133265d36c34664f325c3077944d339"
MKFS_EXT4 = "/usr/sbin/mkfs.ext4"  # absolute: /usr/sbin is not on the PATH Bazel gives a test
_KEEP_DIR = ("dir", 0o755, 0, 0)
_FS_LF = ("dir", 0o700, 0, 0)


def _with_fixed(spec: Spec, extra: dict[str, object]) -> Spec:
    """`spec` plus a root file and `lfdir/keep` both builds share, and `extra` entries."""
    items = dict(spec.items)
    items.update({"lf-keep": (b"kept in both builds\n", 0o644, 0, 0), "lfdir": _KEEP_DIR})
    items["lfdir/keep"] = (b"kept below\n", 0o644, 0, 0)
    items.update(extra)
    return dataclasses.replace(spec, items=items)


@dataclasses.dataclass
class Release:
    source: object
    target: object
    incremental: str
    full: str
    layout: object
    root_count: int
    lfdir_count: int


def _release(tmp: str, seed: int, source_extra: dict | None = None, target_extra: dict | None = None) -> Release:
    v1, v2 = tree_pairs.pair(seed)
    source = write_build(_with_fixed(v1, source_extra or {}), os.path.join(tmp, "v1"))
    target = write_build(_with_fixed(v2, target_extra or {}), os.path.join(tmp, "v2"))
    incremental = make_package(source, target, tmp, os.path.join(tmp, "incremental.zip"))
    full = make_package(None, target, tmp, os.path.join(tmp, "full.zip"))
    with package_reader.open_package(incremental) as opened:
        counts = {group.directory: group.count for group in opened.manifest.unchanged}
    return Release(source, target, incremental, full, dc.layout_for(source, target), counts[b""], counts[b"lfdir"])


def _plant_own(system: str, variant: str, rng: random.Random) -> None:
    """The file system's lost+found as mke2fs/e2fsck leave it, in one of the variants."""
    where = os.path.join(system, LF)
    os.mkdir(where, 0o700 if variant == "root0700" else 0o755)
    if variant == "root0700":
        os.chown(where, 0, 0)
    if variant in ("files", "subdir", "unreadable"):
        for index in range(rng.randrange(1, 4)):
            with open(os.path.join(where, f"#{rng.randrange(1 << 20)}-{index}"), "wb") as stream:
                stream.write(rng.randbytes(rng.randrange(0, 5000)))
    if variant == "subdir":
        os.makedirs(os.path.join(where, "#12", "deeper"))
        os.symlink("/proc/version", os.path.join(where, "#12", "link"))
    if variant == "unreadable":
        os.mkfifo(os.path.join(where, "#fifo"))  # opening it would block: never read
        with open(os.path.join(where, "#huge"), "wb") as stream:
            stream.truncate(1 << 40)  # sparse: reading it would take hours
        os.mkdir(os.path.join(where, "#locked"))
        with open(os.path.join(where, "#locked", "secret"), "wb") as stream:
            stream.write(b"recovered inode\n")
        os.chmod(os.path.join(where, "#locked"), 0)
        os.chmod(os.path.join(where, "#locked", "secret"), 0)


def _lf_state(system: str) -> list[tuple]:
    """Everything under the root's lost+found, read without opening anything but small files."""
    base = os.path.join(system, LF)
    paths = [base]
    for top, dirs, files in os.walk(base):
        dirs.sort()
        paths += [os.path.join(top, name) for name in sorted(dirs + files)]
    state = []
    for path in paths:
        st = os.lstat(path)
        data = b""
        if stat.S_ISREG(st.st_mode) and st.st_size < 1 << 20:
            with open(path, "rb") as stream:
                data = hashlib.sha256(stream.read()).digest()
        elif stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        state.append((os.path.relpath(path, system), st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_ino, data))
    return state


def _compare_but_own_lf(config: str, target) -> list[str]:
    """`dc.compare` of the device without its root lost+found (checked byte for byte by
    `_lf_state`): moved out of the device directory for the comparison (it may hold a FIFO that
    `dc.snapshot` would open), then back."""
    device = os.path.dirname(config)
    own, aside = os.path.join(device, "system", LF), os.path.join(os.path.dirname(device), f"{LF}-aside")
    moved = os.path.isdir(own) and not os.path.islink(own)
    if moved:
        os.rename(own, aside)
    try:
        return dc.compare(config, target)
    finally:
        if moved:
            os.rename(aside, own)


def _package(release: Release, kind: str) -> str:
    return release.incremental if kind == "incremental" else release.full


def _passwd_md5() -> str:
    with open("/etc/passwd", "rb") as stream:
        return hashlib.md5(stream.read()).hexdigest()


@pytest.mark.parametrize("kind", ["incremental", "full"])
@pytest.mark.parametrize("seed", SEEDS)
def test_the_devices_own_lost_found_is_left_alone(tmp_path, seed: int, kind: str) -> None:
    require(root_missing("materializing devices with other owners"))
    release = _release(str(tmp_path), seed)
    rng = random.Random(seed)
    for variant in OWN_VARIANTS:
        directory = str(tmp_path / f"device-{variant}")
        config = dc.materialize(release.source, directory, release.layout)
        system = os.path.join(directory, "system")
        _plant_own(system, variant, rng)
        before = _lf_state(system)
        assert dc.apply(config, _package(release, kind)) == APPLIED, variant
        assert _compare_but_own_lf(config, release.target) == [], variant
        assert _lf_state(system) == before, variant
        assert dc.apply(config, _package(release, kind)) == ALREADY, variant
        assert _lf_state(system) == before, variant


@pytest.mark.parametrize("kind", ["incremental", "full"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_lost_found_the_builds_list_is_an_ordinary_entry(tmp_path, seed: int, kind: str) -> None:
    require(root_missing("materializing devices with other owners"))
    cases = {
        "both": ({LF: _FS_LF}, {LF: _FS_LF}),
        "added": ({}, {LF: ("dir", 0o750, 0, 1000)}),
        "removed": ({LF: _FS_LF}, {}),
        "file_in_builds": ({LF: (b"a file named so\n", 0o644, 0, 0)}, {LF: (b"a file named so\n", 0o644, 0, 0)}),
    }
    for name, (source_extra, target_extra) in cases.items():
        release = _release(str(tmp_path / name), seed, source_extra, target_extra)
        directory = str(tmp_path / name / "device")
        config = dc.materialize(release.source, directory, release.layout)
        system = os.path.join(directory, "system")
        if name == "added":
            _plant_own(system, "root0700", random.Random(seed))  # mke2fs made it; the target's takes over
        assert dc.apply(config, _package(release, kind)) == APPLIED, name
        if name == "removed" and kind == "full":
            # A FULL package knows only the target: the device's lost+found is the file system's.
            assert _compare_but_own_lf(config, release.target) == [], name
            assert os.path.isdir(os.path.join(system, LF))
        else:
            assert dc.compare(config, release.target) == [], name
    # Listed unchanged by both builds, a changed mode is refused like any unchanged entry.
    release = _release(str(tmp_path / "tampered"), seed, {LF: _FS_LF}, {LF: _FS_LF})
    directory = str(tmp_path / "tampered" / "device")
    config = dc.materialize(release.source, directory, release.layout)
    system = os.path.join(directory, "system")
    os.chmod(os.path.join(system, LF), 0o755)
    if kind == "incremental":
        before = dc.device_hash(directory)
        with pytest.raises(OtaError) as error:
            dc.apply(config, release.incremental)
        count = release.root_count
        assert str(error.value) == (
            f"{system}: {count} unchanged entries: at least one differs from the source build "
            "(contents, kind, link, mode or owner)"
        )
        assert dc.device_hash(directory) == before
    else:
        assert dc.apply(config, release.full) == APPLIED
        assert dc.compare(config, release.target) == []


def _plant_stray(system: str, how: str) -> str:
    """An entry named lost+found that is NOT the file system's; returns the directory it is in."""
    if how == "nested_dir":
        os.mkdir(os.path.join(system, "lfdir", LF), 0o700)
        return f"{system}/lfdir"
    where = os.path.join(system, LF)
    if how == "file":
        with open(where, "wb") as stream:
            stream.write(b"not a directory\n")
    elif how == "symlink_proc":
        os.symlink("/proc/version", where)
    elif how == "symlink_root":
        os.symlink("/", where)
    else:
        os.mkfifo(where)
    return system


@pytest.mark.parametrize("kind", ["incremental", "full"])
@pytest.mark.parametrize("seed", SEEDS)
def test_anything_else_named_lost_found_is_an_ordinary_stray(tmp_path, seed: int, kind: str) -> None:
    require(root_missing("materializing devices with other owners"))
    release = _release(str(tmp_path), seed)
    passwd = _passwd_md5()
    for how in ("file", "symlink_proc", "symlink_root", "fifo", "nested_dir"):
        for own in (False, True):
            if own and how == "nested_dir":
                continue
            directory = str(tmp_path / f"device-{how}-{own}")
            config = dc.materialize(release.source, directory, release.layout)
            system = os.path.join(directory, "system")
            if own:  # the root's own lost+found is there, and a stray lost+found deeper down
                _plant_own(system, "files", random.Random(seed))
                how_here, named = "nested_dir", f"{system}/lfdir"
                _plant_stray(system, how_here)
            else:
                named = _plant_stray(system, how)
            if kind == "incremental":
                before = dc.device_hash(directory) if how != "fifo" else None
                with pytest.raises(OtaError) as error:
                    dc.apply(config, release.incremental)
                count = release.lfdir_count if named.endswith("/lfdir") else release.root_count
                assert str(error.value) == (
                    f"{named}: holds {count + 1} entries the update leaves unchanged; the source build has "
                    f"{count} (an entry added or missing)"
                ), (how, own)
                if before is not None:
                    assert dc.device_hash(directory) == before, (how, own)
            else:
                own_before = _lf_state(system) if own else None
                assert dc.apply(config, release.full) == APPLIED, (how, own)
                if own:
                    assert _compare_but_own_lf(config, release.target) == [], (how, own)
                    assert _lf_state(system) == own_before
                else:
                    assert dc.compare(config, release.target) == [], (how, own)
            assert _passwd_md5() == passwd == PASSWD_MD5


@dataclasses.dataclass
class _OwnLostFoundScenario(dc.ApplyScenario):
    """A power-cut scenario whose device root holds its own lost+found, untouched by every run."""

    state: list = dataclasses.field(default_factory=list)

    def prepare(self) -> None:
        super().prepare()
        system = os.path.join(self.directory, "system")
        _plant_own(system, "files", random.Random(7))
        self.state = _lf_state(system)

    def check(self, recover_error: str | None) -> str | None:
        if recover_error is not None:
            return f"rerun refused: {recover_error}"
        problems = _compare_but_own_lf(self.config, self.target)
        if _lf_state(os.path.join(self.directory, "system")) != self.state:
            problems.append("lost+found: changed")
        return "; ".join(problems[:3]) if problems else None


@pytest.mark.parametrize("kind", ["incremental", "full"])
@pytest.mark.parametrize("seed", range(2))
def test_a_cut_update_resumes_and_leaves_lost_found_alone(tmp_path, seed: int, kind: str) -> None:
    require(root_missing("materializing devices with other owners"))
    release = _release(str(tmp_path), seed)
    scenario = _OwnLostFoundScenario(
        release.source, release.target, _package(release, kind), str(tmp_path / "device"), release.layout
    )
    scenario.prepare()
    clean = dc.FaultyFsOps()
    dc.apply(scenario.config, scenario.package, clean)
    assert scenario.check(None) is None
    result = sweep(scenario, dc.spread(clean.crash_points(), 60))
    assert len(result.outcomes) >= 30
    failures = [f"{o.point}: {o.problem}" for o in result.failures()]
    assert failures == [], failures[:5]


def test_a_real_ext4_partition_with_its_lost_found_is_updated(tmp_path) -> None:
    require(root_missing("mounting an ext4 image"))
    require(loop_unavailable())
    require(tools_missing(MKFS_EXT4, package="e2fsprogs"))
    release = _release(str(tmp_path), 0)
    directory = str(tmp_path / "device")
    config = dc.materialize(release.source, directory, release.layout)
    system = os.path.join(directory, "system")
    populated = os.path.join(directory, "system.tree")
    os.rename(system, populated)
    os.mkdir(system, 0o755)
    image = str(tmp_path / "system.ext4")
    with open(image, "wb") as stream:
        stream.truncate(32 << 20)
    subprocess.run([MKFS_EXT4, "-q", "-F", image], check=True)
    subprocess.run(["mount", "-o", "loop", image, system], check=True)
    try:
        assert stat.S_ISDIR(os.lstat(os.path.join(system, LF)).st_mode)  # mke2fs made it
        subprocess.run(["cp", "-a", f"{populated}/.", system], check=True)
        os.chmod(system, os.lstat(populated).st_mode & 0o7777)
        before = _lf_state(system)
        assert dc.apply(config, release.incremental) == APPLIED
        problems = dc.compare(config, release.target)  # mke2fs's lost+found is empty: nothing to open
        assert problems == [f"{LF}: on the device but not in the target build"]
        assert _lf_state(system) == before
        assert dc.apply(config, release.incremental) == ALREADY
    finally:
        subprocess.run(["umount", system], check=True)
    assert _passwd_md5() == PASSWD_MD5
