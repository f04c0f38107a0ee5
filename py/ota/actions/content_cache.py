"""What a persistent worker keeps from one request to the next: results that are a function of
some bytes alone, found by those bytes (or by a digest the request has just checked them against),
never by a path or a time.

Why: a one-file rebuild hands the package assembler the same source manifest, the same patch
infos and the same whole files as the build before it; parsing, checking and deflating them
again was most of its time (docs/scale.md, "The assembler in a rebuild"). Every input is still
read on every request, since only its bytes can say it is the same, so a file rewritten in place
between two requests is simply a different key; what failed to be made (a refused input) is never
kept, so a refusal is worded afresh, naming the file of the request at hand.

What is kept is what the last request used: each request's look-ups become the cache of the
next and everything else is dropped, so the memory held is about two requests' worth at most and
does not grow with the worker's age. A one-shot run keeps its single request's results until it
exits, which costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class ByContent(Generic[Key, Value]):
    """Values made from a key's content, kept for the request after the one that used them.

    `cost` says what a value holds in bytes; values over `budget` in total (per request) are made
    and used but not kept, so a worker fed huge inputs holds no more than the budget for them.
    """

    def __init__(self, budget: int | None = None, cost: Callable[[Value], int] = lambda value: 0) -> None:
        self.budget, self._cost = budget, cost
        self._previous: dict[Key, Value] = {}
        self._current: dict[Key, Value] = {}
        self._held = 0

    def get(self, key: Key, make: Callable[[], Value]) -> Value:
        """The value for `key`: kept from the last request, or `make()` (not kept if it raises)."""
        if key in self._current:
            return self._current[key]
        value = self._previous[key] if key in self._previous else make()
        self.keep(key, value)
        return value

    def find(self, key: Key) -> tuple[bool, Value | None]:
        """(True, value) if `key` was kept by the last request or added by this one, else (False, None)."""
        for kept in (self._current, self._previous):
            if key in kept:
                value = kept[key]
                self.keep(key, value)
                return True, value
        return False, None

    def keep(self, key: Key, value: Value) -> None:
        """Keeps `value` for the next request, unless it would take the budget over."""
        if key in self._current:
            return
        cost = self._cost(value)
        if self.budget is not None and self._held + cost > self.budget:
            return
        self._current[key] = value
        self._held += cost

    def end_request(self) -> None:
        """What this request used is what the next one may find; the rest is dropped."""
        self._previous, self._current, self._held = self._current, {}, 0
