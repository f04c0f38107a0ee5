"""atheris_main.py TARGET [libFuzzer flags] [CORPUS_DIR...]: coverage-guided fuzzing of one target.

The ota modules are imported under atheris' instrumentation, so libFuzzer sees their branch
coverage. An exception other than OtaError reaches libFuzzer as a crash: it prints the traceback,
writes the input to `<artifact_prefix>crash-<sha1>` and exits non-zero. `--write_seeds DIR` only
writes the target's generated seed corpus into DIR and exits (the corpus is made at run time,
never stored in git).
"""

from __future__ import annotations

import hashlib
import os
import sys

import atheris

with atheris.instrument_imports(include=["ota"]):
    import harnesses


def _write_seeds(target: harnesses.Target, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    for data in target.seeds():
        with open(os.path.join(directory, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)


def main(targets: dict[str, harnesses.Target] = harnesses.TARGETS) -> None:
    """Dispatches on sys.argv; `targets` is replaceable so a test can prove crashes are caught."""
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: atheris_main.py {{{','.join(targets)}}} [--write_seeds DIR | libFuzzer flags]")
    target = targets[sys.argv[1]]
    if sys.argv[2:3] == ["--write_seeds"]:
        _write_seeds(target, sys.argv[3])
        return
    fuzz(target, [sys.argv[0]] + sys.argv[2:])


def fuzz(target: harnesses.Target, argv: list[str]) -> None:
    """Hands `target` to libFuzzer with `argv` (libFuzzer flags, corpus dirs); never returns."""

    def one_input(data: bytes) -> None:
        harnesses.run_guarded(target, data)

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
