"""Forged journals never yield a false "updated" (issue: the journal was trusted blindly).

Generated cases (seeded): a device at v1, at v2, or cut at a random point of a real apply; then a
journal written by "whoever can write the cache": random subsets of the package's step ids marked
done, with the right result digest, a wrong one or none, garbage lines, a torn last line, the
package's own id or another's, sometimes appended to the journal a real cut left. Each case must
end either at exactly the target build (every path, partition, the build file, a clean cache)
with a true "updated", or in a one-line refusal with the build file unchanged.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from apply_helpers import TARGET_FP, make_release
from ota.device.updater import device as device_mod
from ota.device.updater.engine import ALREADY, APPLIED
from ota.device.updater.journal import Journal
from ota.device.updater.plan import make_plan
from ota.device.updater.resume import result_digests
from ota.errors import OtaError
from ota.format.package_reader import open_package
from ota.format.paths import SCRATCH_DIR
from ota.testing import device_check as dc
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss

CASES = 60


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("release")))


@pytest.fixture(scope="module")
def packages(release, tmp_path_factory):
    """Per package kind: its id, its steps with their result digests, its clean run's operation count."""
    info = {}
    for kind in ("incremental", "full"):
        path = getattr(release, kind)
        with open_package(path) as package:
            plan = make_plan(package.manifest, package.path, package.payload)
            package_id = hashlib.sha256(package.manifest_bytes).hexdigest()
        clean = FaultyFsOps()
        config = dc.materialize(release.source, str(tmp_path_factory.mktemp(kind) / "dev"), release.layout)
        assert dc.apply(config, path, clean) == APPLIED
        info[kind] = (path, package_id, list(result_digests(plan).items()), len(clean.log))
    return info


def forged_journal(rng: random.Random, package_id: str, steps: list[tuple[str, str]], existing: bytes) -> bytes:
    if existing and rng.random() < 0.3:
        text = existing.decode()  # append to the real journal of a cut run
    else:
        owner = package_id if rng.random() < 0.85 else hashlib.sha256(rng.randbytes(8)).hexdigest()
        text = f"rules_ota journal 2 {owner}\n"
    for step_id, digest in rng.sample(steps, rng.randrange(len(steps) + 1)):
        form = rng.random()
        if form < 0.6:
            text += f"done {step_id} {digest}\n"
        elif form < 0.8:
            text += f"done {step_id} {hashlib.sha256(rng.randbytes(8)).hexdigest()}\n"
        else:
            text += f"done {step_id}\n"
        if rng.random() < 0.1:
            text += rng.choice(["", "done\n", "done  \n", "garbage line\n", "\x00\x01 binary\n", "done x:y z\n"])
    if rng.random() < 0.3:
        text += f"done {rng.choice(steps)[0]} {rng.choice(steps)[1][: rng.randrange(64)]}"  # torn, no newline
    return text.encode("utf-8", "replace")


def test_forged_journals_end_at_the_target_or_refuse_without_claiming_it(release, packages, tmp_path):
    rng = random.Random(20261202)
    outcomes = {"updated": 0, "refused": 0}
    for case in range(CASES):
        kind = rng.choice(["incremental", "full"])
        path, package_id, steps, op_count = packages[kind]
        directory = str(tmp_path / f"case{case}")
        config = dc.materialize(release.source, directory, release.layout)
        device = device_mod.load(config)
        state = rng.choice(["v1", "v2", "cut"])
        if state == "v2":
            assert dc.apply(config, path) == APPLIED
        elif state == "cut":
            point = FaultPoint(rng.choice(["before", "tear"]), rng.randrange(1, op_count + 1))
            with pytest.raises(PowerLoss):
                dc.apply(config, path, FaultyFsOps(point))
        journal_path = Journal.location(device.cache_dir)
        existing = Path(journal_path).read_bytes() if os.path.exists(journal_path) else b""
        with open(journal_path, "wb") as stream:
            stream.write(forged_journal(rng, package_id, steps, existing))
        with open(device.build_file, "rb") as stream:
            build_before = stream.read()
        label = f"case {case}: {kind} on a {state} device"
        try:
            status = dc.apply(config, path)
        except OtaError as err:
            assert "\n" not in str(err), label
            with open(device.build_file, "rb") as stream:
                assert stream.read() == build_before, f"{label}: refused ({err}) but the build file changed"
            # The build file says v2 only where a real run got there (v2, or cut after the build step,
            # which leaves the clean-up undone: the cache and the updater's scratch directory).
            if device.read_build().fingerprint == TARGET_FP:
                unfinished = [
                    p
                    for p in dc.compare(config, release.target)
                    if not p.startswith(("cache:", SCRATCH_DIR + ":", SCRATCH_DIR + "/"))
                ]
                assert unfinished == [], f"{label}: refused, and the build file claims v2 falsely"
            outcomes["refused"] += 1
            continue
        assert status in (APPLIED, ALREADY), label
        assert dc.compare(config, release.target) == [], f"{label}: said {status} but the device is not v2"
        outcomes["updated"] += 1
    print(outcomes)
    assert outcomes["updated"] > CASES // 2 and outcomes["refused"] > 0  # both branches really happen


def test_a_journal_claiming_everything_on_a_source_device_updates_it_for_real(release, packages, tmp_path):
    """The issue's example: every step marked done with the right digests, the device untouched."""
    path, package_id, steps, _ = packages["incremental"]
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    device = device_mod.load(config)
    with open(Journal.location(device.cache_dir), "w", encoding="utf-8") as stream:
        stream.write(f"rules_ota journal 2 {package_id}\n" + "".join(f"done {s} {d}\n" for s, d in steps))
    assert dc.apply(config, path) == APPLIED
    assert dc.compare(config, release.target) == []
