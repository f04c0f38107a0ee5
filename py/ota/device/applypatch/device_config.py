"""The device config: which device backs each partition name, and where the cache is.

A recovery image knows its partitions from its fstab; applypatch on a host or in a test needs the
same mapping for `MTD:<name>` and `EMMC:<name>`. The format is plain text, one entry per line,
``#`` to end of line is a comment, fields separated by blanks:

    partition <name> <kind> <path>     kind: file | block | mtd
    cache <dir> [<limit-bytes>]

* ``file``   a partition image in a regular file (fixed size: the file's size);
* ``block``  a block device (eMMC partition, loop device);
* ``mtd``    a kernel MTD character device (/dev/mtdN).

The test bench (`ota.testing.testbench_cli`) adds ``mtdsim``, a NAND simulator image; the
production tools refuse that kind (`ota.device.applypatch.mtd.kinds`).

Paths are absolute or relative to the config file's directory, never to the working directory.
They are the operator's description of the hardware and are opened as written, so a config may
name a symlink such as /dev/block/by-name/boot; a package can name only the partitions listed
here (docs/applypatch.md, "Partition names"). ``cache`` sets the cache directory and, optionally,
a byte budget it may use (the device's cache partition size), overriding the tool's defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ota.device.applypatch import mtd
from ota.errors import OtaError
from ota.io import fileio

SEEKABLE_KINDS = ("file", "block")


@dataclass(frozen=True)
class PartitionEntry:
    """One partition: its name, backend kind and device path."""

    name: str
    kind: str
    path: str


@dataclass
class DeviceConfig:
    """Partition map plus optional cache settings."""

    partitions: dict[str, PartitionEntry] = field(default_factory=dict)
    cache_dir: str | None = None
    cache_limit: int | None = None
    # Whether a name the map does not list may still be found (/proc/mtd, an absolute EMMC path):
    # true for the applypatch CLI (AOSP scripts name devices directly), false for ota_apply,
    # whose partition names come from a package.
    discover: bool = True


def parse(text: str, where: str, base_dir: str) -> DeviceConfig:
    """Parses config text; every error names `where:<line>` and the field.

    Relative paths are joined to `base_dir` made absolute here, so nothing parsed depends on the
    working directory of a later call.
    """
    base_dir = os.path.abspath(base_dir)
    config = DeviceConfig()
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        here = f"{where}:{number}"
        if not fields:
            continue
        if fields[0] == "partition":
            if len(fields) != 4:
                raise OtaError(here, "expected 'partition <name> <kind> <path>'")
            _, name, kind, path = fields
            known = (*SEEKABLE_KINDS, *mtd.kinds())
            if kind not in known:
                raise OtaError(here, f"kind {kind!r} is not one of {', '.join(known)}")
            if name in config.partitions:
                raise OtaError(here, f"partition {name!r} is listed twice")
            config.partitions[name] = PartitionEntry(name, kind, os.path.join(base_dir, path))
        elif fields[0] == "cache":
            if len(fields) not in (2, 3):
                raise OtaError(here, "expected 'cache <dir> [<limit-bytes>]'")
            config.cache_dir = os.path.join(base_dir, fields[1])
            if len(fields) == 3:
                if not fields[2].isdigit():
                    raise OtaError(here, f"cache limit {fields[2]!r} is not a byte count")
                config.cache_limit = int(fields[2])
        else:
            raise OtaError(here, f"unknown entry {fields[0]!r} (expected 'partition' or 'cache')")
    return config


def load(path: str | None) -> DeviceConfig:
    """Reads the config file at `path`; None gives an empty config (names are then device paths)."""
    if path is None:
        return DeviceConfig()
    try:
        text = fileio.read_bounded(path, fileio.MAX_SMALL_INPUT_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise OtaError(path, f"cannot read device config: {getattr(err, 'strerror', None) or err}") from None
    return parse(text, path, os.path.dirname(os.path.abspath(path)))
