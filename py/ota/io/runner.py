"""Shared exit-code discipline for every rules_ota command-line tool.

AOSP's tools use 0 for success, 1 for failure and 2 for a command line they did not understand;
scripts written for them rely on that, so every tool here does the same.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from ota.errors import OtaError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def guarded(tool: str, main: Callable[[Sequence[str]], int | None]) -> Callable[[Sequence[str]], int]:
    """Wraps `main` so OtaError becomes one stderr line + exit 1, UsageError exit 2."""

    def wrapper(argv: Sequence[str]) -> int:
        try:
            status = main(argv)
        except OtaError as err:
            print(f"{tool}: error: {err}", file=sys.stderr)
            return EXIT_FAILURE
        except UsageError as err:
            print(f"{tool}: usage: {err}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK if status is None else int(status)

    return wrapper


def _parse_flags_or_exit_2(argv: list[str]) -> list[str]:
    """absl's default parser exits with 1 on a bad flag; AOSP tools say 2 for usage errors."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"{argv[0]}: usage: {err}\nTry --help.", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except SystemExit:
        # absl's --help flag prints the usage and exits 1; asking for help is not a failure.
        if _HELP_FLAGS.intersection(argv[1:]):
            sys.exit(EXIT_OK)
        raise


_HELP_FLAGS = frozenset({"-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml"})


def _show_tool_in_help(tool_module: object) -> None:
    """absl's --help prints the __main__ module's docstring and key flags; a console script or
    Bazel launcher is __main__, so hand both over from the module that defines the tool."""
    main_module = sys.modules["__main__"]
    if main_module is not tool_module:
        main_module.__doc__ = tool_module.__doc__
        flags.adopt_module_key_flags(tool_module)


def run_absl(tool: str, main: Callable[[Sequence[str]], int | None]) -> None:
    """Runs `main` under absl.app (flags, --help) with the exit-code discipline above."""
    wrapped = guarded(tool, main)
    _show_tool_in_help(sys.modules[main.__module__])

    def absl_main(argv: Sequence[str]) -> None:
        sys.exit(wrapped(argv))

    app.run(absl_main, flags_parser=_parse_flags_or_exit_2)
