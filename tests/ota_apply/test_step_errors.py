"""A disk error at any write names what failed (docs/ota_apply.md, "Stuck states and the way out":
"the one-line error naming the step and path"), and a rerun finishes.

Generated: a clean run's every state-changing operation is counted (ota.testing.faults), then the
update is run once per operation with that operation failing (EIO, then ENOSPC on a seeded half),
in the real engine. Each failure (a few are absorbed by design: the NAND simulator retires a
failing block and writes the next) must be one line naming a path or a single step -- never only
a phase that covers many paths (`delete:-`, `metadata:-`: which of the files was immutable, on a
read-only mount, ...?) or the build step without its file -- and a rerun of the same package must
end at exactly the target build.
"""

from __future__ import annotations

import random
import re
import shutil

import pytest

from apply_helpers import make_release
from ota.errors import OtaError
from ota.testing import device_check as dc
from ota.testing.faults import FaultPoint, FaultyFsOps

SEED = 4242
# `<phase>:-` alone: a step over many paths (or the build step) named without the one that failed.
_UNNAMED = re.compile(r"^[a-z]+:-:")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("steperr")))


def _operation_count(release, directory: str) -> int:
    config = dc.materialize(release.source, directory, release.layout)
    counter = FaultyFsOps(None)
    dc.apply(config, release.incremental, counter)
    shutil.rmtree(directory)
    return len(counter.log)


def test_every_failing_write_is_named_and_the_rerun_finishes(release, tmp_path):
    total = _operation_count(release, str(tmp_path / "count"))
    assert total > 100  # every phase of apply_helpers' builds writes something
    rng = random.Random(SEED)
    unnamed = []
    failed = 0
    for index in range(1, total + 1):
        mode = rng.choice(("eio", "enospc"))
        device = str(tmp_path / f"dev{index}")
        config = dc.materialize(release.source, device, release.layout)
        try:
            dc.apply(config, release.incremental, FaultyFsOps(FaultPoint(mode, index)))
            message = ""  # absorbed where the design retries (an MTD block that fails is retired)
        except OtaError as err:
            message = str(err)
            assert "\n" not in message, (index, message)
            if _UNNAMED.match(message):
                unnamed.append((index, message))
            failed += 1
            dc.apply(config, release.incremental)
        assert dc.compare(config, release.target) == [], (index, message)
        shutil.rmtree(device)
    assert unnamed == []
    assert failed > total // 2
