"""The one error type every rules_ota component raises for bad input.

Tools print an OtaError as a single line ``<what>: <problem>`` and exit with status 1, so a
release engineer (or a device log) always sees which file and which field was wrong. Anything
else escaping a tool is a bug in rules_ota, which is also what the fuzzers check for.
"""

from __future__ import annotations

# C0 controls, DEL, and what str.splitlines also breaks at (NEL, LINE/PARAGRAPH SEPARATOR).
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}" for code in (*range(32), 127, 0x85, 0x2028, 0x2029)
}


class OtaError(Exception):
    """Bad input or a failed operation, described in one line.

    Args:
      where: the file, partition or entry the problem is in (a path or a spec).
      problem: what is wrong, naming the field when there is one.
    """

    def __init__(self, where: str, problem: str) -> None:
        # `where` is often text from the command line or a file (a partition spec, a path): a
        # control character in it (a newline) would split the line or drive a terminal.
        self.where = str(where).translate(_CONTROL_ESCAPES)
        self.problem = " ".join(str(problem).split()).translate(_CONTROL_ESCAPES)  # always one line
        super().__init__(f"{self.where}: {self.problem}")


class UsageError(Exception):
    """The command line itself is wrong; tools print usage and exit with status 2."""
