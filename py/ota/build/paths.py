"""The one rule for paths inside a system tree or a package: relative, '/'-separated, no escape.

Both sides need it: the build tools refuse such a path before it reaches a package, and the
package reader refuses it again because a device must never trust a package's names (a '..' or
an absolute path would write outside the system root).

It also reserves one name: `SCRATCH_DIR` at the top of the system tree is where the updater
keeps every file and link it writes before renaming it into place (docs/ota_apply.md, "Scratch
space"). No package path can start with it, so no path a package names can ever be the
updater's scratch state, whatever names the build's files have.
"""

from __future__ import annotations

from ota.errors import OtaError

# The updater's scratch directory, directly under the system root. rules/private/tree.bzl refuses
# the same name at analysis time (Starlark cannot import this; tests/ota_apply/test_scratch_names.py
# checks that the two agree).
SCRATCH_DIR = ".ota-scratch"


def check_path(path: object, where: str, field: str = "path") -> str:
    """Returns `path` if it is a safe relative path, else raises OtaError naming it.

    Refused: non-strings, empty, absolute, backslashes (a Windows separator in disguise), NUL,
    empty parts ('a//b', trailing '/'), '.' and '..' parts, and a first part that is the
    reserved `SCRATCH_DIR` (the same name deeper in the tree is an ordinary name).
    """
    if not isinstance(path, str) or not path:
        raise OtaError(where, f"{field}: expected a non-empty string, got {path!r}")
    if path.startswith("/"):
        raise OtaError(where, f"{field} {path!r}: absolute paths are not allowed")
    if "\\" in path or "\0" in path:
        raise OtaError(where, f"{field} {path!r}: backslash or NUL in path")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise OtaError(where, f"{field} {path!r}: empty, '.' or '..' path component")
    if parts[0] == SCRATCH_DIR:
        raise OtaError(
            where,
            f"{field} {path!r}: {SCRATCH_DIR!r} at the top of the tree is reserved for the updater's scratch files",
        )
    return path
