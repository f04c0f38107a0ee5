"""The power-loss fault injector: an `FsOps` that numbers every operation and can cut at one.

Test-only. The device tools use the plain `ota.device.fsops.FsOps`; this subclass reaches them only
through test entry points (`ota.testing.testbench_cli`, the sweeps in `ota.testing.sweep`, tests
that pass it in). It numbers the operations (1, 2, 3, ...) and can stop at any of them:

* ``before:N``  power is lost just before operation N (it never reaches the disk);
* ``after:N``   operation N completes, then power is lost;
* ``tear:N``    operation N is cut half way: a write leaves its first half, an MTD page program
                leaves a partially programmed page, an MTD erase leaves a half-erased block (only
                for operations that say how they tear; see `OpRecord.tearable`);
* ``lie:N``     operation N is torn as above but reports success and the run goes on (a device
                that drops writes: read-back verification must catch it);
* ``enospc:N`` / ``eio:N``  operation N fails with that errno (a full or failing disk).

A crash either raises `PowerLoss` (in-process runs, fast: every later operation raises too, so
no cleanup code can write after the "power cut") or calls ``os._exit(CRASH_EXIT_CODE)`` (child
processes started through `ota.testing.testbench_cli`). A log path gets one line per operation
(``index kind tearable target``), which is how a caller lists the crash points of a child.

Two models of the cut (docs/applypatch.md, "Power-loss model"):

* process cut (default): the process stops; everything it wrote is on the disk, in order;
* lossy cut (`loss=LossModel(...)`): a real power cut. Every write since the last fsync of that
  file, and every directory entry change since the last fsync of that directory, is lost (the
  worst case), or a seeded random part of them (`ota.testing.page_cache`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ota.device.fsops import FsOps
from ota.testing.page_cache import LossModel, PageCache

T = TypeVar("T")

CRASH_EXIT_CODE = 86
CRASH_MODES = ("before", "after", "tear")
MODES = CRASH_MODES + ("lie", "enospc", "eio")


class PowerLoss(BaseException):
    """The simulated power cut. A BaseException so that `except Exception` cannot swallow it."""


@dataclass(frozen=True)
class FaultPoint:
    """Where and how to fault: operation `index` (1-based) in `mode` (one of MODES)."""

    mode: str
    index: int

    def __str__(self) -> str:
        return f"{self.mode}:{self.index}"

    @classmethod
    def parse(cls, text: str) -> FaultPoint:
        """Parses ``mode:N``; raises ValueError with a readable message."""
        mode, _, number = text.partition(":")
        if mode not in MODES or not number.isdigit() or int(number) < 1:
            raise ValueError(f"fault point {text!r} is not <mode>:<N> with mode in {'/'.join(MODES)}, N >= 1")
        return cls(mode, int(number))


@dataclass(frozen=True)
class OpRecord:
    """One operation as performed: its number, kind, what it touched, and whether it can tear."""

    index: int
    kind: str
    target: str
    tearable: bool


class FaultyFsOps(FsOps):
    """Counts state-changing I/O and injects at most one fault (see module doc).

    Args:
      fault: the fault to inject, or None for a clean (counting) run.
      on_crash: "raise" (PowerLoss, for in-process runs) or "exit" (os._exit, like power loss).
      log_path: if set, one line per operation is appended there as it happens.
      loss: the lossy power-cut model, or None for a process cut.
      raw_paths: files (and name prefixes) that have no page cache, such as a NAND simulator's
        chip image: what reaches them is durable at once, as on real raw flash.
    """

    def __init__(
        self,
        fault: FaultPoint | None = None,
        *,
        on_crash: str = "raise",
        log_path: str | None = None,
        loss: LossModel | None = None,
        raw_paths: tuple[str, ...] = (),
    ) -> None:
        if on_crash not in ("raise", "exit"):
            raise ValueError(f"on_crash must be 'raise' or 'exit', not {on_crash!r}")
        if loss is not None and fault is not None and fault.mode not in CRASH_MODES:
            raise ValueError(f"the lossy model cuts power; {fault} is not a power cut")
        self.fault = fault
        self.on_crash = on_crash
        self.log: list[OpRecord] = []
        self.crashed = False
        self._log_path = log_path
        self._cache = PageCache(loss, raw_paths) if loss is not None else None

    def perform(
        self, kind: str, target: str, action: Callable[[], T], tear: Callable[[], None] | None = None
    ) -> T | None:
        """Runs `action` as the next numbered operation, injecting the planned fault if it is this one.

        For operations without a `tear`, ``tear:N`` acts as ``before:N`` and ``lie:N`` drops the
        operation entirely.
        """
        if self.crashed:
            raise PowerLoss(f"operation after the power cut: {kind} {target}")
        record = OpRecord(len(self.log) + 1, kind, target, tear is not None)
        self.log.append(record)
        if self._log_path:
            with open(self._log_path, "a", encoding="utf-8") as stream:
                stream.write(f"{record.index} {kind} {int(record.tearable)} {target}\n")
        fault = self.fault
        if fault is None or fault.index != record.index:
            return self._watched(action)
        if fault.mode == "before":
            self._crash()
        if fault.mode == "tear":
            if tear is not None:
                self._watched(tear)
            self._crash()
        if fault.mode == "lie":
            if tear is not None:
                tear()
            return None
        if fault.mode in ("enospc", "eio"):
            code = errno.ENOSPC if fault.mode == "enospc" else errno.EIO
            raise OSError(code, os.strerror(code), target)
        result = self._watched(action)  # mode "after"
        self._crash()
        return result

    def create(self, path: str, mode: int = 0o600) -> int:
        fd = super().create(path, mode)
        if fd is None:  # "lie": the device pretended; open it without truncating
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
        return fd

    def _watched(self, action: Callable[[], T]) -> T:
        if self._cache is None:
            return action()
        with self._cache.watch():
            return action()

    def _crash(self) -> None:
        self.crashed = True
        if self._cache is not None:
            self._cache.lose()
        if self.on_crash == "exit":
            os._exit(CRASH_EXIT_CODE)
        raise PowerLoss(str(self.fault))

    def close(self) -> None:
        """Releases what the lossy model holds open (a run that ended without a cut)."""
        if self._cache is not None:
            self._cache.close()

    def crash_points(self) -> list[FaultPoint]:
        """Every distinct power-cut point of the run this object recorded.

        ``before:i`` for each operation, ``tear:i`` for each tearable one, and ``after:N`` for the
        last (``after:i`` equals ``before:i+1`` for every earlier one).
        """
        points = []
        for record in self.log:
            points.append(FaultPoint("before", record.index))
            if record.tearable:
                points.append(FaultPoint("tear", record.index))
        if self.log:
            points.append(FaultPoint("after", len(self.log)))
        return points


def read_fault_log(path: str) -> list[OpRecord]:
    """Reads the operation log a child process wrote."""
    records = []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            index, kind, tearable, target = line.rstrip("\n").split(" ", 3)
            records.append(OpRecord(int(index), kind, target, tearable == "1"))
    return records
