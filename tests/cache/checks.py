"""Named pass/fail checks with a closing `N passed, N failed` line that CI counts."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Checks:
    """Records each check as it is decided and prints one `PASS`/`FAIL` line for it."""

    passed: int = 0
    failed: int = 0

    def check(self, ok: bool, name: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'}: {name}" + (f" -- {detail}" if detail else ""), flush=True)
        return ok

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"
