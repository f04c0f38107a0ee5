"""A deterministic mutation fuzzer: the fallback engine that runs where atheris cannot.

It is not coverage-guided, so it finds less than atheris per execution, but it needs nothing but
the standard library, gives the same inputs for the same seed on every machine, and therefore runs
as an ordinary test (also under Bazel). Mutations are the classic ones that break binary parsers:
bit flips, boundary integers written over 1/2/4/8-byte fields (the header sizes, offsets and
counts the formats are made of), chunk deletion, duplication and splicing between seeds.
"""

from __future__ import annotations

import base64
import random
import struct
import time
import traceback
from dataclasses import dataclass

from harnesses import Target, run_guarded

_INTERESTING = (
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    1 << 32,
    (1 << 62),
    0x7FFFFFFFFFFFFFFF,
    0x8000000000000000,
    0xFFFFFFFFFFFFFFFF,
)
MAX_LEN = 1 << 16


@dataclass(frozen=True)
class Finding:
    """An input that made a target raise something other than OtaError (or run too long)."""

    target: str
    iteration: int
    error: str
    data: bytes

    def report(self) -> str:
        return (
            f"{self.target}: iteration {self.iteration}: {self.error}\n"
            f"input ({len(self.data)} bytes, base64): {base64.b64encode(self.data).decode()}"
        )


@dataclass(frozen=True)
class LoopResult:
    execs: int
    findings: list[Finding]


def _overwrite_int(rng: random.Random, data: bytearray) -> None:
    width = rng.choice((1, 2, 4, 8))
    if len(data) < width:
        return
    value = rng.choice(_INTERESTING) & ((1 << (8 * width)) - 1)
    if rng.random() < 0.3:
        value = (value + rng.choice((-1, 1))) & ((1 << (8 * width)) - 1)
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
    struct.pack_into(("<" if rng.random() < 0.8 else ">") + fmt, data, rng.randrange(len(data) - width + 1), value)


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """One to four stacked mutations of `data`."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        if choice == 0 and out:
            pos = rng.randrange(len(out))
            out[pos] ^= 1 << rng.randrange(8)
        elif choice == 1:
            _overwrite_int(rng, out)
        elif choice == 2 and out:
            pos = rng.randrange(len(out))
            out[pos] = rng.randrange(256)
        elif choice == 3 and out:
            start = rng.randrange(len(out))
            del out[start : start + rng.randint(1, 64)]
        elif choice == 4 and out:
            start = rng.randrange(len(out))
            piece = out[start : start + rng.randint(1, 64)]
            at = rng.randrange(len(out) + 1)
            out[at:at] = piece
        elif choice == 5:
            other = rng.choice(corpus)
            if other:
                start = rng.randrange(len(other))
                at = rng.randrange(len(out) + 1)
                out[at:] = other[start : start + rng.randint(1, 512)] + out[at:]
        elif choice == 6 and out:
            del out[rng.randrange(len(out)) :]  # truncate
    return bytes(out[:MAX_LEN])


def run_loop(
    target: Target,
    *,
    iterations: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    slow_input_seconds: float = 10.0,
    max_findings: int = 5,
) -> LoopResult:
    """Runs seeds then mutants until `iterations` executions or `seconds` elapse."""
    corpus = target.seeds()
    rng = random.Random(f"{target.name}:{seed}")
    findings: list[Finding] = []
    deadline = None if seconds is None else time.monotonic() + seconds
    execs = 0
    while len(findings) < max_findings:
        if iterations is not None and execs >= iterations:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        data = corpus[execs] if execs < len(corpus) else mutate(rng, rng.choice(corpus), corpus)
        started = time.monotonic()
        try:
            run_guarded(target, data)
        except Exception as err:  # noqa: BLE001 - the point of the loop: anything but OtaError is a finding
            last = traceback.extract_tb(err.__traceback__)[-1]
            findings.append(
                Finding(target.name, execs, f"{type(err).__name__}: {err} (at {last.filename}:{last.lineno})", data)
            )
        elapsed = time.monotonic() - started
        if elapsed > slow_input_seconds:
            findings.append(Finding(target.name, execs, f"took {elapsed:.1f} s", data))
        execs += 1
    return LoopResult(execs, findings)
