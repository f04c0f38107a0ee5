"""content_cache.ByContent, the memory of the package assembler's worker: a value is made once per
key and request, found again only by the next request, and never held past its budget.

Generated request sequences (keys reused within and across requests, values of any cost) are run
against a plain model of that rule.
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ota.actions.content_cache import ByContent

LOOKUP = st.tuples(st.booleans(), st.integers(0, 12), st.integers(0, 40))  # (get or find, key, cost)
REQUESTS = st.lists(st.lists(LOOKUP, max_size=12), max_size=8)


@settings(max_examples=500, deadline=None)
@given(REQUESTS, st.one_of(st.none(), st.integers(0, 100)))
def test_values_are_kept_for_the_next_request_only_and_within_the_budget(requests: list, budget: int | None) -> None:
    cache: ByContent[int, tuple[int, int]] = ByContent(budget, cost=lambda value: value[1])
    previous: dict[int, tuple[int, int]] = {}
    for number, lookups in enumerate(requests):
        current: dict[int, tuple[int, int]] = {}
        held = 0
        for use_get, key, cost in lookups:
            kept = current.get(key, previous.get(key))
            if use_get:
                made: list[tuple[int, int]] = []

                def make(
                    made: list[tuple[int, int]] = made, value: tuple[int, int] = (number, cost)
                ) -> tuple[int, int]:
                    made.append(value)
                    return value

                value = cache.get(key, make)
                assert (made, value) == (([(number, cost)], (number, cost)) if kept is None else ([], kept))
            else:
                found, value = cache.find(key)
                assert (found, value) == (kept is not None, kept)
                if not found:
                    continue
            if key not in current and (budget is None or held + value[1] <= budget):
                current[key] = value
                held += value[1]
        cache.end_request()
        previous = current


def test_a_failing_make_keeps_nothing() -> None:
    cache: ByContent[str, int] = ByContent()

    def fail() -> int:
        raise ValueError("refused")

    for _ in range(2):
        with contextlib.suppress(ValueError):
            cache.get("k", fail)
        cache.end_request()
    assert cache.find("k") == (False, None)
    assert cache.get("k", lambda: 7) == 7
