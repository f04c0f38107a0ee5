"""Runs jobs (diffs, searches) in forked child processes, a bounded number at a time.

Why children: a diff peaks at several times its inputs (about 5 times the source plus twice the
target for the compiled diff, 18 times the source for bsdiff4's), and CPython's allocator keeps
much of that resident after the diff returns, so a long-lived process (the persistent worker)
would keep its largest diff's high-water mark for the rest of its life. A forked child shares the inputs
copy-on-write, sends back only the result, and its whole peak goes back to the system when it
exits. Children also run independent diffs (imgdiff's chunks) on several cores at once.

A child never returns into its parent's code: it sends one pickled outcome on a pipe and ends
with os._exit. A child's OtaError comes back as the same OtaError; a child killed by a signal
(the kernel's out-of-memory killer) is an OtaError naming `where`; any other exception is a bug,
re-raised here as RuntimeError with the child's traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import pickle
import selectors
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ota.errors import OtaError

# A job returns anything pickle can carry: a patch (bytes), or a small answer such as the zlib
# setting imgdiff's search finds.
Job = Callable[[], object]


def default_jobs() -> int:
    """The cores this process may run on (its CPU affinity, which container limits narrow)."""
    return max(1, len(os.sched_getaffinity(0)))


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (what the kernel can give without swapping), or
    None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def release_free_memory() -> None:
    """Hands the memory the C allocator holds free back to the system (glibc's malloc_trim).

    Why: the children take a diff's peak with them, but the caller's own large buffers (imgdiff's
    inflated images) are freed into glibc's heap: once the first buffer over its mmap threshold
    is freed, glibc raises the threshold (up to 32 MiB) and serves the next ones from a heap it
    does not shrink by itself, so a persistent worker kept about 50 MB more after its second boot
    patch than after its first. Where the C library has no malloc_trim, nothing is done."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


@dataclass
class _Child:
    index: int
    pid: int
    fd: int
    received: bytearray = field(default_factory=bytearray)


def _child_main(job: Job, write_fd: int) -> None:
    """The forked side: run the job, send its outcome, and exit without unwinding the caller."""
    code = 0
    try:
        try:
            outcome: tuple = ("ok", job())
        except OtaError as err:
            outcome = ("ota", err.where, err.problem)
        except BaseException:  # noqa: BLE001 - reported to the parent as a bug, with its traceback
            outcome = ("bug", traceback.format_exc())
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
    except BaseException:  # noqa: BLE001 - the pipe broke: the parent reports the missing outcome
        code = 1
    finally:
        os._exit(code)


def _start(index: int, job: Job) -> _Child:
    """Forks the child of `job`. Only the calling thread survives a fork: a lock another thread
    held (the allocator's, zlib's, OpenMP's) stays locked in the child forever, and Python 3.12
    warns of it. So a fork with another thread alive is a bug of the caller, refused here: run the
    work of threads as jobs too (imgdiff's zlib-settings searches are)."""
    alive = threading.active_count()
    if alive > 1:
        raise RuntimeError(f"fork refused: {alive} threads are running, and only the calling one would be copied")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child_main(job, write_fd)
    os.close(write_fd)
    return _Child(index, pid, read_fd)


def _finish(child: _Child, where: str) -> object:
    """Reaps `child` and turns what it sent into its result or the matching exception."""
    _, status = os.waitpid(child.pid, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        raise OtaError(
            where, f"the diff process was killed by signal {number} ({signal.Signals(number).name}; out of memory?)"
        )
    try:
        outcome = pickle.loads(child.received)
    except Exception:  # noqa: BLE001 - a truncated message: the child died while sending
        raise OtaError(
            where, f"the diff process ended (status {os.waitstatus_to_exitcode(status)}) without sending its result"
        ) from None
    if outcome[0] == "ok":
        return outcome[1]
    if outcome[0] == "ota":
        raise OtaError(outcome[1], outcome[2])
    raise RuntimeError(f"a diff process failed:\n{outcome[1]}")


def _stop(children: Sequence[_Child]) -> None:
    """Kills and reaps children still running after another one failed."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        os.waitpid(child.pid, 0)
        os.close(child.fd)


def run(
    jobs: Sequence[Job], *, parallel: int, where: str, costs: Sequence[int] | None = None, budget: int | None = None
) -> list[object]:
    """Each job's result, in order. At most `parallel` children run at once and, when `costs`
    (each job's expected peak bytes) and `budget` are given, a child only starts beside others if
    the running ones' costs and its own fit the budget: side by side, children's peaks add up,
    and running out of memory would cost more than waiting. One child always runs. The first
    failure stops the other children and is raised; so is a RuntimeError when another thread of
    this process is alive at a fork (`_start`)."""
    results: list[object] = [None] * len(jobs)
    cost_of = list(costs) if costs is not None else [0] * len(jobs)
    waiting = list(enumerate(jobs))
    waiting.reverse()
    running: dict[int, _Child] = {}
    selector = selectors.DefaultSelector()

    def fits(index: int) -> bool:
        if not running:
            return True
        if len(running) >= max(1, parallel):
            return False
        return budget is None or sum(cost_of[c.index] for c in running.values()) + cost_of[index] <= budget

    try:
        while waiting or running:
            while waiting and fits(waiting[-1][0]):
                child = _start(*waiting.pop())
                running[child.fd] = child
                selector.register(child.fd, selectors.EVENT_READ, child)
            for key, _ in selector.select():
                child = key.data
                chunk = os.read(child.fd, 1 << 20)
                if chunk:
                    child.received += chunk
                    continue
                selector.unregister(child.fd)
                os.close(child.fd)
                del running[child.fd]
                results[child.index] = _finish(child, where)
    except BaseException:
        _stop(list(running.values()))
        raise
    finally:
        selector.close()
    return results
