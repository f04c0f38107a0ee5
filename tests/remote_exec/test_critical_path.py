"""critical_path against brute force on generated action graphs, and the N-worker bounds."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cache.execlog import Spawn
from tests.remote_exec.critical_path import critical_path


def _graph(rng: random.Random, size: int) -> tuple[list[Spawn], dict[str, float]]:
    """`size` spawns; each reads some earlier spawns' outputs (a DAG), listed in shuffled order, as
    an execution log lists finished spawns, not a topological order."""
    spawns, seconds = [], {}
    for index in range(size):
        parents = [p for p in range(index) if rng.random() < 0.3]
        inputs = tuple(f"out/{p}/{rng.choice('ab')}" for p in parents) + ("src/x", f"in/{index}")
        name = f"s{index}"
        seconds[name] = round(rng.uniform(0, 10), 3)
        spawns.append(Spawn(name, "remote", False, {}, inputs=inputs, declared=(f"out/{index}/a", f"out/{index}/b")))
    rng.shuffle(spawns)
    return spawns, seconds


def _longest_by_enumeration(spawns: list[Spawn], seconds: dict[str, float]) -> float:
    """Every chain, by brute force over paths from each spawn."""
    producer = {o: s for s in spawns for o in s.declared}
    parents = {s.mnemonic: {producer[i].mnemonic for i in s.inputs if i in producer} for s in spawns}

    def longest(name: str) -> float:
        return seconds[name] + max((longest(p) for p in parents[name]), default=0.0)

    return max((longest(s.mnemonic) for s in spawns), default=0.0)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 12))
def test_matches_brute_force_and_chain_is_a_real_path(seed: int, size: int) -> None:
    spawns, seconds = _graph(random.Random(seed), size)
    path = critical_path(spawns, lambda s: seconds[s.mnemonic])
    assert abs(path.seconds - _longest_by_enumeration(spawns, seconds)) < 1e-6
    assert abs(path.work - sum(seconds.values())) < 1e-6
    chain = [spawns[i] for i in path.chain]
    assert abs(sum(seconds[s.mnemonic] for s in chain) - path.seconds) < 1e-6
    for before, after in itertools.pairwise(chain):  # each step consumes the previous one's output
        assert set(before.declared) & set(after.inputs)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 12), workers=st.integers(1, 200))
def test_estimate_bounds(seed: int, size: int, workers: int) -> None:
    spawns, seconds = _graph(random.Random(seed), size)
    path = critical_path(spawns, lambda s: seconds[s.mnemonic])
    low, high = path.estimate(workers)
    assert path.seconds <= low + 1e-9 and path.work / workers <= low + 1e-9
    assert low <= high + 1e-9
    if workers == 1:
        assert abs(low - path.work) < 1e-6


def test_a_long_chain_does_not_recurse() -> None:
    """A chain of 5,000 spawns (deeper than Python's recursion limit)."""
    spawns = [
        Spawn("step", "remote", False, {}, inputs=(f"out/{i - 1}",) if i else (), declared=(f"out/{i}",))
        for i in range(5000)
    ]
    path = critical_path(list(reversed(spawns)), lambda s: 1.0)
    assert path.seconds == 5000.0 and len(path.chain) == 5000
