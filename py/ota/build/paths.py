"""The one rule for paths inside a system tree or a package: relative, '/'-separated, no escape.

Both sides need it: the build tools refuse such a path before it reaches a package, and the
package reader refuses it again because a device must never trust a package's names (a '..' or
an absolute path would write outside the system root).
"""

from __future__ import annotations

from ota.errors import OtaError


def check_path(path: object, where: str, field: str = "path") -> str:
    """Returns `path` if it is a safe relative path, else raises OtaError naming it.

    Refused: non-strings, empty, absolute, backslashes (a Windows separator in disguise), NUL,
    empty parts ('a//b', trailing '/'), '.' and '..' parts.
    """
    if not isinstance(path, str) or not path:
        raise OtaError(where, f"{field}: expected a non-empty string, got {path!r}")
    if path.startswith("/"):
        raise OtaError(where, f"{field} {path!r}: absolute paths are not allowed")
    if "\\" in path or "\0" in path:
        raise OtaError(where, f"{field} {path!r}: backslash or NUL in path")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise OtaError(where, f"{field} {path!r}: empty, '.' or '..' path component")
    return path
