"""Hard links in the system tree: a mode or owner change reaches only the path the package names.

A device tree may hold several names for one inode (busybox-style links inside the tree, or a
link from outside it). The metadata step used to chmod/chown the inode in place, which changed
every other name too: a file outside the device got the package's owner, and a linked name the
target keeps as it was failed the final check on every rerun. Now such a file gets its own copy
(ota.device.updater.sysroot.SysRoot.set_metadata).

Generated, seeded: builds of files drawn from a small pool of contents (so many are equal) with
random modes and owners, a target that changes the metadata of a random subset; on the device,
random groups of equal files are hard-linked to each other and to sentinel files in this test's
tmp dir. The update, clean or cut at a random operation and rerun, must end at exactly the target
and leave every sentinel's bytes, mode and owner as they were.
"""

from __future__ import annotations

import contextlib
import os
import random
import stat

from ota.testing import device_check as dc
from ota.testing.builds import Spec, make_package, write_build
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss

SEED = 515
TREES = 12
FILES = 14
MODES = (0o644, 0o755, 0o4750)
OWNERS = ((0, 0), (1000, 1000))


def _specs(rng: random.Random) -> tuple[Spec, Spec]:
    pool = [rng.randbytes(rng.randint(1, 3000)) for _ in range(3)]
    source, target = {}, {}
    for index in range(FILES):
        data = rng.choice(pool)
        path = f"{rng.choice(('bin', 'lib', 'etc'))}/f{index}"
        source[path] = (data, rng.choice(MODES), *rng.choice(OWNERS))
        changed = rng.random() < 0.5
        target[path] = (data, rng.choice(MODES), *rng.choice(OWNERS)) if changed else source[path]
    return (
        Spec("links", "x/links/1:user/k", 1_700_000_000, source, {}),
        Spec("links", "x/links/2:user/k", 1_800_000_000, target, {}),
    )


def _link_equal_files(root: str, outside: str, rng: random.Random) -> dict[str, tuple]:
    """Hard-links random groups of equal files on the device, and some to sentinels outside it."""
    alike: dict[tuple, list[str]] = {}  # files one inode can stand for: same bytes, mode and owner
    for base, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(base, name)
            info = os.stat(path)
            with open(path, "rb") as stream:
                key = (stream.read(), info.st_mode, info.st_uid, info.st_gid)
            alike.setdefault(key, []).append(path)
    sentinels = {}
    for index, paths in enumerate(alike.values()):
        if rng.random() < 0.7:  # the group's inode also gets a name outside the device
            sentinel = os.path.join(outside, f"sentinel{index}")
            os.link(paths[0], sentinel)
        for path in paths[1:]:
            if rng.random() < 0.7:
                os.unlink(path)
                os.link(paths[0], path)
    for sentinel in os.listdir(outside):
        path = os.path.join(outside, sentinel)
        info = os.stat(path)
        with open(path, "rb") as stream:
            sentinels[path] = (stream.read(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return sentinels


def _sentinel_state(sentinels: dict[str, tuple]) -> dict[str, tuple]:
    state = {}
    for path in sentinels:
        info = os.stat(path)
        with open(path, "rb") as stream:
            state[path] = (stream.read(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return state


def test_a_metadata_change_never_reaches_another_name_of_the_inode(tmp_path):
    rng = random.Random(SEED)
    for tree in range(TREES):
        work = tmp_path / f"tree{tree}"
        v1, v2 = _specs(rng)
        source = write_build(v1, str(work / "v1"))
        target = write_build(v2, str(work / "v2"))
        package = make_package(source, target, str(work), str(work / "update.zip"))
        layout = dc.layout_for(source, target)
        outside = str(work / "outside")
        os.makedirs(outside)
        config = dc.materialize(source, str(work / "device"), layout)
        sentinels = _link_equal_files(str(work / "device" / "system"), outside, rng)
        if tree % 2:  # cut at a random operation, then rerun
            with contextlib.suppress(PowerLoss):
                dc.apply(config, package, FaultyFsOps(FaultPoint("before", rng.randint(1, 40))))
        dc.apply(config, package)
        assert dc.compare(config, target) == [], tree
        assert _sentinel_state(sentinels) == sentinels, tree
