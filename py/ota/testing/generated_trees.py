"""Seeded pairs of system trees shaped like a Linux distribution's, for package-size tests and benches.

A release engineer's real tree (issue: 6,850 files, a fifth of them changed) is mostly small
configs and documentation, a third shared libraries and binaries, a few firmware blobs and
symlinks, in deep directories with long names. `tree_pair` makes a source and a target of that
shape from a seed: the same seed always gives the same bytes, so sizes can be compared between
runs. In the target some files are rebuilt (binaries: scattered changes, as a recompile gives),
some edited (text: a few lines), some new, some deleted, and the rest unchanged.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ota.testing.builds import Spec

_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/python3/dist-packages/{word}",
    "usr/share/doc/{word}-{word}",
    "usr/share/locale/{lang}/LC_MESSAGES",
    "usr/share/man/man{digit}",
    "etc/{word}.d",
    "lib/systemd/system",
    "usr/bin",
    "usr/libexec/{word}",
    "lib/firmware/{word}",
)
_WORDS = [
    "audio",
    "base",
    "cert",
    "common",
    "core",
    "crypt",
    "data",
    "dbus",
    "fonts",
    "gnu",
    "kernel",
    "locale",
    "media",
    "net",
    "power",
    "print",
    "sound",
    "sys",
]
_LANGS = ("de", "fr", "ja", "pt_BR", "zh_CN", "es", "it", "ru")
# (share of files, kind, directory indexes, name pattern, smallest and largest size in bytes)
_KINDS = (
    (0.55, "text", (2, 3, 4, 5, 6), "{word}-{word}{n}.{ext}", 200, 24 << 10),
    (0.33, "binary", (0, 1, 7, 8), "lib{word}{word}-{n}.so.{digit}", 8 << 10, 256 << 10),
    (0.02, "blob", (9,), "{word}{n}-fw.bin", 32 << 10, 512 << 10),
)
_TEXT_EXTS = ("conf", "service", "txt", "py", "mo", "1", "json", "rules")


@dataclass(frozen=True)
class Shape:
    """How the target differs from the source: shares of the source's files."""

    rebuilt: float = 0.15  # binaries recompiled: a few percent of their bytes change, scattered
    edited: float = 0.08  # text files: one to three lines changed
    added: float = 0.02  # new in the target (shipped whole)
    deleted: float = 0.01


def _name(rng: random.Random, pattern: str, n: int) -> str:
    return pattern.format_map(_Fill(rng, {"n": str(n), "ext": rng.choice(_TEXT_EXTS), "lang": rng.choice(_LANGS)}))


class _Fill(dict):
    """format_map filler: a fresh word or digit every time the pattern asks for one."""

    def __init__(self, rng: random.Random, fixed: dict[str, str]) -> None:
        super().__init__(fixed)
        self.rng = rng

    def __missing__(self, key: str) -> str:
        return self.rng.choice(_WORDS) if key == "word" else str(self.rng.randint(0, 9))


def _text(rng: random.Random, size: int) -> bytes:
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 9))) + f" = {rng.randint(0, 99999)}\n"
        lines.append(line.encode())
        total += len(line)
    return b"".join(lines)[:size]


def _binary(rng: random.Random, size: int) -> bytes:
    """Machine-code-like: random 64-byte blocks drawn from a small vocabulary, about 2:1 deflatable."""
    vocabulary = [rng.randbytes(64) for _ in range(max(size // 2048, 4))]
    noise = rng.randbytes(size // 2)
    blocks = b"".join(rng.choice(vocabulary) for _ in range(size // 128 + 1))
    return bytes(b for pair in zip(blocks, noise, strict=False) for b in pair)[:size]


def _content(rng: random.Random, kind: str, size: int) -> bytes:
    if kind == "text":
        return _text(rng, size)
    if kind == "binary":
        return _binary(rng, size)
    return rng.randbytes(size)


def _rebuild(rng: random.Random, data: bytes) -> bytes:
    """A recompile: about 3 % of the bytes rewritten in short runs across the file."""
    out = bytearray(data)
    for _ in range(max(len(data) // 1000, 1)):
        at = rng.randrange(len(out))
        out[at : at + 30] = rng.randbytes(len(out[at : at + 30]))
    return bytes(out)


def _edit(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 3)):
        lines[rng.randrange(len(lines))] = f"edited {rng.choice(_WORDS)} = {rng.randint(0, 99999)}".encode()
    return b"\n".join(lines)


def _files(rng: random.Random, count: int) -> dict[str, tuple[str, bytes]]:
    files: dict[str, tuple[str, bytes]] = {}
    for share, kind, dir_indexes, pattern, low, high in _KINDS:
        for n in range(round(count * share)):
            directory = _DIRS[rng.choice(dir_indexes)].format_map(_Fill(rng, {"lang": rng.choice(_LANGS)}))
            size = int(math.exp(rng.uniform(math.log(low), math.log(high))))
            files[f"{directory}/{_name(rng, pattern, n)}"] = (kind, _content(rng, kind, size))
    return files


def tree_pair(files: int, seed: int, shape: Shape = Shape()) -> tuple[Spec, Spec]:
    """A source and a target build of about `files` regular files (plus 10 % symlinks)."""
    rng = random.Random(seed)
    old = _files(rng, files)
    source: dict[str, object] = {path: data for path, (_, data) in old.items()}
    target: dict[str, object] = {}
    for path, (kind, data) in old.items():
        roll = rng.random()
        if roll < shape.deleted:
            continue
        if kind == "binary" and roll < shape.deleted + shape.rebuilt * 3:  # binaries are 1/3 of the files
            target[path] = _rebuild(rng, data)
        elif kind == "text" and roll < shape.deleted + shape.edited * 1.8:  # text is 55 %
            target[path] = _edit(rng, data)
        else:
            target[path] = data
    for path, (_, data) in _files(random.Random(seed + 1), round(files * shape.added)).items():
        target.setdefault(f"opt/new/{path}", data)
    paths = sorted(old)
    for n in range(files // 10):
        link = f"usr/lib/links/{_name(rng, '{word}{n}.so', n)}"
        target_path = "/" + rng.choice(paths)
        source[link] = ("symlink", target_path)
        target[link] = ("symlink", target_path if rng.random() > 0.05 else "/" + rng.choice(paths))
    build = "rules_ota/generated/gen:14/{}/{}:user/release-keys"
    return (
        Spec("gen", build.format("SRC", seed), 1000, source, {}),
        Spec("gen", build.format("TGT", seed), 2000, target, {}),
    )
