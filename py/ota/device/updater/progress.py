"""Progress of an update, weighted by bytes, as a terminal bar or as lines a UI can parse.

Why bytes: one 40 MB library takes longer than a hundred small config files, and AOSP's updater
scripts weight progress by file sizes for the same reason (docs/formats.md#progress-weights). Each phase of the update
gets a share of the whole; within a phase every item advances by its size (+1, so empty files and
directories still move the bar).

Machine format (``--progress=lines``), one line per item, flushed:

    progress <fraction> <step> <path>

`fraction` has four decimals in [0, 1] and never decreases; `step` is one word (verify, stage,
delete, mkdir, patch, write, symlink, metadata, partition, check, finish); `path` is the rest of the
line (it may contain spaces) and is ``-`` when the item has none.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

from ota.format.paths import escape

# Share of the whole bar: checking sources, then the journaled steps (split by their bytes).
VERIFY_SHARE, APPLY_SHARE = 0.10, 0.90
MODES = ("auto", "bar", "lines", "none")


@dataclass
class Progress:
    """Reports progress; `mode` is one of MODES ("auto" = bar on a terminal, else nothing)."""

    mode: str = "none"
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    _base: float = 0.0
    _share: float = 0.0
    _total: int = 1
    _done: int = 0
    _last: float = 0.0
    _bar_cells: int = -1

    def __post_init__(self) -> None:
        if self.mode == "auto":
            self.mode = "bar" if self.stream.isatty() else "none"

    def phase(self, share: float, total_bytes: int, items: int) -> None:
        """Starts a phase worth `share` of the bar over `items` items totalling `total_bytes`."""
        self._base = self._base + self._share
        self._share = share
        self._total = max(1, total_bytes + items)
        self._done = 0

    def item(self, step: str, path: str, size: int) -> None:
        """Marks one item of the current phase done."""
        self._done = min(self._total, self._done + size + 1)
        self._emit(step, path, self._base + self._share * self._done / self._total)

    def finish(self) -> None:
        self._emit("finish", "-", 1.0)
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()

    def _emit(self, step: str, path: str, fraction: float) -> None:
        fraction = min(1.0, max(self._last, fraction))
        self._last = fraction
        if self.mode == "lines":
            self.stream.write(f"progress {fraction:.4f} {step} {escape(path) or '-'}\n")  # one line per item
            self.stream.flush()
        elif self.mode == "bar":
            cells = int(fraction * 40)
            if cells != self._bar_cells or step == "finish":
                self._bar_cells = cells
                self.stream.write(f"\r[{'#' * cells}{'.' * (40 - cells)}] {fraction * 100:5.1f}% {step:<9}")
                self.stream.flush()
