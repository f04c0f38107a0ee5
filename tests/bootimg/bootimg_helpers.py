"""Shared helpers of the boot-image tests: sample sections and running ota_bootimg."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from ota.format import bootimg


def run_bootimg(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Runs `python -m ota.cli.bootimg args...` as a user would, capturing text output."""
    command = [sys.executable, "-m", "ota.cli.bootimg", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def blob(seed: int, size: int) -> bytes:
    """Deterministic incompressible bytes (sizes chosen to straddle page boundaries)."""
    return random.Random(seed).randbytes(size)


def sample_image(version: int, *, page_size: int | None = None, optional: bool = True) -> bootimg.BootImage:
    """A boot image of `version` with every section the version has (or only the kernel)."""
    parts: dict[str, bytes] = {"kernel": blob(1, 5001)}
    fields: dict[str, object] = {"cmdline": b"console=ttyS0 androidboot.hardware=ota"}
    fields["os_version"] = bootimg.encode_os_version("13.1.2", "2024-07")
    if optional:
        parts["ramdisk"] = blob(2, 4096)
        if version < 3:
            parts["second"] = blob(3, 17)
        if version in (1, 2):
            parts["recovery_dtbo"] = blob(4, 3000)
        if version == 2:
            parts["dtb"] = blob(5, 2049)
        if version == 4:
            parts["boot_signature"] = blob(6, 4096)
    if version < 3:
        fields.update(bootimg.addresses(version, has_ramdisk="ramdisk" in parts, has_second="second" in parts))
        fields.update(page_size=page_size or bootimg.DEFAULT_PAGE_SIZE, board=b"otaboard", extra_cmdline=b"quiet")
    return bootimg.BootImage(header_version=version, **parts, **fields)


def mutate(base: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    """`base` cut to `cut` bytes with (offset, byte value) edits applied: the fuzzers' input."""
    data = bytearray(base[:cut])
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    return bytes(data)
