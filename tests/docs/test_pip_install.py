"""`pip install ./py` never changes the source tree: setuptools' build/ and egg-info directories go
to a scratch directory (py/setup.py), so an install from a checkout leaves `git status` clean.

The check runs on a copy of py/ and proto/ (what the install reads), so it needs no git and works
the same in a checkout and in Bazel's runfiles: every file of the copy must be there afterwards
with the same bytes, and nothing may be added. The installed package must work: its protobuf
modules, generated during the build, import from the install directory.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): runfiles are symlinks


def _snapshot(tree: pathlib.Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file, and "dir" for every directory, under `tree`."""
    out = {}
    for directory, dirs, files in os.walk(tree):
        here = pathlib.Path(directory)
        for name in dirs:
            out[(here / name).relative_to(tree).as_posix()] = "dir"
        for name in files:
            out[(here / name).relative_to(tree).as_posix()] = hashlib.sha256((here / name).read_bytes()).hexdigest()
    return out


def test_pip_install_leaves_the_source_tree_unchanged(tmp_path):
    source = tmp_path / "checkout"
    for name in ("py", "proto"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*_pb2.py"))
    before = _snapshot(source)
    # --target instead of a venv: Debian's python3 has no ensurepip without python3-venv, and a
    # target directory is outside the system's (PEP 668) managed environment as well.
    site = tmp_path / "site"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), str(source / "py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    after = _snapshot(source)
    assert after == before, (
        f"added {sorted(set(after) - set(before))[:10]}, removed {sorted(set(before) - set(after))[:10]}, "
        f"changed {sorted(p for p in before if p in after and before[p] != after[p])[:10]}"
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-s",
            "-c",
            (
                "import ota.proto.ota_manifest_pb2, ota.proto.worker_protocol_pb2, ota.format.patch; print(ota.format.patch.__file__)"
            ),
        ],
        env=dict(env, PYTHONPATH=str(site)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (probe.returncode, probe.stdout) == (0, f"{site / 'ota' / 'format' / 'patch.py'}\n"), probe.stderr
