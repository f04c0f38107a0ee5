"""applypatch under cache pressure and cache faults (docs/applypatch.md, "Cache budget").

Generated members: budgets (the minimal one applypatch accepts, +1 MiB, seeded random ones in
between) x every crash point on file, loop-device and NAND-simulator partitions and the low-space
file path; stale temporaries and junk of random sizes; double cuts; every recovery-state file a cut
leaves against `applypatch -s N` (random N) and patch-mode freeing; an injected ENOSPC/EIO at every
cache operation; a read-only cache (a real read-only bind mount); an unreadable backup (EACCES for
a real non-root uid; EIO simulated at the lowest boundary, `os.read`, because no device-mapper or
other way to make a real disk fail exists on the test machines).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from applypatch_helpers import run_cli
from cache_faults import (
    MIB,
    BudgetedFile,
    BudgetedPartition,
    FaultPoint,
    FaultyFsOps,
    Leftovers,
    add_junk,
    budgets,
    clean_points,
    mount_unavailable,
    read_only,
    recovery_state,
    run_cut,
)
from ota.device.applypatch import protocol
from ota.device.applypatch.backends import open_partition
from ota.device.applypatch.cache import DEFAULT_RESERVE, Cache, is_recovery_state
from ota.device.applypatch.device_config import DeviceConfig, PartitionEntry
from ota.errors import OtaError
from ota.testing.scenarios import BootUpdate, loop_device, loop_unavailable
from ota.testing.sweep import sweep

PIECE = 64 * 1024
ONE_LINE_ERRNO = re.compile(r"^(?P<path>/\S+): [^\n]+ \((?P<name>E[A-Z]+)\)$")


@pytest.fixture(scope="module")
def update() -> BootUpdate:
    """A boot-image update small enough to sweep many times (a 384 KiB kernel, IMGDIFF2)."""
    return BootUpdate.make(kernel_size=384 * 1024, seed=4)


def minimal_budget(update: BootUpdate, reserve: int) -> int:
    """The documented rule (docs/applypatch.md, "Cache budget"): the source plus the reserve."""
    return len(update.source) + reserve


def partition_bytes(scenario: BudgetedPartition, size: int) -> bytes:
    partition = open_partition("EMMC", "boot", scenario.config, FaultyFsOps(), writable=False)
    try:
        return partition.read(0, size)
    finally:
        partition.close()


def assert_all_recovered(result) -> None:
    failures = [(str(o.point), o.problem) for o in result.failures()]
    assert failures == [] and result.recovered == len(result.points) > 0


@pytest.mark.parametrize("backend", ["file", "mtdsim"])
def test_minimal_budget_is_the_documented_rule(tmp_path, update, backend):
    """One byte less than the rule is refused before any write; the rule itself is accepted."""
    rng = random.Random(11)
    for index in range(3):
        reserve = rng.randrange(0, 512 * 1024)
        minimal = minimal_budget(update, reserve)
        tight = BudgetedPartition(
            str(tmp_path / f"{index}"), update, backend, limit=minimal - 1, reserve=reserve, piece=PIECE
        )
        tight.prepare()
        with pytest.raises(OtaError, match=r"not enough cache space: the update needs \d+ bytes"):
            tight.run(FaultyFsOps())
        assert partition_bytes(tight, len(update.source)) == update.source and os.listdir(tight.cache_dir) == []
        enough = BudgetedPartition(
            str(tmp_path / f"{index}"), update, backend, limit=minimal, reserve=reserve, piece=PIECE
        )
        enough.prepare()
        enough.run(FaultyFsOps())
        assert enough.check(None) is None


def _sweep_budgets(workdir: str, update: BootUpdate, backend: str, seed: int, randoms: int = 2, **kwargs) -> int:
    """Every crash point at each budget; seeded random budgets also start with a stale temporary
    and junk that fit the budget. Returns how many cuts were checked."""
    rng = random.Random(seed)
    minimal = minimal_budget(update, DEFAULT_RESERVE)
    cuts = 0
    for index, limit in enumerate(budgets(minimal, seed, randoms)):
        leftovers = Leftovers()
        if index >= 2:  # the random budgets: the slack holds a cut save's temporary and loose junk
            leftovers.temp_bytes = rng.randrange(1, len(update.source))
            room = limit - leftovers.temp_bytes
            leftovers.junk = {f"junk.{k}": rng.randbytes(rng.randrange(1, max(2, room // 4))) for k in range(2)}
        scenario = BudgetedPartition(
            os.path.join(workdir, str(index)),
            update,
            backend,
            limit=limit,
            reserve=DEFAULT_RESERVE,
            leftovers=leftovers,
            piece=PIECE,
            **kwargs,
        )
        result = sweep(scenario)
        assert_all_recovered(result)
        cuts += len(result.points)
    return cuts


@pytest.mark.parametrize("backend", ["file", "mtdsim"])
def test_every_cut_recovers_at_tight_budgets(tmp_path, update, backend):
    # The simulator is slow per operation (every page program and erase is a crash point): one random budget.
    cuts = _sweep_budgets(
        str(tmp_path),
        update,
        backend,
        seed={"file": 1, "mtdsim": 2}[backend],
        randoms={"file": 2, "mtdsim": 1}[backend],
        erasesize=128 * 1024,
        writesize=4096,
    )
    assert cuts > 3 * 20


@pytest.mark.skipif(loop_unavailable() is not None, reason=f"loop device: {loop_unavailable()}")
def test_every_cut_recovers_at_tight_budgets_on_a_loop_device(tmp_path, update):
    backing = str(tmp_path / "loop.img")
    with open(backing, "wb") as stream:
        stream.truncate(2 * MIB)
    with loop_device(backing) as device:
        cuts = _sweep_budgets(str(tmp_path), update, "block", seed=3, device_path=device, partition_size=2 * MIB)
    assert cuts > 4 * 20


def test_every_cut_of_the_low_space_file_path_recovers_at_tight_budgets(tmp_path, update):
    """The source of a file patch parked in the cache (target filesystem full), at each budget."""
    for index, limit in enumerate(budgets(minimal_budget(update, DEFAULT_RESERVE), seed=5)):
        scenario = BudgetedFile(str(tmp_path / str(index)), update, limit=limit, reserve=DEFAULT_RESERVE, piece=PIECE)
        assert_all_recovered(sweep(scenario))


def test_a_stale_temporary_never_blocks_a_rerun(tmp_path, update):
    """The issue's member and its class: whatever a cut save left, at the minimal budget (+ random
    slack holding junk), the rerun saves over it and finishes."""
    rng = random.Random(6)
    minimal = minimal_budget(update, DEFAULT_RESERVE)
    for index in range(12):
        slack = rng.choice([0, rng.randrange(1, MIB)])
        leftovers = Leftovers(rng.randrange(1, len(update.source) + 1))
        if slack:
            leftovers.junk = {"last_log": rng.randbytes(rng.randrange(1, slack + 1))}
        scenario = BudgetedPartition(
            str(tmp_path / str(index)),
            update,
            rng.choice(["file", "mtdsim"]),
            limit=minimal + slack,
            reserve=DEFAULT_RESERVE,
            leftovers=leftovers,
            piece=PIECE,
            erasesize=64 * 1024,
            writesize=2048,
        )
        scenario.prepare()
        scenario.run(FaultyFsOps())
        assert scenario.check(None) is None, (index, leftovers.temp_bytes, slack)


def test_double_cuts_at_the_minimal_budget_recover(tmp_path, update):
    """A cut, then a cut of the rerun at a random point of its own, then a clean rerun."""
    rng = random.Random(7)
    scenario = BudgetedPartition(
        str(tmp_path),
        update,
        "file",
        limit=minimal_budget(update, DEFAULT_RESERVE),
        reserve=DEFAULT_RESERVE,
        piece=PIECE,
    )
    points = clean_points(scenario)
    for first in rng.sample(points, 10):
        scenario.prepare()
        assert run_cut(scenario, first)
        second = FaultPoint(rng.choice(["before", "tear"]), rng.randrange(1, 30))  # past the end: no cut
        run_cut(scenario, second)
        assert scenario.check(scenario.recover()) is None, (str(first), str(second))


def test_every_cache_error_is_one_line_with_path_and_errno(tmp_path, update):
    """ENOSPC and EIO injected at every cache operation of a run: a one-line error naming the cache
    path and the errno; the device is left recoverable (the clean rerun finishes)."""
    scenario = BudgetedPartition(str(tmp_path), update, "file", limit=None, reserve=DEFAULT_RESERVE, piece=PIECE)
    scenario.prepare()
    clean = FaultyFsOps()
    scenario.run(clean)
    cache_ops = [record for record in clean.log if record.target.startswith(scenario.cache_dir)]
    assert len(cache_ops) >= 8
    for record in cache_ops:
        for mode, name in (("enospc", "ENOSPC"), ("eio", "EIO")):
            scenario.prepare()
            with pytest.raises(OtaError) as error:
                scenario.run(FaultyFsOps(FaultPoint(mode, record.index)))
            match = ONE_LINE_ERRNO.match(str(error.value))
            assert match and match["name"] == name and match["path"].startswith(scenario.cache_dir), str(error.value)
            assert scenario.check(scenario.recover()) is None


def test_cleaners_never_free_recovery_state(tmp_path, update):
    """Every recovery state a cut leaves (backup, temporary) against `applypatch -s N` with random N
    and against another update's patch-mode freeing; then the cut update still finishes."""
    rng = random.Random(8)
    minimal = minimal_budget(update, DEFAULT_RESERVE)
    scenario = BudgetedPartition(
        str(tmp_path / "boot"), update, "file", limit=minimal + MIB, reserve=DEFAULT_RESERVE, piece=PIECE
    )
    other = BootUpdate.make(kernel_size=64 * 1024, seed=9)
    radio_image = tmp_path / "radio.img"
    radio_patch = tmp_path / "radio.p"
    radio_patch.write_bytes(other.patch)
    radio_config = DeviceConfig({"radio": PartitionEntry("radio", "file", str(radio_image))})
    seen_states: set[tuple[str, ...]] = set()
    for point in rng.sample(clean_points(scenario), 16):
        for cleaner in ("free-space mode", "patch mode"):
            scenario.prepare()
            run_cut(scenario, point)
            add_junk(scenario.cache_dir, rng, 3, 200_000)
            kept = recovery_state(scenario.cache_dir)
            seen_states.add(tuple(sorted(kept)))
            if cleaner == "free-space mode":
                wanted = rng.randrange(0, 2 * MIB)
                result = run_cli(
                    f"--cache_dir={scenario.cache_dir}", f"--cache_limit={scenario.limit}", "-s", str(wanted)
                )
                assert result.returncode in (0, 1) and "Traceback" not in result.stderr
                assert recovery_state(scenario.cache_dir) == kept, (str(point), wanted)
            else:
                radio_image.write_bytes(other.source.ljust(len(other.target) + 4096, b"\0"))
                spec = other.spec("EMMC", "radio")
                context = protocol.Context(
                    radio_config,
                    Cache(scenario.cache_dir, scenario.limit, DEFAULT_RESERVE, PIECE),
                    FaultyFsOps(),
                    PIECE,
                    out=lambda _: None,
                )
                try:
                    protocol.patch(context, other.request(spec, spec, str(radio_patch)))
                except OtaError as err:  # refused: another update's backup is in the slot
                    assert "saved.file: holds the source backup of another update" in str(err)
                after = recovery_state(scenario.cache_dir)
                # A save replaces only a dead save's temporary; the backup itself is never replaced or freed.
                assert {k: v for k, v in after.items() if k != "saved.file.tmp"} == {
                    k: v for k, v in kept.items() if k != "saved.file.tmp"
                }, str(point)
            assert scenario.check(scenario.recover()) is None, (str(point), cleaner)
    assert ("saved.file",) in seen_states and ("saved.file.tmp",) in seen_states


def test_one_rule_covers_every_name_a_run_creates_in_the_cache(tmp_path, update):
    for backend, kwargs in (("file", {}), ("mtdsim", {"erasesize": 64 * 1024, "writesize": 2048})):
        scenario = BudgetedPartition(
            str(tmp_path / backend), update, backend, limit=None, reserve=0, piece=PIECE, **kwargs
        )
        scenario.prepare()
        ops = FaultyFsOps()
        scenario.run(ops)
        names = {
            os.path.relpath(target, scenario.cache_dir).split(os.sep)[0]
            for record in ops.log
            for target in record.target.split("@")[0].split("->")
            if target.startswith(scenario.cache_dir + os.sep)
        }
        assert names and all(is_recovery_state(name.split(":")[0]) for name in names), names


# -- a read-only cache and an unreadable backup ------------------------------------------------


def _cli_device(tmp_path, update: BootUpdate, image: bytes) -> tuple[str, list[str]]:
    (tmp_path / "cache").mkdir(exist_ok=True)
    (tmp_path / "boot.img").write_bytes(image.ljust(len(update.target) + 8192, b"\0"))
    (tmp_path / "boot.p").write_bytes(update.patch)
    (tmp_path / "dev.cfg").write_text("partition boot file boot.img\ncache cache\n")
    spec = update.spec("EMMC", "boot")
    patch = [
        f"--device_config={tmp_path / 'dev.cfg'}",
        spec,
        "-",
        hashlib.sha1(update.target).hexdigest(),
        str(len(update.target)),
        f"{hashlib.sha1(update.source).hexdigest()}:{tmp_path / 'boot.p'}",
    ]
    return spec, patch


@pytest.mark.skipif(mount_unavailable() is not None, reason=f"{mount_unavailable()}")
@pytest.mark.parametrize("stale_backup", [False, True])
def test_read_only_cache(tmp_path, update, stale_backup):
    """Target in place: no cache write at all, exit 0 (a stale copy is left, with a note). Source in
    place: refused before the partition is touched, one line naming the cache path and EROFS."""
    cache = tmp_path / "cache"
    spec, patch = _cli_device(tmp_path, update, update.target)
    if stale_backup:
        (cache / "saved.file").write_bytes(update.source)
    with read_only(str(cache)):
        done = run_cli(*patch)
        check = run_cli(f"--device_config={tmp_path / 'dev.cfg'}", "-c", spec)
    assert (done.returncode, done.stderr) == (0, "") and "EMMC:boot: already target" in done.stdout
    assert ("stale cache copy left in place" in done.stdout) == stale_backup
    assert check.returncode == 0, check.stderr
    _, patch = _cli_device(tmp_path, update, update.source)
    if stale_backup:
        os.unlink(cache / "saved.file")
    before = (tmp_path / "boot.img").read_bytes()
    with read_only(str(cache)):
        refused = run_cli(*patch)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert re.fullmatch(
        rf"applypatch: error: {re.escape(str(cache))}/saved.file.tmp: cannot save the source "
        r"backup: Read-only file system \(EROFS\)\n",
        refused.stderr,
    ), refused.stderr
    assert (tmp_path / "boot.img").read_bytes() == before and os.listdir(cache) == []


def _as_user(uid: int, action) -> str:
    """Runs `action` in a forked child switched to `uid` (os.setresuid): its OtaError text, or "ok".

    A fork, not a new interpreter: the code is already loaded, so the child needs no access to
    where it lives (Bazel's runfiles under root's home are closed to other users)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                action()
                message = "ok"
            except OtaError as err:
                message = str(err)
            except BaseException as err:  # noqa: BLE001 - reported to the parent, which fails the test
                message = f"unexpected {type(err).__name__}: {err}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream:
        message = stream.read().decode()
    os.waitpid(pid, 0)
    return message


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_an_unreadable_backup_is_not_no_cache_copy_eacces(request, update):
    """A torn partition whose backup this (non-root) user cannot read: patch, check and dry run all
    name the backup and EACCES instead of claiming there is no copy; nothing is written."""
    uid = 4242
    workdir = tempfile.mkdtemp(dir="/tmp")  # pytest's own tmp is private to root
    request.addfinalizer(lambda: shutil.rmtree(workdir))
    os.chmod(workdir, 0o755)
    scenario = BudgetedPartition(workdir, update, "file", limit=None, reserve=DEFAULT_RESERVE, piece=PIECE)
    scenario.prepare()
    with open(scenario.device_path, "r+b") as stream:
        stream.write(update.target[:PIECE] + update.source[PIECE:])  # torn: neither image
    for path in (scenario.device_path, scenario.patch_path):
        os.chown(path, uid, uid)
    backup = os.path.join(scenario.cache_dir, "saved.file")
    with open(backup, "wb") as stream:
        stream.write(update.source)
    os.chmod(backup, 0o600)
    before = Path(scenario.device_path).read_bytes()
    request_ = update.request(scenario.spec, scenario.spec, scenario.patch_path)
    expected = f"{backup}: cannot read the source backup: Permission denied (EACCES)"
    for mode in (
        lambda: protocol.patch(scenario.context(FaultyFsOps()), request_),
        lambda: protocol.check(scenario.context(FaultyFsOps()), scenario.spec, []),
        lambda: protocol.dry_run(scenario.context(FaultyFsOps()), request_),
    ):
        assert _as_user(uid, mode) == expected
    assert Path(scenario.device_path).read_bytes() == before
    assert Path(backup).read_bytes() == update.source
    assert scenario.check(scenario.recover()) is None  # root can read it: the rerun patches from it


def test_an_unreadable_backup_is_not_no_cache_copy_eio(tmp_path, update, monkeypatch):
    """EIO reading the backup, simulated at the lowest boundary (os.read of the backup's fd), in
    patch, check and dry-run modes: the error names the backup and EIO; nothing is written."""
    scenario = BudgetedPartition(str(tmp_path), update, "file", limit=None, reserve=DEFAULT_RESERVE, piece=PIECE)
    scenario.prepare()
    torn = update.target[:PIECE] + update.source[PIECE:]
    with open(scenario.device_path, "r+b") as stream:
        stream.write(torn)
    backup = os.path.join(scenario.cache_dir, "saved.file")
    with open(backup, "wb") as stream:
        stream.write(update.source)
    real_read = os.read

    def failing_read(fd: int, size: int) -> bytes:
        if os.readlink(f"/proc/self/fd/{fd}") == backup:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", failing_read)
    request = update.request(scenario.spec, scenario.spec, scenario.patch_path)
    expected = f"{backup}: cannot read the source backup: Input/output error (EIO)"
    for mode in (
        lambda ctx: protocol.patch(ctx, request),
        lambda ctx: protocol.check(ctx, scenario.spec, []),
        lambda ctx: protocol.dry_run(ctx, request),
    ):
        ops = FaultyFsOps()
        with pytest.raises(OtaError) as error:
            mode(scenario.context(ops))
        assert str(error.value) == expected and ops.log == []
    monkeypatch.undo()
    assert scenario.check(scenario.recover()) is None  # readable again: the rerun patches from it
