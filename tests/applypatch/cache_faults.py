"""What the cache-pressure tests (applypatch's and ota_apply's) share: the fault injector's names,
budgets to try, and applypatch scenarios with a cache budget and stale leftovers.

The fault injector is imported here and nowhere else in these tests, so moving it is one line.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from ota.device.applypatch import protocol
from ota.device.applypatch.cache import Cache, is_recovery_state
from ota.device.applypatch.device_config import DeviceConfig
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss
from ota.testing.scenarios import BootUpdate, FileScenario, PartitionScenario

MIB = 1 << 20


def budgets(minimal: int, seed: int, count: int = 2) -> list[int]:
    """The minimal budget, minimal + 1 MiB, and `count` seeded random budgets in between."""
    rng = random.Random(seed)
    return [minimal, minimal + MIB] + sorted(rng.randrange(minimal + 1, minimal + MIB) for _ in range(count))


def recovery_state(cache_dir: str) -> dict[str, bytes]:
    """Every recovery-state file under the cache directory, by relative path, with its bytes."""
    state = {}
    for root, _, files in os.walk(cache_dir):
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, cache_dir)
            if is_recovery_state(relative.split(os.sep)[0]):
                with open(path, "rb") as stream:
                    state[relative] = stream.read()
    return state


def add_junk(cache_dir: str, rng: random.Random, count: int, largest: int) -> dict[str, int]:
    """Loose files a cleaner may free (logs, an old package): name -> size."""
    junk = {}
    for index in range(count):
        name = rng.choice(["last_log", "recovery.log", "update.zip", "x"]) + f".{index}"
        size = rng.randrange(1, largest)
        with open(os.path.join(cache_dir, name), "wb") as stream:
            stream.write(rng.randbytes(size))
        junk[name] = size
    return junk


@dataclass
class Leftovers:
    """Stale files to find in the cache before a run: a cut save's temporary (a prefix of the
    source), loose junk."""

    temp_bytes: int = 0
    junk: dict[str, bytes] = field(default_factory=dict)

    def lay(self, cache: str, source: bytes) -> None:
        if self.temp_bytes:
            with open(os.path.join(cache, "saved.file.tmp"), "wb") as stream:
                stream.write(source[: self.temp_bytes])
        for name, data in self.junk.items():
            with open(os.path.join(cache, name), "wb") as stream:
                stream.write(data)


class BudgetedPartition(PartitionScenario):
    """applypatch's boot-partition scenario with a cache budget, a reserve and leftovers."""

    def __init__(
        self,
        workdir: str,
        update: BootUpdate,
        backend: str,
        *,
        limit: int | None,
        reserve: int,
        leftovers: Leftovers | None = None,
        **kwargs,
    ) -> None:
        super().__init__(workdir, update, backend, **kwargs)
        self.limit, self.reserve, self.leftovers = limit, reserve, leftovers or Leftovers()

    def context(self, ops: FaultyFsOps) -> protocol.Context:
        return protocol.Context(
            self.config,
            Cache(self.cache_dir, self.limit, self.reserve, self.piece),
            ops,
            self.piece,
            out=lambda _: None,
        )

    def prepare(self) -> None:
        super().prepare()
        self.leftovers.lay(self.cache_dir, self.update.source)

    def check(self, recover_error: str | None) -> str | None:
        if recover_error is not None:
            return f"rerun failed: {recover_error}"
        partition_problem = super().check(None)
        if partition_problem and not partition_problem.startswith("cache not cleaned up"):
            return partition_problem
        left = recovery_state(self.cache_dir)
        return f"recovery state left behind: {sorted(left)}" if left else None


class BudgetedFile(FileScenario):
    """applypatch's low-space file scenario (source parked in the cache) with a cache budget."""

    def __init__(self, workdir: str, update: BootUpdate, *, limit: int | None, reserve: int, **kwargs) -> None:
        super().__init__(workdir, update, low_space=True, **kwargs)
        self.limit, self.reserve = limit, reserve

    def run(self, ops: FaultyFsOps) -> None:
        context = protocol.Context(
            DeviceConfig(),
            Cache(self.cache_dir, self.limit, self.reserve, self.piece),
            ops,
            self.piece,
            target_free=lambda _: 0,
            out=lambda _: None,
        )
        protocol.patch(context, self.update.request(self.path, self.path, self.patch_path))


def run_cut(scenario, point: FaultPoint) -> bool:
    """Runs `scenario` cut at `point` (no prepare); whether the cut happened."""
    try:
        scenario.run(FaultyFsOps(point))
    except PowerLoss:
        return True
    return False


def clean_points(scenario) -> list[FaultPoint]:
    """Every crash point of a clean run of `scenario` (which is prepared first)."""
    scenario.prepare()
    ops = FaultyFsOps()
    scenario.run(ops)
    return ops.crash_points()


@contextlib.contextmanager
def read_only(directory: str) -> Iterator[None]:
    """Makes `directory` read-only with a read-only bind mount of itself (root only)."""
    subprocess.run(["mount", "--bind", directory, directory], check=True, capture_output=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", directory], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", directory], check=True, capture_output=True)


def mount_unavailable() -> str | None:
    """Why a read-only bind mount cannot be made here, or None."""
    if os.geteuid() != 0:
        return "bind mounts need root"
    probe = "/proc/self/mountinfo"
    if not os.path.exists(probe):
        return "no /proc/self/mountinfo"
    return None
