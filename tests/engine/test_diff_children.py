"""Diffs in forked children (ota/io/forked.py behind make_bsdiff.diff, diff_many and imgdiff): the same
bytes as bsdiff4 in-process on generated pairs of every kind, applied by our bspatch and Debian's,
failures that come back as one-line errors, and memory that goes back with the child."""

from __future__ import annotations

import gzip
import itertools
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bsdiff4
import pytest

from ota.actions import imgdiff, make_bsdiff
from ota.errors import OtaError
from ota.format import bsdiff, imgpatch
from ota.io import forked


def _base(rng: random.Random, size: int, compressible: bool) -> bytes:
    if not compressible:
        return rng.randbytes(size)
    words = [rng.randbytes(rng.randint(2, 12)) for _ in range(300)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
    return bytes(out[:size])


def _edit(rng: random.Random, data: bytes) -> bytes:
    """Inserts, deletes, overwrites and repeated blocks: what separates two builds of a file."""
    out = bytearray(data)
    for _ in range(rng.randint(0, 12)):
        at = rng.randint(0, len(out))
        kind = rng.choice(("insert", "delete", "overwrite", "repeat"))
        span = rng.randint(1, max(1, len(out) // 20 + 1))
        if kind == "insert":
            out[at:at] = rng.randbytes(span)
        elif kind == "delete":
            del out[at : at + span]
        elif kind == "overwrite":
            out[at : at + span] = rng.randbytes(min(span, len(out) - at))
        else:
            out[at:at] = bytes(out[max(0, at - span) : at]) * rng.randint(1, 3)
    return bytes(out)


def _pairs(seed: int, count: int, max_size: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        size = rng.choice((0, 1, rng.randint(2, 4096), rng.randint(4096, max_size)))
        source = _base(rng, size, rng.random() < 0.6)
        pairs.append((source, _edit(rng, source) if rng.random() < 0.9 else _base(rng, size, False)))
    return pairs


def _apply_both(tmp_path: Path, source: bytes, made: bytes, target: bytes) -> None:
    assert bsdiff.apply(source, made) == target
    (tmp_path / "src").write_bytes(source)
    (tmp_path / "p").write_bytes(made)
    subprocess.run(["bspatch", tmp_path / "src", tmp_path / "out", tmp_path / "p"], check=True)
    assert (tmp_path / "out").read_bytes() == target


# 40 pairs below and 6 above IN_PROCESS_LIMIT (these run in children); sizes 0 to 2.5 MB.
@pytest.mark.parametrize("seed,count,max_size", [(1, 20, 200_000), (2, 20, 600_000), (3, 6, 2_500_000)])
def test_patches_equal_bsdiff4_and_apply_with_ours_and_debian(
    tmp_path: Path, seed: int, count: int, max_size: int
) -> None:
    pairs = _pairs(seed, count, max_size)
    if max_size > make_bsdiff.IN_PROCESS_LIMIT:
        pairs = [(s + _base(random.Random(len(s)), make_bsdiff.IN_PROCESS_LIMIT, True), t) for s, t in pairs]
    for (source, target), made in zip(pairs, make_bsdiff.diff_many(pairs, parallel=3), strict=False):
        assert made == bsdiff4.diff(source, target)  # same bytes, so the same size and the same appliers
        _apply_both(tmp_path, source, made, target)
    source, target = pairs[-1]
    assert make_bsdiff.diff(source, target) == bsdiff4.diff(source, target)


def _gzip_image(rng: random.Random, members: list[bytes]) -> bytes:
    parts = []
    for body in members:
        parts.append(rng.randbytes(rng.randint(0, 300)))
        parts.append(gzip.compress(body, compresslevel=9, mtime=0))
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(3))
def test_imgdiff_in_parallel_children_writes_the_serial_bytes(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Chunks big enough to fork (and small ones in-process) give the bytes of a serial run."""
    rng = random.Random(seed)
    bodies = [_base(rng, rng.choice((300, 50_000, 700_000)), True) for _ in range(3)]
    source = _gzip_image(random.Random(seed), bodies)
    target = _gzip_image(random.Random(seed), [_edit(rng, body) for body in bodies])
    parallel = imgdiff.make_image_patch(source, target)
    monkeypatch.setattr(make_bsdiff, "IN_PROCESS_LIMIT", 1 << 62)
    assert imgdiff.make_image_patch(source, target) == parallel
    assert imgpatch.apply(source, parallel) == target


def _sleep_then(seconds: float, result: bytes) -> bytes:
    time.sleep(seconds)
    return result


def test_results_keep_their_order_whatever_finishes_first() -> None:
    jobs = [lambda n=n: _sleep_then((7 - n) * 0.05, b"%d" % n * n) for n in range(7)]
    assert forked.run(jobs, parallel=3, where="w") == [b"%d" % n * n for n in range(7)]


def _span(seconds: float) -> bytes:
    """The job's start and end on the system-wide monotonic clock, to see which jobs overlapped."""
    start = time.monotonic()
    time.sleep(seconds)
    return b"%r %r" % (start, time.monotonic())


def _overlaps(results: list[bytes]) -> int:
    spans = sorted(tuple(map(float, made.split())) for made in results)
    return sum(1 for before, after in itertools.pairwise(spans) if after[0] < before[1])


@pytest.mark.parametrize("budget,expect_overlap", [(None, True), (250, True), (150, False), (1, False)])
def test_children_start_side_by_side_only_within_the_memory_budget(budget: int | None, expect_overlap: bool) -> None:
    jobs = [lambda: _span(0.4)] * 4
    results = forked.run(jobs, parallel=4, where="w", costs=[100] * 4, budget=budget)
    assert (_overlaps(results) > 0) == expect_overlap


def _raise_ota() -> bytes:
    raise OtaError("kernel.img", "bad chunk")


def _bug() -> bytes:
    raise ValueError("a bug in the job")


def _killed() -> bytes:
    os.kill(os.getpid(), signal.SIGKILL)
    return b""


def test_child_failures_come_back_as_one_line_errors() -> None:
    with pytest.raises(OtaError) as raised:
        forked.run([_raise_ota], parallel=1, where="w")
    assert str(raised.value) == "kernel.img: bad chunk"
    with pytest.raises(OtaError) as raised:
        forked.run([lambda: b"ok", _killed], parallel=2, where="boot.img")
    assert str(raised.value) == "boot.img: the diff process was killed by signal 9 (SIGKILL; out of memory?)"
    with pytest.raises(RuntimeError, match="ValueError: a bug in the job"):
        forked.run([_bug], parallel=1, where="w")


def test_a_failure_stops_the_other_children() -> None:
    started = time.monotonic()
    with pytest.raises(OtaError):
        forked.run([lambda: _sleep_then(120, b""), _raise_ota], parallel=2, where="w")
    assert time.monotonic() - started < 60
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every child was reaped, none left behind


def test_a_big_diff_leaves_no_high_water_mark_in_the_caller() -> None:
    """The persistent worker's case: after an 8 MB diff (its suffix array alone is 32 MB) the
    calling process has grown by little more than the inputs it holds."""
    probe = textwrap.dedent("""
        import random, resource
        from ota.actions import make_bsdiff
        from ota.format import bsdiff
        def status_kb(field):  # this process's own figures (ru_maxrss carries the parent's across exec)
            line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
            return int(line.split()[1])
        rng = random.Random(5)
        source = rng.randbytes(8 << 20)
        target = source[:1000] + rng.randbytes(5000) + source[1000:]
        make_bsdiff.engine()  # loads the libraries: a worker's one-time cost, not the diff's
        before = status_kb("VmHWM")
        made = make_bsdiff.diff(source, target)
        after = status_kb("VmHWM")
        assert bsdiff.apply(source, made) == target
        print(before, after, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before_kb, after_kb, child_kb = map(int, done.stdout.split())
    assert child_kb - before_kb > 24 << 10  # the diff's peak was real, and it was the child's
    assert after_kb - before_kb < 10 << 10


def test_imgdiff_leaves_no_high_water_mark_in_the_caller() -> None:
    """The persistent worker's boot patches: the inflated images the caller held are handed back
    to the system after each patch, not kept in the C allocator's heap (which glibc grows for
    buffers freed once, past its first request). Three patches of generated images with members
    of 6 MB; after each, the caller holds about what it held before the first."""
    probe = textwrap.dedent("""
        import gzip, random
        from ota.actions import imgdiff, make_bsdiff
        def rss_kb():
            line = next(l for l in open("/proc/self/status") if l.startswith("VmRSS:"))
            return int(line.split()[1])
        rng = random.Random(11)
        words = [rng.randbytes(rng.randint(2, 12)) for _ in range(3000)]
        def body(size):
            return b"".join(rng.choice(words) for _ in range(size // 7))[:size]
        def edit(data):
            out = bytearray(data)
            for _ in range(40):
                at = rng.randrange(len(out))
                out[at : at + 50] = rng.randbytes(rng.randint(0, 80))
            return bytes(out)
        olds = [body(6 << 20) for _ in range(2)]
        source = b"head" + b"".join(gzip.compress(b, 9, mtime=0) for b in olds)
        target = b"head" + b"".join(gzip.compress(edit(b), 9, mtime=0) for b in olds)
        make_bsdiff.engine()
        imgdiff.make_image_patch(source[:100], target[:100])  # one-time imports and libraries
        before = rss_kb()
        print(before, *(imgdiff.make_image_patch(source, target) and rss_kb() for _ in range(3)))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before_kb, *after_kb = map(int, done.stdout.split())
    assert max(after_kb) - before_kb < 4 << 10, (before_kb, after_kb)  # 24 MB of inflated members were held


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_the_persistent_worker_falls_back_after_each_request(tmp_path: Path) -> None:
    """A real file_patch worker serving file diffs of 6-10 MB (each read, diffed in a child and
    dropped): its resident size is the same after every response, where glibc's heap kept up to
    9 MB of freed file contents from one request to the next before."""
    from ota.actions import persistent_worker
    from ota.proto import worker_protocol_pb2 as pb

    rng = random.Random(17)
    requests = []
    for number in range(4):
        source = _base(rng, rng.randint(6 << 20, 10 << 20), True)
        (tmp_path / f"old{number}").write_bytes(source)
        (tmp_path / f"new{number}").write_bytes(_edit(rng, source))
        requests.append(
            ["--source", f"old{number}", "--target", f"new{number}", "--path", f"system/f{number}"]
            + ["--out_data", f"f{number}.p", "--out_info", f"f{number}.json"]
        )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.abspath(p) for p in sys.path if p))
    process = subprocess.Popen(
        [sys.executable, "-m", "ota.actions.file_patch", "--persistent_worker"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    resident_kb = []
    try:
        for number, args in enumerate(requests):
            request = pb.WorkRequest(arguments=args, request_id=number, inputs=[pb.Input(path="x", digest=b"\1")])
            persistent_worker.write_message(process.stdin, request.SerializeToString())
            response = pb.WorkResponse.FromString(persistent_worker.read_message(process.stdout))
            assert response.exit_code == 0, response.output
            resident_kb.append(_rss_kb(process.pid))
    finally:
        process.stdin.close()
        process.wait(timeout=60)
    assert max(resident_kb) - min(resident_kb) < 2 << 10, resident_kb  # 12-20 MB of file contents per request
