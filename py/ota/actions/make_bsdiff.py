"""Making BSDIFF40 patches (the build side; ota/format/bsdiff.py reads and applies them).

Diffing writes bsdiff4's bytes (which matched AOSP's 2009 bsdiff byte for byte in the checks of
docs/formats.md#bsdiff4-and-aosps-bspatch): libdivsufsort's suffix sort and our compiled scan
(ota/native/bsdiff_scan.py) where they load, bsdiff4's own diff where they do not.

Large diffs run in forked children (ota/io/forked.py): their memory peak ends with the child, and
independent diffs (imgdiff's chunks) use several cores. docs/performance.md has the measurements.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence

import bsdiff4

from ota.errors import OtaError
from ota.io import forked
from ota.native import bsdiff_scan

# bsdiff4's suffix sort recurses deeply; on ~66 MB inputs it overflows an 8 MiB stack and kills
# the process (docs/formats.md#measured-limits-of-bsdiff4). Stack pages are only committed when touched.
DIFF_THREAD_STACK = 1 << 30

# Source plus target bytes from which a diff runs in a forked child (ota/io/forked.py). Below it the
# diff's peak (under 20 MB) is less than the interpreter's own, and a fork of a large parent (page
# tables, a pipe, a wait) would cost more than the diff.
IN_PROCESS_LIMIT = 1 << 20

# bsdiff4's own peak per byte of the old file: two 8-byte suffix sort arrays plus the inputs
# (bench/bench_diff_speed.py measured 18.5x on a 24 MB kernel Image).
BSDIFF4_PEAK_PER_SOURCE_BYTE = 18


def engine() -> str:
    """Which code diffs here: "native" (libdivsufsort and ota/native/bsdiff_scan.c) or "bsdiff4"
    (the library or pydivsufsort could not be loaded). Both write the same bytes."""
    return "native" if bsdiff_scan.load() is not None else "bsdiff4"


def peak_estimate(source_size: int, target_size: int) -> int:
    """The bytes a diff of these sizes is expected to hold at its peak, inputs included."""
    if bsdiff_scan.load() is not None and source_size <= bsdiff_scan.MAX_SOURCE:
        return bsdiff_scan.PEAK_PER_SOURCE_BYTE * source_size + bsdiff_scan.PEAK_PER_TARGET_BYTE * target_size
    return BSDIFF4_PEAK_PER_SOURCE_BYTE * source_size + 2 * target_size


def diff(source: bytes, target: bytes, *, where: str = "bsdiff") -> bytes:
    """Makes a BSDIFF40 patch (bzip2 level 9, as AOSP); see diff_many."""
    return diff_many([(source, target)], where=where)[0]


def diff_many(
    pairs: Sequence[tuple[bytes, bytes]], *, where: str = "bsdiff", parallel: int | None = None
) -> list[bytes]:
    """BSDIFF40 patches of independent (source, target) pairs, in order, each byte-identical to
    bsdiff4's diff. Pairs of at least IN_PROCESS_LIMIT bytes run in forked children, up to
    `parallel` at once (default: every core this process may use) and only as many side by side
    as the memory the kernel reports available can hold, so that their peak memory goes back to
    the system when they end and they use more than one core; smaller pairs run here, where a
    fork would cost more than the diff.

    Running out of memory (peak_estimate) is an OtaError naming `where`, so a tool under a
    memory limit fails with one line like any other bad input.
    """
    return diff_many_beside(pairs, [], where=where, parallel=parallel)[0]


def diff_many_beside(
    pairs: Sequence[tuple[bytes, bytes]],
    others: Sequence[tuple[forked.Job, int]],
    *,
    where: str = "bsdiff",
    parallel: int | None = None,
) -> tuple[list[bytes], list[object]]:
    """diff_many's patches, and the results of `others` ((job, expected peak bytes) pairs of work
    that is not a diff: imgdiff's zlib-settings searches), every job in one pool of children.

    One pool, because a fork copies only the calling thread (ota/io/forked.py): work that ran in
    threads beside the diffs' children would be forked mid-flight. Jobs start longest first (a
    diff's time grows with its sizes as its peak does; `others` after the diffs), which keeps the
    cores busy to the end when the pool has fewer slots than jobs.
    """
    results: list[bytes | None] = [None] * len(pairs)
    big = [index for index, (source, target) in enumerate(pairs) if len(source) + len(target) >= IN_PROCESS_LIMIT]
    costs = {index: peak_estimate(len(pairs[index][0]), len(pairs[index][1])) for index in big}
    big.sort(key=lambda index: -costs[index])
    jobs = [functools.partial(_diff_here, *pairs[index], where) for index in big] + [job for job, _ in others]
    made = forked.run(
        jobs,
        parallel=parallel or forked.default_jobs(),
        where=where,
        costs=[costs[index] for index in big] + [cost for _, cost in others],
        budget=forked.available_memory(),
    )
    for index, patch in zip(big, made, strict=False):
        results[index] = patch  # type: ignore[assignment]
    for index, (source, target) in enumerate(pairs):
        if results[index] is None:
            results[index] = _diff_here(source, target, where)
    return results, made[len(big) :]  # type: ignore[return-value]


def _diff_here(source: bytes, target: bytes, where: str) -> bytes:
    """One diff in this process: the compiled scan where it loaded, else bsdiff4's diff."""
    source, target = bytes(source), bytes(target)  # the scan reads them through char pointers
    scanner = bsdiff_scan.load()
    if scanner is not None and len(source) <= bsdiff_scan.MAX_SOURCE:
        try:
            return scanner.diff(source, target)
        except MemoryError:
            raise _out_of_memory(source, target, where) from None
    return _bsdiff4_diff(source, target, where)


def _out_of_memory(source: bytes, target: bytes, where: str) -> OtaError:
    return OtaError(
        where,
        f"out of memory diffing a {len(source)}-byte source (the diff needs about "
        f"{peak_estimate(len(source), len(target)) >> 20} MiB)",
    )


def _bsdiff4_diff(source: bytes, target: bytes, where: str) -> bytes:
    """bsdiff4's diff, in a thread with a stack big enough for its recursive suffix sort on
    inputs of tens of megabytes."""
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["patch"] = bsdiff4.diff(source, target)
        except MemoryError:
            outcome["error"] = _out_of_memory(source, target, where)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = err

    worker = _start_with_large_stack(work, where)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["patch"]  # type: ignore[return-value]


# Under an address-space limit (ulimit -v) a 1 GiB stack cannot be reserved; such a limit also
# caps the inputs bsdiff4 can hold (18x the source), and those need far less stack.
_STACK_SIZES = (DIFF_THREAD_STACK, 1 << 28, 1 << 26)


def _start_with_large_stack(work: Callable[[], None], where: str) -> threading.Thread:
    """Starts `work` in a thread with the largest stack of _STACK_SIZES the process can reserve."""
    previous = threading.stack_size()
    try:
        for size in _STACK_SIZES:
            threading.stack_size(size)
            worker = threading.Thread(target=work, name="bsdiff")
            try:
                worker.start()
            except RuntimeError:  # "can't start new thread": the stack did not fit
                continue
            return worker
    finally:
        threading.stack_size(previous)
    raise OtaError(where, f"cannot start the diff thread: no room for even a {_STACK_SIZES[-1] >> 20} MiB stack")
