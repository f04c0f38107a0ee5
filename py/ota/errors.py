"""The one error type every rules_ota component raises for bad input.

Tools print an OtaError as a single line ``<what>: <problem>`` and exit with status 1, so a
release engineer (or a device log) always sees which file and which field was wrong. Anything
else escaping a tool is a bug in rules_ota, which is also what the fuzzers check for.
"""

from __future__ import annotations


class OtaError(Exception):
    """Bad input or a failed operation, described in one line.

    Args:
      where: the file, partition or entry the problem is in (a path or a spec).
      problem: what is wrong, naming the field when there is one.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = str(where)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.where}: {self.problem}")


class UsageError(Exception):
    """The command line itself is wrong; tools print usage and exit with status 2."""
