"""The full command line of an execution-log spawn, with its `@params` argument expanded.

Why: OtaFilePatch/OtaBootPatch/OtaPartitionPatch put their whole command line into a param file (so
a persistent worker gets one WorkRequest), and the execution log records only
`[<tool>, @bazel-out/.../x.params]`. The flags the benches look up (--target, --out_data, ...) are
in that file, which Bazel leaves in bazel-out for the actions it ran. A spawn served from a cache
has no param file on disk, so its flags cannot be recovered: that is reported, not guessed.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from ota.actions import persistent_worker
from tests.cache import execlog


def expand(args: Sequence[str], root: pathlib.Path) -> list[str]:
    """`args` with each `@PATH` replaced by the lines of `root/PATH` (Bazel's "multiline" format:
    one argument per line, ended by "\\n" only, since a path may hold any other line break)."""
    expanded: list[str] = []
    for arg in args:
        if not arg.startswith("@"):
            expanded.append(arg)
            continue
        params = root / arg[1:]
        try:
            text = params.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise SystemExit(
                f"{params}: param file missing; its action was probably a cache hit, so Bazel "
                "never wrote it. Rebuild with --disk_cache= --remote_cache= so the action runs"
            ) from None
        expanded += persistent_worker.param_file_arguments(text)
    return expanded


def flags(spawn: execlog.Spawn, root: pathlib.Path) -> dict[str, str]:
    """`execlog.flag_values` of the spawn's expanded command line (exec paths, relative to `root`)."""
    return execlog.flag_values(expand(spawn.args, root))
