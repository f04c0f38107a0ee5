"""Seeded generator of system tree PAIRS (v1, v2) whose names include every scratch pattern the
updater uses or used, for tests/ota_apply/test_scratch_names.py.

Names: plain, with spaces, unicode, leading dots, '...', and beside a name `x` its old scratch
siblings `x.patch` and `.ota-new.x`, the reserved `.ota-scratch` (legal below the top), the
applypatch command line's scratch pattern and the 64-hex scratch name the updater gives a path.
Changes between v1 and v2: patched (edited text, so bsdiff makes a real patch), unchanged, new,
deleted, mode/owner changes, and every kind change file <-> directory <-> symlink, with deep
nesting.
"""

from __future__ import annotations

import hashlib
import random

from ota.format.paths import SCRATCH_DIR
from ota.testing.builds import Spec

DEVICE = "scratchdev"
_WORDS = [b"alpha", b"beta", b"gamma", b"delta", b"config", b"value", b"=", b"\n", b"true", b"0x1f", b"path"]
_PLAIN = [
    "a.conf",
    "b",
    "lib x.so",
    "über",
    "日本語",
    ".hidden",
    "...",
    "..a",
    "a..",
    "-",
    "x y z",
    "etc",
    "%s.bin",
    "tmp~",
    "ßeta",
    ".",
    "name with  two spaces",
    "ç.patch.d",
    "README",
]
_FILE_MODES = (0o644, 0o755, 0o600, 0o640, 0o4750)
_DIR_MODES = (0o755, 0o750, 0o700)
_IDS = (0, 1000, 2000)

Node = tuple  # ("file", bytes, mode, uid, gid) | ("dir", mode, uid, gid) | ("symlink", target)


def text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += rng.choice(_WORDS) + b" "
    return bytes(out[:size])


def edit(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if out:
            at = rng.randrange(len(out))
            out[at : at + 3] = rng.choice([b"EDT", b"", b"longer insertion"])
    return bytes(out) + text(rng, rng.randint(0, 300))


def scratch_name_of(path: str) -> str:
    """The name the updater gives `path` in its scratch directory (py/ota/device/updater/sysroot.py)."""
    return hashlib.sha256(path.encode()).hexdigest()


class TreeGen:
    """One generated pair; `rng` drives everything, so a seed reproduces it."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _name(self, used: set[str], top: bool) -> str:
        rng = self.rng
        while True:
            choice = rng.random()
            if choice < 0.5:
                name = rng.choice(_PLAIN)
                if name == ".":
                    name = "." * rng.randint(3, 5)
                name = name.replace("%s", str(rng.randint(0, 99)))
            elif choice < 0.6 and not top:
                name = SCRATCH_DIR  # the reserved name is an ordinary name below the top
            elif choice < 0.7:
                name = f".applypatch-{rng.randbytes(16).hex()}.tmp"
            else:
                name = "".join(rng.choice("abcdefgh .-_éλ") for _ in range(rng.randint(1, 12))).strip() or "n"
            if name not in used:
                used.add(name)
                return name

    def file(self) -> Node:
        rng = self.rng
        size = rng.choice([0, 1, rng.randint(2, 200), rng.randint(1500, 9000)])
        return ("file", text(rng, size), rng.choice(_FILE_MODES), rng.choice(_IDS), rng.choice(_IDS))

    def directory(self) -> Node:
        return ("dir", self.rng.choice(_DIR_MODES), self.rng.choice(_IDS), self.rng.choice(_IDS))

    def symlink(self, siblings: list[str]) -> Node:
        rng = self.rng
        target = rng.choice(
            [
                "../x",
                "/system/bin/sh",
                "dangling",
                "ünï code",
                "a.conf.patch",
                rng.choice(siblings) if siblings else "self",
                "./" + SCRATCH_DIR,
            ]
        )
        return ("symlink", target)

    def fill(self, tree: dict[str, Node], prefix: str, depth: int, width: int) -> None:
        """Adds 1..width children under directory `prefix` ("" = root), recursing into new dirs."""
        rng = self.rng
        used = {p.rsplit("/", 1)[-1] for p in tree if p.rpartition("/")[0] == prefix}
        for _ in range(rng.randint(1, width)):
            name = self._name(used, top=not prefix)
            path = f"{prefix}/{name}" if prefix else name
            kind = rng.random()
            if kind < 0.55 or depth >= 6:
                tree[path] = self.file()
                for sibling in (f"{name}.patch", f".ota-new.{name}", scratch_name_of(path)):
                    if sibling not in used and rng.random() < 0.4:
                        used.add(sibling)
                        tree[f"{prefix}/{sibling}" if prefix else sibling] = rng.choice(
                            [self.file(), self.file(), self.directory(), self.symlink([name])]
                        )
            elif kind < 0.8:
                tree[path] = self.directory()
                self.fill(tree, path, depth + 1, max(1, width - 1))
            else:
                tree[path] = self.symlink(sorted(used))

    def source(self) -> dict[str, Node]:
        tree: dict[str, Node] = {}
        self.fill(tree, "", 0, 6)
        deep = ""  # one deep chain, whatever else was drawn
        for level in range(self.rng.randint(8, 14)):
            deep = f"{deep}/d{level}" if deep else f"deep{self.rng.randint(0, 9)}"
            tree.setdefault(deep, self.directory())
            if tree[deep][0] != "dir":
                break
        else:
            tree[f"{deep}/leaf.patch"] = self.file()
            tree[f"{deep}/leaf"] = self.file()
        return _consistent(tree)

    def target(self, source: dict[str, Node]) -> dict[str, Node]:
        rng = self.rng
        tree = dict(source)
        for path in sorted(source):
            if path not in tree:
                continue  # under something already changed
            node, roll = tree[path], rng.random()
            if roll < 0.3:
                continue
            if roll < 0.38:
                _drop(tree, path)
            elif roll < 0.46:
                _drop(tree, path)
                tree[path] = self.file()
            elif roll < 0.52:
                _drop(tree, path)
                tree[path] = self.directory()
                if rng.random() < 0.6:
                    self.fill(tree, path, path.count("/") + 1, 2)
            elif roll < 0.58:
                _drop(tree, path)
                tree[path] = self.symlink([])
            elif node[0] == "file":
                data = edit(rng, node[1]) if rng.random() < 0.8 else node[1]
                meta = node[2:] if rng.random() < 0.7 else (rng.choice(_FILE_MODES), rng.choice(_IDS), rng.choice(_IDS))
                tree[path] = ("file", data, *meta)
            elif node[0] == "dir":
                tree[path] = self.directory() if rng.random() < 0.3 else node
                if rng.random() < 0.4:
                    self.fill(tree, path, path.count("/") + 1, 2)
            else:
                tree[path] = self.symlink([path.rsplit("/", 1)[-1] + ".patch"])
        if rng.random() < 0.8:
            self.fill(tree, "", 1, 3)  # new entries at the top
        return _consistent(tree)


def _drop(tree: dict[str, Node], path: str) -> None:
    for other in [p for p in tree if p == path or p.startswith(path + "/")]:
        del tree[other]


def _consistent(tree: dict[str, Node]) -> dict[str, Node]:
    """Drops any path whose parent is not a directory of the tree (a tree must be a tree), and
    paths over 200 bytes (ota.testing.builds keeps each file under its flattened path, one name)."""
    out = {}
    for path in sorted(tree, key=lambda p: p.count("/")):
        parent = path.rpartition("/")[0]
        if len(path.encode()) > 200:
            continue
        if not parent or (parent in out and out[parent][0] == "dir"):
            out[path] = tree[path]
    return out


def to_spec(tree: dict[str, Node], fingerprint: str, timestamp: int) -> Spec:
    """The tree as a build for ota.testing.builds.write_build."""
    items: dict[str, object] = {}
    for path, node in tree.items():
        if node[0] == "file":
            items[path] = (node[1], *node[2:])
        elif node[0] == "dir":
            items[path] = node
        else:
            items[path] = ("symlink", node[1])
    return Spec(DEVICE, fingerprint, timestamp, items, {})


def pair(seed: int) -> tuple[Spec, Spec]:
    """(v1, v2) builds of generated pair `seed`."""
    gen = TreeGen(seed)
    source = gen.source()
    target = gen.target(source)
    return (
        to_spec(source, f"scratch/{DEVICE}/1.{seed}:user/test-keys", 1_700_000_000),
        to_spec(target, f"scratch/{DEVICE}/2.{seed}:user/test-keys", 1_800_000_000),
    )
