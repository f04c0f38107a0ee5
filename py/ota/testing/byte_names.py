"""Seeded file names of every kind a Linux file system allows, trees that use them, and a
byte-level view of a directory to check a device against.

Why: an install path is any byte string without NUL, with no '.', '..' or empty component
(py/ota/format/paths.py), and every step from the tree description to the device must keep it
byte for byte. Tests prove that for the class, not for one example: `component` draws names of
each `KINDS` kind from a seed (systemd's `\\x2d`, UTF-8 and non-UTF-8 bytes, spaces, leading dots,
newlines and other control bytes, quotes, names that look like escapes, 255-byte names, and
names equal to what the updater or the rules use internally), and `tree_pair` builds a source
and a target build of such names with every kind of change between them.
"""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from ota.format.paths import SCRATCH_DIR, from_bytes, to_bytes

if TYPE_CHECKING:
    from ota.testing.builds import Item, Spec

NAME_MAX = 255
# Every byte a name component may hold.
LEGAL_BYTES = bytes(b for b in range(1, 256) if b != ord("/"))
_WORDS = (b"core", b"systemd", b"lib", b"fonts", b"cert", b"x", b"A", b"sh", b"data")
_UTF8 = ("Főtanúsítvány", "é", "日本語", "Ελληνικά", "😀", "ß", "\u2028", "\ufeff", "Ω")
# Names the rules, the package, the release archive or the updater use for their own files.
_INTERNAL = (
    b"x.p",
    b"x.json",
    b"x~",
    b"x.patch",
    b".ota-new.x",
    SCRATCH_DIR.encode(),  # legal below the top of the tree
    b"0",
    b"1.p",
    b"system",
    b"patch",
    b"SYSTEM",
    b"BUILD",
    b"BUILD.bazel",
    b"WORKSPACE",
    b"manifest.pb",
    b"a" * 64,  # looks like a scratch file's hash name
)


def _word(rng: random.Random) -> bytes:
    return rng.choice(_WORDS)


def _backslash(rng: random.Random) -> bytes:
    return _word(rng) + b"-" + _word(rng) + b"\\x2d" + _word(rng) + rng.choice((b".slice", b".mount", b"\\", b""))


def _utf8(rng: random.Random) -> bytes:
    return _word(rng) + rng.choice(_UTF8).encode() + rng.choice(_UTF8).encode()


def _not_utf8(rng: random.Random) -> bytes:
    junk = rng.choice(
        (b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe9t\xe9", bytes([rng.randrange(0x80, 0x100)]))
    )
    return _word(rng) + junk + _word(rng)


def _space(rng: random.Random) -> bytes:
    return rng.choice((b" ", b"  ", b"")) + _word(rng) + b" " + _word(rng) + rng.choice((b" ", b"\t", b""))


def _leading_dot(rng: random.Random) -> bytes:
    return rng.choice((b".", b"..", b"...", b".-")) + _word(rng)


def _newline(rng: random.Random) -> bytes:
    return _word(rng) + rng.choice((b"\n", b"\r\n", b"\n\n")) + _word(rng) + rng.choice((b"\n", b""))


def _control(rng: random.Random) -> bytes:
    return _word(rng) + bytes([rng.choice((1, 7, 8, 9, 11, 12, 27, 31, 127))]) + _word(rng)


def _quote(rng: random.Random) -> bytes:
    return rng.choice((b'"', b"'", b'\\"', b"$(x)", b"*?[]", b"%s%d", b"#", b"@x", b":", b"{}", b"`")) + _word(rng)


def _escape_lookalike(rng: random.Random) -> bytes:
    return _word(rng) + rng.choice((b"\\303\\251", b"\\000", b"\\n", b"\\u00e9", b"\\\\", b"%2F", b"\\377"))


def _long(rng: random.Random) -> bytes:
    size = rng.choice((NAME_MAX, NAME_MAX - 1, 200))
    name = bytes(rng.choice(LEGAL_BYTES) for _ in range(size))
    return name if name not in (b".", b"..") else b"x" + name[1:]


def _internal(rng: random.Random) -> bytes:
    return rng.choice(_INTERNAL)


def _all_bytes(rng: random.Random) -> bytes:
    """Every legal byte once (254 bytes), in a seeded order."""
    order = list(LEGAL_BYTES)
    rng.shuffle(order)
    return bytes(order)


KINDS: dict[str, Callable[[random.Random], bytes]] = {
    "backslash": _backslash,
    "utf8": _utf8,
    "not_utf8": _not_utf8,
    "space": _space,
    "leading_dot": _leading_dot,
    "newline": _newline,
    "control": _control,
    "quote": _quote,
    "escape_lookalike": _escape_lookalike,
    "long": _long,
    "internal": _internal,
    "all_bytes": _all_bytes,
}


def component(rng: random.Random, kind: str | None = None) -> bytes:
    """One legal name component of `kind` (a random kind if None)."""
    return KINDS[kind or rng.choice(sorted(KINDS))](rng)


def link_target(rng: random.Random) -> bytes:
    """A symlink target: any non-empty bytes without NUL (absolute, relative, dangling, odd)."""
    parts = [component(rng) for _ in range(rng.randint(1, 3))]
    target = b"/".join(parts)
    return rng.choice((b"", b"/", b"../", b"./")) + target + rng.choice((b"", b"/"))


def _unique(rng: random.Random, taken: set[bytes], parent: bytes) -> bytes:
    """A new path below `parent` (b"" = the root) of a fresh name; the top is never SCRATCH_DIR."""
    while True:
        name = component(rng)
        path = parent + b"/" + name if parent else name
        if path not in taken and not (not parent and name == SCRATCH_DIR.encode()):
            taken.add(path)
            return path


def _data(rng: random.Random) -> bytes:
    return bytes(rng.choice(b"abcdefgh\n") for _ in range(rng.randint(0, 3000)))


def _edited(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        at = rng.randrange(len(out) + 1)
        out[at:at] = b"EDIT"
    return bytes(out)


def tree_pair(seed: int, count: int = 40) -> tuple[Spec, Spec]:
    """Source and target builds of about `count` paths of every name kind, with every change
    an update makes: kept, edited, new and deleted files, new and removed (empty) directories,
    new, re-pointed and removed links, mode and owner changes. Every kind of `KINDS` names at
    least one file of both builds."""
    # Imported here: ota.testing.builds loads the build tools' absl flags, which a test of one
    # tool (defining the same flag names) must not get just for the name generators.
    from ota.testing.builds import Spec

    rng = random.Random(seed)
    taken: set[bytes] = set()
    dirs = [_unique(rng, taken, b"") for _ in range(3)]
    dirs.append(_unique(rng, taken, dirs[0]))  # nested: two odd names in one path
    source: dict[bytes, Item] = dict.fromkeys(dirs, ("dir", 493, 0, 0))

    def place() -> bytes:
        return _unique(rng, taken, rng.choice([b"", *dirs]))

    for kind in sorted(KINDS):  # one file of each kind at least, in both builds
        parent = rng.choice([b"", *dirs])
        while True:
            name = component(rng, kind)
            path = parent + b"/" + name if parent else name
            if path not in taken and path != SCRATCH_DIR.encode():
                taken.add(path)
                break
        source[path] = (_data(rng), 0o644, 0, 0)
    while len(source) < count:
        roll = rng.random()
        if roll < 0.7:
            source[place()] = (_data(rng), rng.choice((0o644, 0o755, 0o600)), 0, rng.choice((0, 2000)))
        elif roll < 0.85:
            source[place()] = ("symlink", from_bytes(link_target(rng)))
        else:
            source[place()] = ("dir", 0o750, 0, 0)  # empty directory
    target = dict(source)
    for path, item in sorted(source.items()):
        if path in dirs:
            continue
        roll = rng.random()
        if item[0] == "dir":
            if roll < 0.3:
                del target[path]
        elif item[0] == "symlink":
            if roll < 0.3:
                target[path] = ("symlink", from_bytes(link_target(rng)))
            elif roll < 0.45:
                del target[path]
        elif roll < 0.35:
            target[path] = (_edited(rng, item[0]), *item[1:])
        elif roll < 0.45:
            del target[path]
        elif roll < 0.55:
            target[path] = (item[0], 0o700, 1000, 1000)
    for _ in range(count // 5):
        target[place()] = (_data(rng), 0o644, 0, 0)
    target[place()] = ("symlink", from_bytes(link_target(rng)))
    target[place()] = ("dir", 0o700, 0, 0)
    for kind in sorted(KINDS):  # a new file of every kind too
        path = _unique(rng, taken, rng.choice([b"", *dirs]))
        target[path] = (_data(rng) + kind.encode(), 0o644, 0, 0)

    def spec(items: dict[bytes, Item], version: int) -> Spec:
        return Spec(
            "names",
            f"rules_ota/names/{version}:user/test-keys",
            1000 * version,
            {from_bytes(path): item for path, item in items.items()},
            {"boot": b"ANDROID!" + bytes([version]) * 4096},
        )

    return spec(source, 1), spec(target, 2)


# (kind, mode, uid, gid, contents or link target); directories have b"" as contents.
Node = tuple[str, int, int, int, bytes]


def expected_tree(spec: Spec) -> dict[bytes, Node]:
    """What a device must hold for `spec`, by path bytes, parents included (as write_build lists them)."""
    out: dict[bytes, Node] = {}
    for name, item in spec.items.items():
        path = to_bytes(name)
        parts = path.split(b"/")
        for depth in range(1, len(parts)):
            out.setdefault(b"/".join(parts[:depth]), ("dir", 0o755, 0, 0, b""))
        if isinstance(item, bytes):
            out[path] = ("file", 0o644, 0, 0, item)
        elif item[0] == "dir":
            mode, uid, gid = (tuple(item[1:]) + (0o755, 0, 0))[:3]
            out[path] = ("dir", mode, uid, gid, b"")
        elif item[0] == "symlink":
            uid, gid = tuple(item[2:4]) if len(item) > 2 else (0, 0)
            out[path] = ("symlink", 0o777, uid, gid, to_bytes(item[1]))
        else:
            data, mode, uid, gid = item
            out[path] = ("file", mode, uid, gid, data)
    return out


def device_tree(root: str, skip: tuple[bytes, ...] = ()) -> dict[bytes, Node]:
    """Everything under directory `root`, read with bytes names (never decoded), links not followed."""
    out: dict[bytes, Node] = {}

    def walk(directory: bytes, prefix: bytes) -> None:
        for name in sorted(os.listdir(directory)):
            if not prefix and name in skip:
                continue
            full, rel = os.path.join(directory, name), prefix + name
            st = os.lstat(full)
            meta = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0o777, st.st_uid, st.st_gid, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", *meta, b"")
                walk(full, rel + b"/")
            else:
                with open(full, "rb") as stream:
                    out[rel] = ("file", *meta, stream.read())

    walk(os.fsencode(root), b"")
    return out
