"""Entries planted at the names ota_apply keeps its own state under (docs/ota_apply.md, "Resuming":
whoever can write the cache can write there).

Generated: every state name the updater reads or writes -- the journal and its temporary, the
staged directory, a staged entry and its temporary, the backup and its temporary, the build
file's temporary -- crossed with every kind of entry someone could put there: a symlink to a
sentinel file or directory outside the device (this test's tmp dir only) or to /proc/version, a
FIFO, a directory (empty or not), a junk file; plus seeded random combinations of several at once.
Each run of the real CLI must, within a timeout (a FIFO must never block it):

* leave every sentinel outside the device exactly as it was (nothing written, truncated or
  removed through a link);
* either update the device to exactly the target build, or refuse in one line naming the planted
  path with the device (system tree, partitions, build file) unchanged; then, the planted entry
  removed, the same package finishes the update (or, for an unreadable journal, a full package
  does: the documented way out).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import zipfile

import pytest

from apply_helpers import make_release
from ota.device.updater.verify import staged_name
from ota.format.hashing import of_file
from ota.testing import device_check as dc

TIMEOUT = 60  # seconds: a run blocked on a FIFO fails the test instead of hanging it
COMBINATIONS = 12  # seeded random sets of three plantings at once
SEED = 20260


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("planted")))


def _state_names(release) -> list[str]:
    """Every name under the device directory the updater uses for its own state."""
    with zipfile.ZipFile(release.incremental) as archive:
        entries = [name for name in archive.namelist() if name.startswith("patch/")]  # staged partition patches
    assert entries
    staged = [f"ota_staged/{staged_name(entry)}" for entry in entries]
    names = ["cache/ota_journal", "cache/ota_journal.new", "cache/ota_staged", "cache/saved.file"]
    names += ["cache/saved.file.tmp", "build.json.new"]
    names += [f"cache/{name}" for name in staged] + [f"cache/{name}.new" for name in staged]
    return names


PLANTS = ("link-file", "link-dir", "link-proc", "fifo", "empty-dir", "full-dir", "junk")


def _sentinels(outside: str) -> None:
    os.makedirs(os.path.join(outside, "dir"))
    with open(os.path.join(outside, "victim"), "w", encoding="utf-8") as stream:
        stream.write("must stay\n")
    with open(os.path.join(outside, "dir", "kept"), "w", encoding="utf-8") as stream:
        stream.write("must stay too\n")


def _outside_state(outside: str) -> dict[str, str]:
    state = {}
    for base, dirs, files in os.walk(outside):
        for name in sorted(dirs + files):
            path = os.path.join(base, name)
            state[os.path.relpath(path, outside)] = of_file(path).sha256 if name in files else "dir"
    return state


def _plant(device: str, name: str, kind: str, outside: str) -> None:
    path = os.path.join(device, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind in ("link-file", "link-dir", "link-proc"):
        target = {
            "link-file": os.path.join(outside, "victim"),
            "link-dir": os.path.join(outside, "dir"),
            "link-proc": "/proc/version",
        }
        os.symlink(target[kind], path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind in ("empty-dir", "full-dir"):
        os.mkdir(path)
        if kind == "full-dir":
            os.makedirs(os.path.join(path, "sub"))
            with open(os.path.join(path, "sub", "f"), "wb") as stream:
                stream.write(b"planted\n")
    else:
        with open(path, "wb") as stream:
            stream.write(b"planted junk \x00\xff\n" * 50)


def _unplant(device: str, name: str) -> None:
    path = os.path.join(device, name)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _device_state(device: str) -> tuple:
    """The device without its cache (which may hold FIFOs): tree, partitions, build file."""
    return (
        dc.snapshot(os.path.join(device, "system")),
        dc.snapshot(os.path.join(device, "partitions")),
        of_file(os.path.join(device, "build.json")).sha256,
    )


def _cli(package: str, config: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ota.testing.testbench_cli", "ota_apply", "--package", package, "--device", config],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _cases(release) -> list[list[tuple[str, str]]]:
    names = _state_names(release)
    cases = [[(name, kind)] for name in names for kind in PLANTS]
    rng = random.Random(SEED)
    for _ in range(COMBINATIONS):
        chosen = rng.sample(names, 3)
        # A planted directory would hide a planting below it: keep the staged dir a directory then.
        if any(name.startswith("cache/ota_staged/") for name in chosen):
            chosen = [name for name in chosen if name != "cache/ota_staged"]
        cases.append([(name, rng.choice(PLANTS)) for name in chosen])
    return cases


def _check_case(release, tmp_path, index: int, plantings: list[tuple[str, str]]) -> None:
    outside = str(tmp_path / f"outside{index}")
    _sentinels(outside)
    sentinels = _outside_state(outside)
    device = str(tmp_path / f"dev{index}")
    config = dc.materialize(release.source, device, release.layout)
    for name, kind in plantings:
        _plant(device, name, kind, outside)
    before = _device_state(device)
    result = _cli(release.incremental, config)
    label = f"{plantings}: {result.stderr!r}"
    assert _outside_state(outside) == sentinels, label
    assert "Traceback" not in result.stderr, label
    if result.returncode == 0:
        assert dc.compare(config, release.target) == [], label
        return
    assert result.returncode == 1 and result.stderr.count("\n") == 1, label
    assert any(os.path.join(device, name) in result.stderr for name, _ in plantings), label
    assert _device_state(device) == before, label
    for name, _ in plantings:
        _unplant(device, name)
    again = _cli(release.incremental, config)
    if again.returncode != 0:  # an unreadable journal: a full package is the way out
        assert "ota_journal" in again.stderr, label
        again = _cli(release.full, config)
    assert again.returncode == 0, f"{label} then {again.stderr!r}"
    assert dc.compare(config, release.target) == [], label
    assert _outside_state(outside) == sentinels, label


def test_planted_state_never_redirects_blocks_or_strands_an_update(release, tmp_path):
    cases = _cases(release)
    assert len(cases) == len(_state_names(release)) * len(PLANTS) + COMBINATIONS
    for index, plantings in enumerate(cases):
        _check_case(release, tmp_path, index, plantings)
