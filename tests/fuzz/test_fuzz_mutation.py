"""Every device-side parser survives a fixed-seed mutation run: only OtaError may escape.

This engine runs everywhere (also in Bazel's sandbox); test_fuzz_atheris.py adds coverage-guided
runs of the same harnesses.
"""

from __future__ import annotations

import struct

import pytest

from harnesses import TARGETS, Target
from mutate import run_loop

ITERATIONS = 15_000


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_accepted_inputs(name):
    """Seeds must be valid inputs, or the fuzzer starts from rejected bytes and tests little."""
    target = TARGETS[name]
    for seed in target.seeds():
        target.run(seed)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutation_loop_finds_nothing(name):
    result = run_loop(TARGETS[name], iterations=ITERATIONS, seed=0)
    assert result.execs == ITERATIONS
    assert not result.findings, "\n".join(f.report() for f in result.findings)


def test_the_loop_reports_a_crashing_input_with_its_bytes():
    def fragile(data: bytes) -> None:
        (length,) = struct.unpack_from("<I", data)  # struct.error on short input: a bug
        if length > len(data):
            raise IndexError(f"length {length}")

    result = run_loop(Target("fragile", fragile, lambda: [b"\x04\0\0\0"]), iterations=500, seed=3)
    assert result.findings
    first = result.findings[0]
    assert first.error.startswith(("error: unpack_from requires", "IndexError: length"))
    assert "input (" in first.report() and first.data is not None
    with pytest.raises((struct.error, IndexError)):
        fragile(first.data)
