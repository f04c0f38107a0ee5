"""Device state outside the tree the update rewrites (docs/ota_apply.md, "The device config").

A cache directory inside the system root lost its journal and staged data to a full package's
wipe half way through the update they record (`recording wipe:-: No such file or directory`, the
tree already wiped); a build file or partition image there would be deleted or overwritten as a
file of the tree. Generated: each piece of state (the cache, the build file, a file-backed
partition) placed at the root itself, one or two levels below it, behind a symlink that leads
into it, or beside it under a name that merely starts like it (`system2/`, which must be
accepted). A placement inside is refused when the config is loaded, in one line naming the config,
before anything is read from the package or written; the CLI exits 1 and the device is unchanged.
Every placement outside is accepted and a full package brings the device to the target.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import pytest

from apply_helpers import make_release
from ota.device.updater import device as device_mod
from ota.errors import OtaError
from ota.testing import device_check as dc

SEED = 99
PLACEMENTS = ("root", "child", "grandchild", "link-into", "prefix-sibling", "outside")
STATE = ("cache", "build", "partition")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("placement")))


def _place(device: str, placement: str, rng: random.Random) -> tuple[str, bool]:
    """A directory for the state (relative to the device dir) and whether it is inside the tree."""
    name = f"d{rng.randrange(1000)}"
    if placement == "root":
        return "system", True
    if placement == "child":
        path = f"system/{name}"
    elif placement == "grandchild":
        path = f"system/etc/{name}"
    elif placement == "link-into":
        os.makedirs(os.path.join(device, "system", "xbin", name))
        os.symlink(os.path.join(device, "system", "xbin", name), os.path.join(device, name))
        return name, True
    elif placement == "prefix-sibling":
        path = f"system2/{name}"
    else:
        path = f"state/{name}"
    os.makedirs(os.path.join(device, path), exist_ok=True)
    return path, path.startswith("system/")


def _move_state(device: str, state: str, where: str) -> None:
    """Moves one piece of state of a materialized device to `where` and points the config at it."""
    config_path = os.path.join(device, "device.json")
    conf_path = os.path.join(device, "partitions.conf")
    if state == "cache":
        os.rmdir(os.path.join(device, "cache"))
        os.makedirs(os.path.join(device, where, "cache"))
        with open(conf_path, encoding="utf-8") as stream:
            text = stream.read().replace("cache cache", f"cache {where}/cache")
        with open(conf_path, "w", encoding="utf-8") as stream:
            stream.write(text)
    elif state == "build":
        shutil.move(os.path.join(device, "build.json"), os.path.join(device, where, "build.json"))
        with open(config_path, encoding="utf-8") as stream:
            config = json.load(stream)
        config["build_file"] = f"{where}/build.json"
        with open(config_path, "w", encoding="utf-8") as stream:
            json.dump(config, stream)
    else:
        shutil.move(os.path.join(device, "partitions", "boot.img"), os.path.join(device, where, "boot.img"))
        with open(conf_path, encoding="utf-8") as stream:
            text = stream.read().replace("partitions/boot.img", f"{where}/boot.img")
        with open(conf_path, "w", encoding="utf-8") as stream:
            stream.write(text)


def test_device_state_inside_the_system_root_is_refused(release, tmp_path):
    rng = random.Random(SEED)
    outcomes = {True: 0, False: 0}
    for state in STATE:
        for placement in PLACEMENTS:
            if state != "cache" and placement == "root":
                continue  # a file cannot be the root directory itself
            device = str(tmp_path / f"{state}-{placement}")
            config = dc.materialize(release.source, device, release.layout)
            where, inside = _place(device, placement, rng)
            _move_state(device, state, where)
            outcomes[inside] += 1
            if not inside:
                device_mod.load(config)
                dc.apply(config, release.full)
                assert dc.compare(config, release.target) == [], (state, placement)
                continue
            with pytest.raises(OtaError) as info:
                device_mod.load(config)
            message = str(info.value)
            assert message.startswith(f"{config}: ") and "is inside the system root" in message, message
            before = dc.snapshot(os.path.join(device, "system"))
            result = subprocess.run(
                [sys.executable, "-m", "ota.testing.testbench_cli", "ota_apply"]
                + ["--package", release.full, "--device", config],
                capture_output=True,
                text=True,
                check=False,
            )
            assert (result.returncode, result.stderr) == (1, f"ota_apply: error: {message}\n"), (state, placement)
            assert dc.snapshot(os.path.join(device, "system")) == before, (state, placement)
    assert outcomes[True] >= 10 and outcomes[False] >= 6
