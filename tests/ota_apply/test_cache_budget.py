"""ota_apply's cache budget (docs/ota_apply.md, "Cache budget"): the minimal budget it accepts is the documented rule,
a cut at any instant at that budget (and at +1 MiB, and at seeded random budgets in between) still
recovers, no cleaner frees its recovery state, a read-only cache is one line, and a backup of
another update is refused before the first write.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "applypatch"))

import contextlib

from apply_helpers import make_release, run_cli
from cache_faults import (
    MIB,
    FaultPoint,
    FaultyFsOps,
    PowerLoss,
    add_junk,
    budgets,
    mount_unavailable,
    read_only,
    recovery_state,
)
from ota.device.applypatch.cache import DEFAULT_RESERVE, Cache, is_recovery_state
from ota.device.updater import verify
from ota.device.updater.engine import APPLIED
from ota.device.updater.execute import STAGED_DIR
from ota.device.updater.plan import make_plan
from ota.errors import OtaError
from ota.format import package_reader
from ota.testing import device_check as dc
from ota.testing.sweep import sweep


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("release")))


def minimal_budget(package: str, scratch: str) -> int:
    """The documented rule on an empty cache: `verify.cache_needed` (staged entries, the largest
    patched partition's source, the journal bound) plus the reserve."""
    os.makedirs(scratch, exist_ok=True)
    with package_reader.open_package(package) as opened:
        plan = make_plan(opened.manifest, package, opened.payload)
    return verify.cache_needed(plan, Cache(scratch), os.path.join(scratch, STAGED_DIR), set()) + DEFAULT_RESERVE


def layout(release, limit: int) -> dc.Layout:
    return dc.Layout(release.layout.kinds, release.layout.capacity, cache_limit=limit)


def cut(config: str, package: str, point: FaultPoint) -> None:
    with contextlib.suppress(PowerLoss):
        dc.apply(config, package, FaultyFsOps(point))


def test_minimal_budget_is_the_documented_rule(release, tmp_path):
    minimal = minimal_budget(release.incremental, str(tmp_path / "empty"))
    with package_reader.open_package(release.incremental) as opened:
        assert minimal >= opened.manifest.cache_bytes_required + DEFAULT_RESERVE
    short = str(tmp_path / "short")
    config = dc.materialize(release.source, short, layout(release, minimal - 1))
    before = dc.device_hash(short)
    result = run_cli("--package", release.incremental, "--device", config)
    assert result.returncode == 1 and re.fullmatch(
        rf"ota_apply: error: {re.escape(short)}/cache: not enough cache space: the update needs \d+ bytes plus a "
        rf"{DEFAULT_RESERVE}-byte reserve, \d+ are free and at most 0 could be freed\n",
        result.stderr,
    ), result.stderr
    assert dc.device_hash(short) == before
    config = dc.materialize(release.source, str(tmp_path / "exact"), layout(release, minimal))
    assert dc.apply(config, release.incremental) == APPLIED
    assert dc.compare(config, release.target) == []


def test_every_cut_recovers_at_the_minimal_budget(release, tmp_path):
    minimal = minimal_budget(release.incremental, str(tmp_path / "empty"))
    report = dc.check_update(
        release.source,
        release.target,
        release.incremental,
        str(tmp_path / "run"),
        layout(release, minimal),
        interrupt=True,
    )
    assert report.sweep is not None and len(report.sweep.outcomes) == report.crash_points > 200
    assert report.problems == [], report.problems[:5]


@pytest.mark.parametrize("extra", ["1MiB", "random"])
def test_cuts_recover_at_larger_tight_budgets(release, tmp_path, extra):
    """Every cut in the cache (the backup save, staging, the journal) plus cuts spread over the rest."""
    minimal = minimal_budget(release.incremental, str(tmp_path / "empty"))
    limit = {"1MiB": minimal + MIB, "random": budgets(minimal, seed=21, count=1)[2]}[extra]
    scenario = dc.ApplyScenario(
        release.source, release.target, release.incremental, str(tmp_path / "dev"), layout(release, limit)
    )
    scenario.prepare()
    clean = FaultyFsOps()
    dc.apply(scenario.config, release.incremental, clean)
    cache_dir = os.path.join(scenario.directory, "cache")
    in_cache = {record.index for record in clean.log if record.target.startswith(cache_dir)}
    points = [p for p in clean.crash_points() if p.index in in_cache]
    points += [p for p in dc.spread(clean.crash_points(), 20) if p not in points]
    assert any(record.target.startswith(os.path.join(cache_dir, "saved.file.tmp")) for record in clean.log)
    result = sweep(scenario, points)
    assert [(str(o.point), o.problem) for o in result.failures()] == []
    assert len(result.outcomes) > 40


def test_cleaners_never_free_ota_apply_recovery_state(release, tmp_path):
    """Cut at seeded random points; junk added; `applypatch -s N` (random N) with the device's own
    config keeps the journal, staged data and backup byte for byte; ota_apply's own freeing (the
    rerun, at the minimal budget) frees junk and still ends at the target."""
    rng = random.Random(22)
    minimal = minimal_budget(release.incremental, str(tmp_path / "empty"))
    scenario = dc.ApplyScenario(
        release.source, release.target, release.incremental, str(tmp_path / "dev"), layout(release, minimal)
    )
    scenario.prepare()
    clean = FaultyFsOps()
    dc.apply(scenario.config, release.incremental, clean)
    cache_dir = os.path.join(scenario.directory, "cache")
    seen: set[str] = set()
    for point in rng.sample(clean.crash_points(), 12):
        scenario.prepare()
        cut(scenario.config, release.incremental, point)
        add_junk(cache_dir, rng, 2, 100_000)
        kept = recovery_state(cache_dir)
        seen.update(name.split(os.sep)[0] for name in kept)
        conf = os.path.join(scenario.directory, "partitions.conf")
        wanted = rng.randrange(0, 2 * MIB)
        result = subprocess_applypatch(f"--device_config={conf}", "-s", str(wanted))
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
        assert recovery_state(cache_dir) == kept, (str(point), wanted)
        assert scenario.check(scenario.recover()) is None, str(point)
    assert {"ota_journal", STAGED_DIR} <= seen


def subprocess_applypatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ota.cli.applypatch", *args], capture_output=True, text=True, check=False
    )


def test_every_name_ota_apply_creates_in_the_cache_is_recovery_state(release, tmp_path):
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    ops = FaultyFsOps()
    dc.apply(config, release.incremental, ops)
    cache_dir = os.path.join(str(tmp_path / "dev"), "cache") + os.sep
    names = {
        target.removeprefix(cache_dir).split(os.sep)[0].split(":")[0]
        for record in ops.log
        for target in record.target.split("@")[0].split("->")
        if target.startswith(cache_dir)
    }
    assert {"ota_journal", "ota_journal.new", STAGED_DIR, "saved.file", "saved.file.tmp"} <= names
    assert all(is_recovery_state(name) for name in names), names


def test_another_updates_backup_is_refused_before_the_first_write(release, tmp_path):
    directory = str(tmp_path / "dev")
    config = dc.materialize(release.source, directory, release.layout)
    foreign = os.path.join(directory, "cache", "saved.file")
    with open(foreign, "wb") as stream:
        stream.write(b"the source image of some other partition's interrupted update")
    before = dc.device_hash(directory)
    result = run_cli("--package", release.incremental, "--device", config)
    assert (result.returncode, result.stderr) == (
        1,
        (
            f"ota_apply: error: {foreign}: holds the source backup of "
            "another update (it matches no source this update patches); "
            "finish that update first, or delete the file if none is "
            "pending\n"
        ),
    )
    assert dc.device_hash(directory) == before
    os.unlink(foreign)
    assert run_cli("--package", release.incremental, "--device", config).returncode == 0
    assert dc.compare(config, release.target) == []


@pytest.mark.skipif(mount_unavailable() is not None, reason=f"{mount_unavailable()}")
def test_read_only_cache(release, tmp_path):
    """At the target: "nothing to do", no cache write. At the source, or cut half way: one line naming
    the cache and EROFS, nothing changed; writable again, the rerun finishes."""
    rng = random.Random(23)
    directory = str(tmp_path / "dev")
    cache_dir = os.path.join(directory, "cache")
    config = dc.materialize(release.source, directory, release.layout)
    refusal = f"ota_apply: error: {cache_dir}: cannot write the cache: Read-only file system (EROFS)\n"
    with read_only(cache_dir):
        before = dc.device_hash(directory)
        result = run_cli("--package", release.incremental, "--device", config)
        assert (result.returncode, result.stderr) == (1, refusal) and dc.device_hash(directory) == before
    clean = FaultyFsOps()
    dc.apply(config, release.incremental, clean)
    with read_only(cache_dir):
        result = run_cli("--package", release.incremental, "--device", config)
    assert result.returncode == 0 and "nothing to do" in result.stdout, result.stderr
    for point in rng.sample(clean.crash_points(), 4):
        scenario = dc.ApplyScenario(release.source, release.target, release.incremental, directory, release.layout)
        scenario.prepare()
        cut(config, release.incremental, point)
        with read_only(cache_dir):
            before = dc.device_hash(directory)
            result = run_cli("--package", release.incremental, "--device", config)
            after = dc.device_hash(directory)
        if result.returncode == 0:  # the cut came after the journal was cleared: the update is done
            assert dc.compare(config, release.target) == []
            continue
        assert (result.returncode, result.stderr) == (1, refusal) and after == before, str(point)
        assert scenario.check(scenario.recover()) is None, str(point)


def test_a_cache_error_is_one_line_not_a_traceback(release, tmp_path):
    """ENOSPC and EIO at seeded random cache operations of a real apply: one line naming a cache path
    and the errno name (through applypatch's cache) or the step, never a traceback; the rerun recovers."""
    rng = random.Random(24)
    scenario = dc.ApplyScenario(
        release.source, release.target, release.incremental, str(tmp_path / "dev"), release.layout
    )
    scenario.prepare()
    clean = FaultyFsOps()
    dc.apply(scenario.config, release.incremental, clean)
    cache_dir = os.path.join(scenario.directory, "cache")
    backup_ops = [r for r in clean.log if r.target.startswith(os.path.join(cache_dir, "saved.file"))]
    assert backup_ops
    for record in rng.sample(backup_ops, min(8, len(backup_ops))):
        for mode, name in (("enospc", "ENOSPC"), ("eio", "EIO")):
            scenario.prepare()
            with pytest.raises(OtaError) as error:
                dc.apply(scenario.config, release.incremental, FaultyFsOps(FaultPoint(mode, record.index)))
            text = str(error.value)
            assert "\n" not in text and text.startswith(cache_dir) and text.endswith(f"({name})"), text
            assert scenario.check(scenario.recover()) is None
