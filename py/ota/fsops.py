"""The one I/O layer for every device-side change, with a power-loss fault injector.

Why one layer: an update must survive power failing at any moment, and the only way to show that
is to cut the process at *every* step that changes what is on disk and then rerun. So every
state-changing operation of applypatch (and of ota_apply) goes through an `FsOps` object, which
numbers the operations (1, 2, 3, ...) and can stop at any of them:

* ``before:N``  power is lost just before operation N (it never reaches the disk);
* ``after:N``   operation N completes, then power is lost;
* ``tear:N``    operation N is cut half way: a write leaves its first half, an MTD page program
                leaves a partially programmed page, an MTD erase leaves a half-erased block (only
                for operations that say how they tear; see `OpRecord.tearable`);
* ``lie:N``     operation N is torn as above but reports success and the run goes on (a device
                that drops writes: read-back verification must catch it);
* ``enospc:N`` / ``eio:N``  operation N fails with that errno (a full or failing disk).

Reads and queries are not operations: they change nothing, so there is nothing to cut.

A crash either raises `PowerLoss` (in-process runs, fast: every later operation raises too, so
no cleanup code can write after the "power cut") or calls ``os._exit(CRASH_EXIT_CODE)`` (child
processes, selected with the ``OTA_FAULT`` environment variable or a tool's ``--fault`` flag).
``OTA_FAULT_LOG=<file>`` appends one line per operation (``index kind tearable target``), which
is how a caller lists the crash points of a child process.

Model and its limit: the injector cuts the *process*, not the kernel, so data written but not
yet fsync'ed still reaches the disk. Each operation is durable once done, in order; the fsyncs
are crash points of their own and the protocols place them where ordering matters.

`sweep` runs a `Scenario` through every crash point: prepare a fresh device, run with the cut,
rerun without faults, check the final state.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

T = TypeVar("T")

CRASH_EXIT_CODE = 86
ENV_FAULT = "OTA_FAULT"
ENV_FAULT_LOG = "OTA_FAULT_LOG"
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


class FsOps:
    """Performs and counts state-changing I/O; injects at most one fault (see module doc).

    Args:
      fault: the fault to inject, or None for a clean run.
      on_crash: "raise" (PowerLoss, for in-process runs) or "exit" (os._exit, like power loss).
      log_path: if set, one line per operation is appended there as it happens.
    """

    def __init__(self, fault: FaultPoint | None = None, *, on_crash: str = "raise",
                 log_path: str | None = None) -> None:
        if on_crash not in ("raise", "exit"):
            raise ValueError(f"on_crash must be 'raise' or 'exit', not {on_crash!r}")
        self.fault = fault
        self.on_crash = on_crash
        self.log: list[OpRecord] = []
        self.crashed = False
        self._log_path = log_path

    @classmethod
    def from_env(cls, fault_text: str | None = None) -> FsOps:
        """The FsOps of a tool run: fault from `fault_text` or $OTA_FAULT, crash by os._exit."""
        text = fault_text or os.environ.get(ENV_FAULT, "")
        fault = FaultPoint.parse(text) if text else None
        return cls(fault, on_crash="exit", log_path=os.environ.get(ENV_FAULT_LOG) or None)

    # -- the one primitive -------------------------------------------------------------------

    def perform(self, kind: str, target: str, action: Callable[[], T],
                tear: Callable[[], None] | None = None) -> T | None:
        """Runs `action` as the next numbered operation, injecting the planned fault if it is this one.

        `tear` performs the operation half way (what power loss mid-operation leaves behind); it
        is what ``tear:N`` and ``lie:N`` run. For operations without a `tear`, ``tear:N`` acts as
        ``before:N`` and ``lie:N`` drops the operation entirely.
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
            return action()
        if fault.mode == "before":
            self._crash()
        if fault.mode == "tear":
            if tear is not None:
                tear()
            self._crash()
        if fault.mode == "lie":
            if tear is not None:
                tear()
            return None
        if fault.mode in ("enospc", "eio"):
            code = errno.ENOSPC if fault.mode == "enospc" else errno.EIO
            raise OSError(code, os.strerror(code), target)
        result = action()  # mode "after"
        self._crash()
        return result

    def _crash(self) -> None:
        self.crashed = True
        if self.on_crash == "exit":
            os._exit(CRASH_EXIT_CODE)
        raise PowerLoss(str(self.fault))

    # -- the operations ----------------------------------------------------------------------

    def create(self, path: str, mode: int = 0o600) -> int:
        """Opens `path` for writing, created or truncated to empty (an operation: it truncates)."""
        fd = self.perform("create", path, lambda: os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
        if fd is None:  # "lie": the device pretended; open it without truncating
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
        return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int, target: str) -> None:
        """Writes all of `data` at `offset`; tears as a write of only its first half."""
        view = memoryview(data)

        def write_all(part: memoryview) -> None:
            done = 0
            while done < len(part):
                done += os.pwrite(fd, part[done:], offset + done)

        self.perform("write", f"{target}@{offset}+{len(view)}", lambda: write_all(view),
                     tear=lambda: write_all(view[: len(view) // 2]))

    def write_pieces(self, fd: int, data: bytes, target: str, piece: int, *, start: int = 0,
                     fsync_each: bool = False) -> None:
        """Writes `data[start:]` at the same offsets in pieces ending on multiples of `piece`.

        Bounded pieces keep the number of crash points (and the work lost to a cut) in proportion
        to the data, not to the number of syscalls.
        """
        view = memoryview(data)
        offset = start
        while offset < len(view):
            end = min(len(view), (offset // piece + 1) * piece)
            self.pwrite(fd, view[offset:end], offset, target)
            if fsync_each:
                self.fsync(fd, target)
            offset = end

    def fsync(self, fd: int, target: str) -> None:
        self.perform("fsync", target, lambda: os.fsync(fd))

    def fsync_dir(self, path: str) -> None:
        """Makes a directory's entries (a create, rename or unlink in it) durable."""

        def sync() -> None:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        self.perform("fsync_dir", path, sync)

    def rename(self, source: str, destination: str) -> None:
        self.perform("rename", f"{source}->{destination}", lambda: os.rename(source, destination))

    def unlink(self, path: str) -> None:
        self.perform("unlink", path, lambda: os.unlink(path))

    def truncate(self, fd: int, length: int, target: str) -> None:
        self.perform("truncate", f"{target}:{length}", lambda: os.ftruncate(fd, length))

    def chmod(self, fd: int, mode: int, uid: int, gid: int, target: str) -> None:
        """Sets owner and mode in one operation (both are one inode update).

        The owner comes first: Linux clears setuid/setgid on chown, even for root, so the mode
        must be set after it.
        """

        def apply() -> None:
            stat = os.fstat(fd)
            if (uid, gid) != (stat.st_uid, stat.st_gid):
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)

        self.perform("chmod", f"{target}:{mode:o}", apply)

    def ioctl(self, fd: int, request: int, arg: bytearray | int, target: str, kind: str = "ioctl",
              tear: Callable[[], None] | None = None) -> int:
        """A state-changing ioctl (MEMERASE, BLKFLSBUF); returns the ioctl's return value."""
        import fcntl  # only device paths need it

        result = self.perform(kind, f"{target}:ioctl {request:#x}", lambda: fcntl.ioctl(fd, request, arg), tear)
        return int(result) if isinstance(result, int) else 0

    # -- listing crash points ----------------------------------------------------------------

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
    """Reads the ``OTA_FAULT_LOG`` file a child process wrote."""
    records = []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            index, kind, tearable, target = line.rstrip("\n").split(" ", 3)
            records.append(OpRecord(int(index), kind, target, tearable == "1"))
    return records


class Scenario(Protocol):
    """An operation under power-loss test (see `sweep`)."""

    def prepare(self) -> None:
        """Puts the device into its starting state (called before every cut run)."""

    def run(self, ops: FsOps) -> None:
        """Performs the operation with all its I/O through `ops`."""

    def recover(self) -> str | None:
        """Reruns the operation without faults; returns an error text if it refused."""

    def check(self, recover_error: str | None) -> str | None:
        """Returns None if the final state is acceptable, else what is wrong."""


@dataclass
class Outcome:
    """What happened at one crash point."""

    point: FaultPoint
    crashed: bool
    recover_error: str | None
    problem: str | None

    @property
    def recovered(self) -> bool:
        return self.problem is None


@dataclass
class SweepResult:
    """All outcomes of one sweep."""

    points: list[FaultPoint]
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def recovered(self) -> int:
        return sum(outcome.recovered for outcome in self.outcomes)

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.recovered]


def sweep(scenario: Scenario, points: Iterable[FaultPoint] | None = None) -> SweepResult:
    """Cuts `scenario` at each crash point (all of a clean run's, unless `points` is given), in-process."""
    if points is None:
        scenario.prepare()
        clean = FsOps()
        scenario.run(clean)
        points = clean.crash_points()
    result = SweepResult(list(points))
    for point in result.points:
        scenario.prepare()
        ops = FsOps(point)
        crashed = False
        try:
            scenario.run(ops)
        except PowerLoss:
            crashed = True
        error = scenario.recover()
        result.outcomes.append(Outcome(point, crashed, error, scenario.check(error)))
    return result
