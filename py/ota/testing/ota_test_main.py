"""The program behind the `ota_test` Bazel rule: apply a package to a device made from the source
build and compare the result with the target build (see `ota.testing.device_check`).

--spec names the JSON the rule writes:

    {"source": BUILD, "target": BUILD, "package": P, "interrupt": bool, "max_interruptions": N,
     "power_cut": "process" | "lossy" (optional; default "process"),
     "mtd": [partition names backed by the NAND simulator], "cache_limit": bytes or 0,
     "trusted_keys": [public key PEMs the device trusts; none: signatures are not checked]}

where BUILD is described in `ota.testing.builds.load_build`. Prints what it checked; with
interruptions, ``interruptions: N, recovered: N``. Exit 0 when the device always ends as the
target build, 1 (with every problem listed) otherwise.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence

from absl import flags

from ota.errors import OtaError, UsageError
from ota.format import jsonio
from ota.io import runner
from ota.testing import device_check
from ota.testing.builds import load_build
from ota.testing.page_cache import LossModel

_SPEC = flags.DEFINE_string("spec", None, "The ota_test description JSON written by the rule.")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1 or not _SPEC.value:
        raise UsageError("usage: ota_test_main --spec SPEC.json")
    spec = jsonio.read(_SPEC.value)
    source = load_build(jsonio.get(spec, "source", dict, _SPEC.value), f"{_SPEC.value}: source")
    target = load_build(jsonio.get(spec, "target", dict, _SPEC.value), f"{_SPEC.value}: target")
    package = jsonio.get(spec, "package", str, _SPEC.value)
    interrupt = jsonio.get(spec, "interrupt", bool, _SPEC.value)
    limit = jsonio.get(spec, "max_interruptions", int, _SPEC.value)
    mtd = tuple(jsonio.get(spec, "mtd", list, _SPEC.value))
    cache_limit = jsonio.get(spec, "cache_limit", int, _SPEC.value) or None
    keys = tuple(jsonio.get(spec, "trusted_keys", list, _SPEC.value))
    power_cut = jsonio.get(spec, "power_cut", str, _SPEC.value) if "power_cut" in spec else "process"
    if power_cut not in ("process", "lossy"):
        raise OtaError(_SPEC.value, f"power_cut: expected 'process' or 'lossy', got {power_cut!r}")
    if not all(isinstance(key, str) and key for key in keys):
        raise OtaError(_SPEC.value, "trusted_keys: expected a list of key file paths")
    layout = device_check.layout_for(source, target, mtd=mtd, cache_limit=cache_limit, trusted_keys=keys)
    scratch = tempfile.mkdtemp(prefix="ota_test.", dir=os.environ.get("TEST_TMPDIR"))
    print(
        f"{package}: {source.info.fingerprint} -> {target.info.fingerprint}, "
        f"{len(target.entries)} paths, partitions {', '.join(sorted(layout.kinds)) or '(none)'}"
        f"{' (MTD: ' + ', '.join(mtd) + ')' if mtd else ''}, "
        f"{'signature required' if keys else 'signature not checked'}"
    )
    report = device_check.check_update(
        source,
        target,
        package,
        scratch,
        layout,
        interrupt=interrupt,
        max_cuts=limit or None,
        loss=LossModel() if power_cut == "lossy" else None,
    )
    if report.sweep is not None:
        covered = len(report.sweep.outcomes)
        note = (
            ""
            if covered == report.crash_points
            else (f" ({covered} of {report.crash_points} crash points, spread evenly: max_interruptions)")
        )
        print(
            f"interruptions: {covered}, recovered: {report.sweep.recovered}{note}"
            f"{' (lossy power cut: unsynced changes lost)' if power_cut == 'lossy' else ''}"
        )
    for problem in report.problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if report.problems:
        raise OtaError(package, f"{len(report.problems)} problem(s); the first: {report.problems[0]}")
    print("ok: the device is the target build (files, modes, owners, symlinks, directories, partitions)")
    return 0


def run() -> None:
    runner.run_absl("ota_test", main)


if __name__ == "__main__":
    run()
