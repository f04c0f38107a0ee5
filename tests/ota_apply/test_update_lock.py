"""One update at a time per device: the cache directory's lock (ota.device.applypatch.cache.exclusive).

Two updaters on one device share the journal, the staged data and the one backup slot; without
the lock, one run's clean-up removes what the other still needs (seen: `cleaning up: No such file
or directory`, `flash write failed`, `saved.file.tmp: cannot save the source backup`). Tested
with the lock held by this process (every writer refuses in one line and changes nothing), and
with generated races: seeded sets of two or three real ota_apply processes (incremental and full
packages, random start offsets) on one device; each must succeed or refuse with the lock's line,
and the device must end at the target build.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from apply_helpers import TARGET_FP, make_release
from ota.format.hashing import of_file
from ota.testing import device_check as dc

RACES = 10
SEED = 7331
BUSY = "another update (ota_apply or applypatch) is using this cache now; let it finish, then rerun"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("lock")))


def _tool(*args: str) -> list[str]:
    return [sys.executable, "-m", "ota.testing.testbench_cli", *args]


@contextlib.contextmanager
def _held(cache: str) -> Iterator[None]:
    fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def _device_state(device: str) -> tuple:
    return (
        dc.snapshot(os.path.join(device, "system")),
        dc.snapshot(os.path.join(device, "partitions")),
        dc.snapshot(os.path.join(device, "cache")),
        of_file(os.path.join(device, "build.json")).sha256,
    )


def test_every_writer_refuses_while_another_update_holds_the_cache(release, tmp_path):
    device = str(tmp_path / "dev")
    config = dc.materialize(release.source, device, release.layout)
    cache, partitions = os.path.join(device, "cache"), os.path.join(device, "partitions.conf")
    boot = release.target.partitions["boot"]
    boot_spec = f"EMMC:boot:{os.path.getsize(boot)}:{of_file(boot).sha256}"
    writers = {
        "ota_apply incremental": _tool("ota_apply", "--package", release.incremental, "--device", config),
        "ota_apply full": _tool("ota_apply", "--package", release.full, "--device", config),
        "applypatch -s": _tool("applypatch", f"--device_config={partitions}", "-s", "1000"),
        "applypatch --flash": _tool(
            "applypatch", f"--device_config={partitions}", "--flash", boot, "--target", boot_spec
        ),
    }
    before = _device_state(device)
    with _held(cache):
        for name, command in writers.items():
            result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
            tool = command[3]
            assert (result.returncode, result.stderr) == (1, f"{tool}: error: {cache}: {BUSY}\n"), name
            assert _device_state(device) == before, name
    result = subprocess.run(writers["ota_apply incremental"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert dc.compare(config, release.target) == []


def _race(release, device: str, rng: random.Random) -> list[tuple[int, str, str]]:
    config = os.path.join(device, "device.json")
    runners = []
    for _ in range(rng.choice((2, 3))):
        package = rng.choice((release.incremental, release.full))
        runners.append(
            subprocess.Popen(
                _tool("ota_apply", "--package", package, "--device", config),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        time.sleep(rng.uniform(0, 0.05))
    outcomes = []
    for runner in runners:
        out, err = runner.communicate(timeout=120)
        outcomes.append((runner.returncode, out, err))
    return outcomes


def test_racing_updaters_never_interleave(release, tmp_path):
    rng = random.Random(SEED)
    busy_seen = 0
    for index in range(RACES):
        device = str(tmp_path / f"race{index}")
        config = dc.materialize(release.source, device, release.layout)
        cache = os.path.join(device, "cache")
        for code, out, err in _race(release, device, rng):
            if code == 0:
                assert err == "" and TARGET_FP in out, (index, out)
            else:
                assert (code, err) == (1, f"ota_apply: error: {cache}: {BUSY}\n"), (index, err)
                busy_seen += 1
        finish = subprocess.run(
            _tool("ota_apply", "--package", release.incremental, "--device", config),
            capture_output=True,
            text=True,
            check=False,
        )
        assert finish.returncode == 0, (index, finish.stderr)
        assert dc.compare(config, release.target) == [], index
    assert busy_seen > 0  # the races did overlap: the lock, not luck, kept them apart
