"""The critical path of a build from its execution log: what more workers cannot make faster.

A spawn depends on another when one of its inputs is the other's output. With each spawn's duration
(on a remote engine: the time a worker was busy with it), the longest chain of dependent spawns
bounds the build from below whatever the number of workers N, and the total work divided by N
bounds it too: an ideal scheduler needs max(path, work/N), and a greedy one at most work/N + path
(Graham's bound). Spawns without a duration (not run, or not found) count as 0 s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from tests.cache.execlog import Spawn


@dataclasses.dataclass(frozen=True)
class CriticalPath:
    """Total work, the longest dependency chain (seconds) and the spawns on it, first to last."""

    work: float
    seconds: float
    chain: tuple[int, ...]

    def estimate(self, workers: int) -> tuple[float, float]:
        """(lower, upper) bound of the build's duration on `workers` workers."""
        return max(self.seconds, self.work / workers), self.work / workers + self.seconds


def critical_path(spawns: Sequence[Spawn], duration: Callable[[Spawn], float]) -> CriticalPath:
    """The longest chain of `spawns` by `duration`, following output -> input edges."""
    producer = {path: index for index, spawn in enumerate(spawns) for path in spawn.declared}
    depends = [sorted({producer[p] for p in spawn.inputs if p in producer} - {i}) for i, spawn in enumerate(spawns)]
    finish: dict[int, tuple[float, int]] = {}  # spawn -> (end of its longest chain, predecessor or -1)
    for start in range(len(spawns)):
        stack = [start]
        while stack:  # iterative depth-first: chains may be longer than Python's recursion limit
            index = stack[-1]
            if index in finish:
                stack.pop()
                continue
            pending = [d for d in depends[index] if d not in finish]
            if pending:
                stack.extend(pending)
                continue
            before = max(((finish[d][0], d) for d in depends[index]), default=(0.0, -1))
            finish[index] = (before[0] + duration(spawns[index]), before[1])
            stack.pop()
    if not finish:
        return CriticalPath(0.0, 0.0, ())
    last = max(finish, key=lambda i: finish[i][0])
    chain = []
    index = last
    while index != -1:
        chain.append(index)
        index = finish[index][1]
    return CriticalPath(sum(duration(s) for s in spawns), finish[last][0], tuple(reversed(chain)))
