"""The compiled diff (libdivsufsort's sort and ota/native/bsdiff_scan.c) against bsdiff4's diff:
the same bytes on generated pairs of every kind, bsdiff4 when the library cannot load, and the
memory the compiled diff is allowed (docs/performance.md)."""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import textwrap

import bsdiff4
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ota.actions import make_bsdiff
from ota.format import bsdiff
from ota.native import bsdiff_scan


def _scanner() -> bsdiff_scan.Scanner:
    scanner = bsdiff_scan.load()
    assert scanner is not None, "libbsdiff_scan.so or pydivsufsort did not load (see docs/performance.md)"
    return scanner


def test_the_build_ships_the_compiled_diff() -> None:
    """Bazel's py_library and `pip install ./py` both bring the library: a silent fallback to
    bsdiff4 would keep the bytes but lose the speed."""
    assert make_bsdiff.engine() == "native"


@pytest.mark.skipif("TEST_SRCDIR" not in os.environ, reason="the runfiles are Bazel's; a plain venv may hold numpy")
def test_the_compiled_diff_loads_without_numpy() -> None:
    """//py:ota takes pydivsufsort without the packages it requires (py/BUILD,
    `@rules_ota_pypi//pydivsufsort:without_deps`): the scan finds libdivsufsort by the package's
    location, never importing it, so numpy (1,055 files) is not a runfile of any tool or test."""
    assert bsdiff_scan.load() is not None
    assert importlib.util.find_spec("numpy") is None


def _edited(rng: random.Random, data: bytes) -> bytes:
    """Inserts, deletes, overwrites, repeats and shifts: what separates two builds of a file."""
    out = bytearray(data)
    for _ in range(rng.randint(0, 10)):
        at = rng.randint(0, len(out))
        span = rng.randint(1, max(1, len(out) // 16 + 1))
        kind = rng.choice(("insert", "delete", "overwrite", "repeat", "shift"))
        if kind == "insert":
            out[at:at] = rng.randbytes(span)
        elif kind == "delete":
            del out[at : at + span]
        elif kind == "overwrite":
            out[at : at + span] = rng.randbytes(min(span, len(out) - at))
        elif kind == "repeat":
            out[at:at] = bytes(out[max(0, at - span) : at]) * rng.randint(1, 3)
        else:
            out = out[at:] + out[:at]
    return bytes(out)


def _base(rng: random.Random, size: int, kind: str) -> bytes:
    if kind == "random":
        return rng.randbytes(size)
    if kind == "repetitive":  # runs and short periods: the sort's and the scan's worst cases, kept
        # small by the callers (bsdiff's scan is quadratic on an edited megabyte of them)
        unit = rng.randbytes(rng.randint(1, 3))
        return (unit * (size // len(unit) + 1))[:size]
    words = [rng.randbytes(rng.randint(2, 12)) for _ in range(200)]  # code-like: words from a vocabulary
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
        if kind == "padded" and rng.random() < 0.002:  # an image's alignment padding
            out += bytes(rng.randint(1, 4096))
    return bytes(out[:size])


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    rng = random.Random(draw(st.integers(0, 1 << 32)))
    size = draw(st.sampled_from((0, 1, 2, 3, 17, 300, 5_000, 60_000)))
    source = _base(rng, size, draw(st.sampled_from(("random", "repetitive", "words"))))
    how = draw(st.sampled_from(("edited", "edited", "unrelated", "empty", "same")))
    target = {
        "edited": lambda: _edited(rng, source),
        "unrelated": lambda: _base(rng, rng.randint(0, 2 * size + 5), "words"),
        "empty": lambda: b"",
        "same": lambda: source,
    }[how]()
    return source, target


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pairs())
def test_compiled_diff_writes_bsdiff4s_bytes(pair: tuple[bytes, bytes]) -> None:
    source, target = pair
    made = _scanner().diff(source, target)
    assert made == bsdiff4.diff(source, target)
    assert bsdiff.apply(source, made) == target


@pytest.mark.parametrize("seed,kind", [(1, "words"), (2, "random"), (3, "padded"), (4, "words")])
def test_compiled_diff_writes_bsdiff4s_bytes_past_a_mebibyte(seed: int, kind: str) -> None:
    rng = random.Random(seed)
    source = _base(rng, rng.randint(1 << 20, 3 << 20), kind)
    target = _edited(rng, source)
    made = _scanner().diff(source, target)
    assert made == bsdiff4.diff(source, target)
    assert bsdiff.apply(source, made) == target


@pytest.mark.parametrize("seed", range(40))
def test_without_the_library_bsdiff4_writes_the_same_bytes(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = random.Random(seed)
    source = _base(rng, rng.choice((0, 1, 700, 40_000)), rng.choice(("random", "repetitive", "words")))
    target = _edited(rng, source)
    compiled = make_bsdiff.diff(source, target)
    monkeypatch.setattr(bsdiff_scan, "load", lambda: None)
    assert make_bsdiff.engine() == "bsdiff4"
    assert make_bsdiff.diff(source, target) == compiled == bsdiff4.diff(source, target)


def test_a_missing_library_loads_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bsdiff_scan, "LIBRARY_NAME", "libnot_there.so")
    bsdiff_scan.load.cache_clear()
    try:
        assert bsdiff_scan.load() is None
    finally:
        monkeypatch.undo()
        bsdiff_scan.load.cache_clear()
    assert bsdiff_scan.load() is not None


def test_a_source_past_the_32_bit_sort_goes_to_bsdiff4(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(bsdiff_scan, "MAX_SOURCE", 999)
    monkeypatch.setattr(bsdiff4, "diff", lambda s, t, real=bsdiff4.diff: calls.append(len(s)) or real(s, t))
    source = _base(random.Random(7), 1000, "words")
    make_bsdiff.diff(source[:999], source)
    make_bsdiff.diff(source, source[:999])
    assert calls == [1000]


def test_a_forked_diff_after_one_in_process_finishes() -> None:
    """libdivsufsort sorts with OpenMP, whose thread pool does not survive fork: a child forked
    after the parent's own sort would wait forever (ota/native/bsdiff_scan.py keeps it to one
    thread). In a subprocess, so that a hang fails by its timeout instead of stopping the run."""
    probe = textwrap.dedent("""
        import random
        from ota.actions import make_bsdiff
        rng = random.Random(9)
        for size in (300_000, 3 << 20, 200_000, 2 << 20):
            source = rng.randbytes(size)
            target = source[size // 3 :] + source[: size // 3]
            assert make_bsdiff.diff(source, target) == make_bsdiff.diff(source, target, where="again")
        print("done")
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=240, check=True)
    assert done.stdout == "done\n"


def test_peak_memory_is_under_five_times_the_input() -> None:
    """An 8 MB code-like pair: from the interpreter's own size (the libraries loaded)
    the diff's process holds at most 5 times old plus new at its peak (bsdiff4 needs about 18
    times the old file), and the diff itself adds no more than its suffix array (4 bytes per old
    byte) and its streams (one byte per new byte). VmHWM is reset (clear_refs) once the inputs
    are made, so the generator's own peak does not count."""
    probe = textwrap.dedent("""
        import random
        from ota.native import bsdiff_scan
        def status_kb(field):
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
        scanner = bsdiff_scan.load()
        interpreter_kb = status_kb("VmRSS")
        rng = random.Random(3)
        words = [rng.randbytes(rng.randint(2, 12)) for _ in range(2000)]
        source = b"".join(rng.choice(words) for _ in range(1_200_000))[: 8 << 20]
        edited = bytearray(source)
        for _ in range(2000):
            at = rng.randrange(len(edited))
            edited[at : at + 8] = rng.randbytes(8)
        target = bytes(edited[4096:]) + rng.randbytes(4096)
        del edited, words
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before_kb = status_kb("VmRSS")
        scanner.diff(source, target)
        print(len(source), len(target), interpreter_kb << 10, before_kb << 10, status_kb("VmHWM") << 10)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    old, new, interpreter, before, peak = map(int, done.stdout.split())
    assert peak - interpreter <= 5 * (old + new), f"peak {peak >> 20} MiB, interpreter {interpreter >> 20} MiB"
    assert peak - before <= 4 * old + new + (4 << 20), f"the diff added {(peak - before) >> 20} MiB"
