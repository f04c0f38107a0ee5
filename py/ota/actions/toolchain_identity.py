"""The toolchain identity: which Python, zlib and library versions produce an action's output.

Nothing in a Bazel action key says which interpreter version runs the action:
`py_runtime(interpreter_path = "/usr/bin/python3")` keys a path. So the pip hub's repository rule
(bazel/pip.bzl) runs this module once with the interpreter and PYTHONPATH the actions use and
writes what it measures to `toolchain_identity/<sha256 of the content>.json` in the hub
(`@rules_ota_pypi//:toolchain_identity`). Every Ota* action has that file as an input and its path, digest
included, on its command line (rules/private/toolchain_identity.bzl): an action key holds the
command line but not the inputs' contents, and the digest puts the identity into it.

An action's tool gets the file as `--toolchain_identity` and, before doing anything, checks that
the content still has the digest its name (the key) holds and that it names the interpreter and
libraries the tool actually runs on: an output cached under one identity must never come from
another (docs/ci-and-remote-cache.md, "Toolchain identity").

`python -m ota.actions.toolchain_identity DIR [OVERRIDE_JSON]` writes the running identity, with
OVERRIDE_JSON's fields replacing measured ones, to DIR/<sha256>.json and prints that path.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import zlib

from absl import flags

from ota.errors import OtaError

# The distributions whose code shapes an output's bytes: bsdiff4 writes the patches (and applies
# them), pydivsufsort's libdivsufsort sorts for our compiled diff (ota/native/bsdiff_scan.py),
# protobuf the manifests, cryptography the signatures. Their versions are read from the dist-info found first
# on sys.path, which is where `import` finds their code too: in an action, and in the repository
# rule that writes the identity, that is the pip hub's site-packages/<name> (PYTHONPATH comes
# before the interpreter's own site-packages, where Debian may ship other versions).
DISTRIBUTIONS = ("bsdiff4", "cryptography", "protobuf", "pydivsufsort")

FLAG = flags.DEFINE_string(
    "toolchain_identity",
    None,
    "The toolchain identity file this action was keyed with (@rules_ota_pypi//:toolchain_identity); "
    "the tool fails at once when its interpreter or libraries differ.",
)


@functools.cache
def running() -> dict[str, str]:
    """The identity of this process: Python version, the zlib its `zlib` module runs, and the
    versions of DISTRIBUTIONS (measured once: none of them can change while the process lives)."""
    identity = {"python": platform.python_version(), "zlib": zlib.ZLIB_RUNTIME_VERSION}
    for name in DISTRIBUTIONS:
        try:
            identity[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            identity[name] = "missing"
    return identity


def describe(identity: dict[str, str]) -> str:
    """One line naming every field, in a fixed order, e.g. `python=3.11.2 zlib=1.2.13 ...`."""
    return " ".join(f"{key}={identity[key]}" for key in sorted(identity))


def encode(identity: dict[str, str]) -> bytes:
    """The file content of `identity`: compact JSON, sorted keys, one line."""
    return json.dumps(identity, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def file_name(content: bytes) -> str:
    """`<sha256 of content>.json`: the name that puts the content into every action key."""
    return hashlib.sha256(content).hexdigest() + ".json"


def load(path: str) -> dict[str, str]:
    """The identity recorded in `path`: a JSON object of string fields whose digest is its name."""
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as err:
        raise OtaError(path, f"cannot read the toolchain identity: {err.strerror or err}") from None
    try:
        identity = json.loads(content)
    except ValueError as err:
        raise OtaError(path, f"toolchain identity is not JSON: {err}") from None
    if not isinstance(identity, dict) or not all(isinstance(v, str) for v in identity.values()):
        raise OtaError(path, "toolchain identity must be a JSON object of strings")
    if os.path.basename(path) != file_name(content):
        raise OtaError(path, f"toolchain identity [{describe(identity)}] is not the one its name keyed the action with")
    return identity


def write(directory: str, identity: dict[str, str]) -> str:
    """Writes `identity` to directory/<sha256>.json; returns that path."""
    content = encode(identity)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, file_name(content))
    with open(path, "wb") as file:
        file.write(content)
    return path


def verify(path: str | None) -> None:
    """Fails with both identities in one line unless `path` records the running one.

    No path (a tool run by hand or by a test, not by a Bazel action) checks nothing."""
    if not path:
        return
    keyed = load(path)
    actual = running()
    if keyed != actual:
        raise OtaError(path, f"action keyed with toolchain [{describe(keyed)}] but running [{describe(actual)}]")


def verify_flag() -> None:
    """verify() on the global --toolchain_identity (tools that parse absl's FLAGS)."""
    verify(FLAG.value)


if __name__ == "__main__":
    print(write(sys.argv[1], {**running(), **json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")}))
