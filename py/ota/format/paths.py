"""The one rule for paths inside a system tree or a package, and how such a path travels.

An install path is a byte string, as a Linux file system has it: any byte but NUL and '/' in a
component, no empty, '.' or '..' component (docs/contracts.md, "File names"). Python code holds it
as a `str` decoded from those bytes with UTF-8 and `surrogateescape` (`from_bytes`), so every
byte string has exactly one `str` and `to_bytes` gives the bytes back; that is how the JSON
contracts (py/ota/format/jsonio.py), the manifest's `bytes` fields and the device's file system
calls meet without ever losing a byte.

Both sides need the check: the build tools refuse such a path before it reaches a package, and
the package reader refuses it again because a device must never trust a package's names (a '..'
or an absolute path would write outside the system root).

It also reserves one name: `SCRATCH_DIR` at the top of the system tree is where the updater
keeps every file and link it writes before renaming it into place (docs/ota_apply.md, "Scratch
space"). No package path can start with it, so no path a package names can ever be the
updater's scratch state, whatever names the build's files have.

Where a path must be one line of printable ASCII (command lines, journal lines, messages), it is
`escape`d: every byte outside '!'..'~' and ' ', and every '\\' and '"', becomes a 3-digit octal
escape ("\\303\\251"). That is also a valid Starlark string body, so a name printed by a tool can
be pasted into a BUILD file, and it is what rules/private/names.bzl writes.
"""

from __future__ import annotations

from ota.errors import OtaError

# The updater's scratch directory, directly under the system root. rules/private/tree.bzl refuses
# the same name at analysis time (Starlark cannot import this; tests/ota_apply/test_scratch_names.py
# checks that the two agree).
SCRATCH_DIR = ".ota-scratch"
_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("\\"), ord('"')}


def to_bytes(name: str) -> bytes:
    """The bytes a path (or link target) held as `str` stands for."""
    return name.encode("utf-8", "surrogateescape")


def from_bytes(raw: bytes) -> str:
    """The `str` of a byte name; `to_bytes` inverts it for every byte string."""
    return raw.decode("utf-8", "surrogateescape")


def sort_key(name: str) -> bytes:
    """Paths are ordered by their bytes, as Starlark's `sorted` orders the rules' strings."""
    return to_bytes(name)


def escape(name: str) -> str:
    """One line of printable ASCII that `unescape` turns back into `name`."""
    return "".join(chr(byte) if byte in _PLAIN else f"\\{byte:03o}" for byte in to_bytes(name))


def unescape(text: str, where: str, field: str = "path") -> str:
    """The name an `escape`d text stands for; anything but a 3-digit octal after '\\' is refused."""
    out = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char != "\\":
            out += char.encode("utf-8", "surrogateescape")
            index += 1
            continue
        digits = text[index + 1 : index + 4]
        if len(digits) != 3 or digits.strip("01234567") or int(digits, 8) > 0xFF:
            raise OtaError(where, f"{field} {text!r}: '\\' must start a 3-digit octal escape (\\000 to \\377)")
        out.append(int(digits, 8))
        index += 4
    return from_bytes(bytes(out))


def _plainly_safe(path: str) -> bool:
    """The common case of check_path in a few substring tests, without escaping the path for a
    message no one will read (a manifest holds tens of thousands of paths)."""
    framed = f"/{path}/"
    if "\0" in path or "//" in framed or "/./" in framed or "/../" in framed or framed.startswith(f"/{SCRATCH_DIR}/"):
        return False
    try:
        to_bytes(path)
    except UnicodeEncodeError:
        return False
    return True


def check_path(path: object, where: str, field: str = "path") -> str:
    """Returns `path` if it is a safe relative path, else raises OtaError saying what is wrong.

    Refused, each with its own message: non-strings, empty, absolute, NUL, empty parts ('a//b',
    trailing '/'), '.' and '..' parts, and a first part that is the reserved `SCRATCH_DIR` (the
    same name deeper in the tree is an ordinary name). Every other byte is a legal name byte.
    """
    if not isinstance(path, str) or not path:
        raise OtaError(where, f"{field}: expected a non-empty string, got {path!r}"[:300])
    if _plainly_safe(path):
        return path
    try:
        shown = escape(path)
    except UnicodeEncodeError:
        raise OtaError(where, f"{field} {path!r}: holds a character that stands for no byte string"[:300]) from None
    if path.startswith("/"):
        raise OtaError(where, f'{field} "{shown}": absolute paths are not allowed')
    if "\0" in path:
        raise OtaError(where, f'{field} "{shown}": a NUL byte is not allowed in a file name')
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            problem = "an empty component ('//' or a trailing '/')" if not part else f"a {part!r} component"
            raise OtaError(where, f'{field} "{shown}": {problem} is not allowed')
    if parts[0] == SCRATCH_DIR:
        raise OtaError(
            where,
            f'{field} "{shown}": {SCRATCH_DIR!r} at the top of the tree is reserved for the updater\'s scratch files',
        )
    return path
