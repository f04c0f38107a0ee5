"""Test entry point: a real device tool (applypatch, ota_apply) run on the test bench.

    python -m ota.testing.testbench_cli [--fault=<mode>:<N>] [--fault_log=<file>]
                                        [--lossy[=<seed>]] [--raw=<path>]... <tool> <tool args...>

runs the tool's own `run()` (its flags, checks and exit codes) with two test-only additions that
the production entry points never make:

* the device config accepts the partition kind ``mtdsim``, the NAND simulator
  (`ota.testing.nandsim`), registered here through `ota.device.applypatch.mtd.register_kind`;
* with any fault option, every `FsOps` the tool makes is replaced by an
  `ota.testing.faults.FaultyFsOps`: cut at operation N (the process ends with exit
status 86, `faults.CRASH_EXIT_CODE`), one line per operation appended to the log file, and with
`--lossy` the cut loses what was not fsync'ed (worst case, or seeded). The production tools have
no such option: nothing on a device can turn the injector or the simulator on.
"""

from __future__ import annotations

import importlib
import sys

from ota.testing import nandsim
from ota.testing.faults import FaultPoint, FaultyFsOps
from ota.testing.page_cache import LossModel

TOOLS = {"applypatch": "ota.cli.applypatch", "ota_apply": "ota.cli.ota_apply"}
USAGE = (
    "usage: testbench_cli [--fault=<mode>:<N>] [--fault_log=<file>] [--lossy[=<seed>]] [--raw=<path>]... "
    f"{{{'|'.join(TOOLS)}}} <args...>"
)


def _fail(message: str) -> None:
    print(f"testbench_cli: {message}\n{USAGE}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
    fault, log_path, loss, raw = None, None, None, []
    args = argv[1:]
    while args and args[0].startswith("--"):
        name, equals, value = args.pop(0)[2:].partition("=")
        try:
            if name == "fault" and equals:
                fault = FaultPoint.parse(value)
            elif name == "fault_log" and value:
                log_path = value
            elif name == "lossy":
                loss = LossModel(int(value) if equals else None)
            elif name == "raw" and value:
                raw.append(value)
            else:
                _fail(f"unknown option --{name}")
        except ValueError as err:
            _fail(str(err))
    if not args or args[0] not in TOOLS:
        _fail("no tool named")
    tool = importlib.import_module(TOOLS[args[0]])

    def faulty_ops() -> FaultyFsOps:
        return FaultyFsOps(fault, on_crash="exit", log_path=log_path, loss=loss, raw_paths=tuple(raw))

    nandsim.register()
    if fault or log_path or loss or raw:
        tool.FsOps = faulty_ops  # the tool's one FsOps factory: every operation goes through the injector
    sys.argv = [args[0], *args[1:]]
    tool.run()


if __name__ == "__main__":
    main(sys.argv)
