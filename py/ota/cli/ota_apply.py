"""ota_apply --package P --device D: apply a whole OTA package to a device (docs/ota_apply.md).

Everything is checked before the first write (signature, package entries, device, source build,
every source file and partition, cache space); then the update runs in journaled steps, so a
rerun after a power cut resumes and a rerun after success changes nothing. Exit 0 on success or
"already up to date", 1 with one `ota_apply: error: ...` line on any refusal or failure.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from ota.device.fsops import FsOps
from ota.device.updater import device as device_config
from ota.device.updater.engine import ALREADY, apply_package
from ota.device.updater.progress import MODES, Progress
from ota.errors import UsageError
from ota.io import fileio, runner

_PACKAGE = flags.DEFINE_string("package", None, "The OTA package zip to apply.")
_DEVICE = flags.DEFINE_string("device", None, "The device config JSON (format: docs/ota_apply.md).")
_PROGRESS = flags.DEFINE_enum(
    "progress",
    "auto",
    MODES,
    "auto: a bar when stdout is a terminal; bar; lines: one 'progress <fraction> <step> <path>' line per "
    "item on stdout, for a UI; none.",
)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Log each applypatch action on stderr.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _PACKAGE.value or not _DEVICE.value:
        raise UsageError("--package and --device are required")
    ops = FsOps()
    device = device_config.load(_DEVICE.value)
    fileio.require_seekable(_PACKAGE.value)
    progress = Progress(_PROGRESS.value, sys.stdout)
    log = (lambda line: print(line, file=sys.stderr)) if _VERBOSE.value else (lambda line: None)
    result = apply_package(_PACKAGE.value, device, ops=ops, progress=progress, log=log)
    if result.status == ALREADY:
        print(f"ota_apply: the device already runs {result.fingerprint}; nothing to do")
    else:
        resumed = " (resumed an interrupted update)" if result.resumed else ""
        print(f"ota_apply: updated to {result.fingerprint}{resumed}")


def run() -> None:
    runner.run_absl("ota_apply", main)


if __name__ == "__main__":
    run()
