"""Special files (FIFO, socket, character device) where the update expects a file, a link, a
directory or nothing: refused before any write, in one line that says what is there.

Generated: every kind of special file at every role a path plays in apply_helpers' release
(patched, kept in an unchanged group, deleted file, deleted symlink, new file, new directory, a
directory the update writes below), plus seeded pairs of them at once. The real CLI must end
within a timeout (reading a FIFO would block, /dev/zero never ends), exit 1 with one line naming
a planted path or its directory, its kind in words where it names one (never "a other"), and
leave the device unchanged.
"""

from __future__ import annotations

import os
import random
import socket
import stat
import subprocess
import sys

import pytest

from apply_helpers import make_release
from ota.testing import device_check as dc

TIMEOUT = 60
PAIRS = 8
SEED = 8080
ROLES = (
    "bin/sh",  # patched
    "app/same.apk",  # unchanged group
    "etc/removed.conf",  # deleted file
    "lib/libc.so.old",  # deleted symlink
    "etc/new.conf",  # new file
    "etc/newdir",  # new directory
    "etc/oldstuff/a",  # deleted file in a deleted directory
)
KINDS = ("fifo", "socket", "null-device", "zero-device")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("special")))


def _plant(path: str, kind: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":  # bound by its name in its directory: a test tmp path may pass the 108-byte limit
        here = os.getcwd()
        os.chdir(os.path.dirname(path))
        try:
            with socket.socket(socket.AF_UNIX) as bound:
                bound.bind(os.path.basename(path))
        finally:
            os.chdir(here)
    else:  # the numbers of /dev/null and /dev/zero: nothing a stray write could harm
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3 if kind == "null-device" else 5))


def _state(device: str) -> dict[str, tuple]:
    """Every entry under the device's system tree and partitions, without opening special files."""
    state = {}
    for top in ("system", "partitions"):
        for base, dirs, files in os.walk(os.path.join(device, top)):
            for name in sorted(dirs + files):
                path = os.path.join(base, name)
                info = os.lstat(path)
                content = b""
                if stat.S_ISREG(info.st_mode):
                    with open(path, "rb") as stream:
                        content = stream.read()
                state[path] = (info.st_mode, info.st_uid, info.st_gid, info.st_rdev, content)
    return state


def test_special_files_are_refused_in_one_line_without_blocking(release, tmp_path):
    rng = random.Random(SEED)
    cases = [[(role, kind)] for role in ROLES for kind in KINDS]
    cases += [[(role, rng.choice(KINDS)) for role in rng.sample(ROLES, 2)] for _ in range(PAIRS)]
    for index, plantings in enumerate(cases):
        device = str(tmp_path / f"dev{index}")
        config = dc.materialize(release.source, device, release.layout)
        for role, kind in plantings:
            _plant(os.path.join(device, "system", role), kind)
        before = _state(device)
        result = subprocess.run(
            [sys.executable, "-m", "ota.testing.testbench_cli", "ota_apply"]
            + ["--package", release.incremental, "--device", config],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        label = (plantings, result.stderr)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, label
        assert "Traceback" not in result.stderr and "a other" not in result.stderr, label
        assert any(f"{device}/system/{os.path.dirname(role)}" in result.stderr for role, _ in plantings), label
        assert _state(device) == before, label
