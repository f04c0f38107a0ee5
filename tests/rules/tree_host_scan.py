"""Test helpers for imported directories: an independent scan of a host directory, seeded tree
generators, and a reader for the BUILD.bazel that py/ota/actions/tree_scan.py writes.

The independent scan walks with plain lstat/readlink (no descriptors, no shared code with the
tool), so a test comparing the two checks the tool against the file system, not against itself.
"""

from __future__ import annotations

import ast
import hashlib
import os
import random
import stat

# Names a real tree has (systemd's `\x2d`, a CA bundle's UTF-8) and every kind Starlark must
# escape: a space, a leading dot, `\`, a newline, bytes that are not UTF-8.
SPECIAL_NAMES = [
    b"with space.txt",
    b".hidden",
    "Főtanúsítvány.crt".encode(),
    b"system-systemd\\x2dcryptsetup.slice",
    b"new\nline",
    b"\xff\xfe latin-1",
]


def host_scan(root: bytes) -> dict[bytes, dict]:
    """Every entry below `root` as a system-manifest-like dict (docs/contracts.md#2-system-manifest), keyed by path bytes."""
    out: dict[bytes, dict] = {}

    def walk(directory: bytes, rel: bytes) -> None:
        for name in sorted(os.listdir(directory)):
            full = os.path.join(directory, name)
            path = rel + b"/" + name if rel else name
            st = os.lstat(full)
            entry = {"gid": st.st_gid, "uid": st.st_uid, "mode": stat.S_IMODE(st.st_mode)}
            if stat.S_ISLNK(st.st_mode):
                entry.update(kind="symlink", mode=0o777, target=os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                entry["kind"] = "dir"
                walk(full, path)
            else:
                with open(full, "rb") as f:
                    data = f.read()
                entry.update(
                    kind="file",
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    sha1=hashlib.sha1(data).hexdigest(),
                )
            out[path] = entry

    walk(root, b"")
    return out


def parse_generated_build(text: str) -> tuple[list[str], dict[bytes, list[bytes]]]:
    """(srcs, entries) of the ota_imported_tree call; a Python string literal with octal escapes
    means what the Starlark one means (characters = bytes), so latin-1 gives the bytes back."""
    assert text.isascii(), "the generated BUILD file must be pure ASCII"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ota_imported_tree":
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            entries = {
                p.encode("latin-1"): [f.encode("latin-1") for f in fields] for p, fields in kwargs["entries"].items()
            }
            return kwargs["srcs"], entries
    raise AssertionError("no ota_imported_tree call in the generated BUILD file")


def _write(path: bytes, data: bytes, mode: int, owner: tuple[int, int]) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, *owner)
    os.chmod(path, mode)


def seeded_tree(root: bytes, seed: int, count: int, names: list[bytes]) -> None:
    """A device-like tree: the fixed cases of the import contract plus `count` random entries.

    Fixed: setuid/setgid/sticky modes, a 0600 file and a 0700 directory with other owners, empty
    directories, a deep chain, symlinks to a file, to a directory, absolute, dangling and leading
    outside, a hard link, duplicate contents, and every name of `names` as a file.
    """
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    for d, mode, owner in [
        (b"bin", 0o755, (0, 2000)),
        (b"etc", 0o755, (0, 0)),
        (b"private", 0o700, (1000, 1000)),
        (b"empty", 0o755, (0, 0)),
        (b"tmp", 0o1777, (0, 0)),
        (b"deep/a/b/c/d/e/f/g/h", 0o750, (0, 3000)),
        (b"usr/lib", 0o755, (0, 0)),
    ]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
        os.chown(os.path.join(root, d), *owner)
        os.chmod(os.path.join(root, d), mode)
    _write(os.path.join(root, b"bin/su"), b"su binary\n" * 50, 0o4755, (0, 2000))
    _write(os.path.join(root, b"bin/sg"), b"sg binary\n", 0o2755, (0, 2000))
    _write(os.path.join(root, b"private/key"), b"secret", 0o600, (1000, 1000))
    _write(os.path.join(root, b"etc/twin1"), b"same bytes", 0o644, (0, 0))
    _write(os.path.join(root, b"etc/twin2"), b"same bytes", 0o640, (0, 5))
    _write(os.path.join(root, b"deep/a/b/c/d/e/f/g/h/leaf"), b"leaf", 0o444, (0, 0))
    os.link(os.path.join(root, b"bin/su"), os.path.join(root, b"bin/su-hardlink"))
    os.symlink(b"su", os.path.join(root, b"bin/ls"))
    os.symlink(b"usr/lib", os.path.join(root, b"lib"))
    # An absolute target that exists but cannot be written, even by root: a test that wrongly
    # writes through the tree's symlinks fails instead of damaging the host.
    os.symlink(b"/proc/version", os.path.join(root, b"etc/passwd-abs"))
    os.symlink(b"does/not/exist", os.path.join(root, b"dangling"))
    os.symlink(b"../../outside/secret", os.path.join(root, b"escape"))
    for i, name in enumerate(names):
        _write(os.path.join(root, b"etc", name), b"special %d" % i, 0o644, (0, 0))
    modes = [0o644, 0o755, 0o600, 0o4750, 0o2711, 0o440]
    for i in range(count):
        parent = rng.choice([b"bin", b"etc", b"usr/lib", b"deep/a/b", b"private"])
        name = b"r%d_%s" % (i, rng.choice([b"x", b"lib.so", b".conf", b"data.bin"]))
        path = os.path.join(root, parent, name)
        kind = rng.random()
        if kind < 0.7:
            size = rng.choice([0, 1, 100, 4096, rng.randrange(20000)])
            _write(path, rng.randbytes(size), rng.choice(modes), (rng.choice([0, 1000, 2000]), rng.choice([0, 2000])))
        elif kind < 0.85:
            os.symlink(rng.choice([b"r0_x", b"/system/bin/sh", b"../lib", b"x" * rng.randrange(1, 200)]), path)
        else:
            os.mkdir(path)
            os.chmod(path, rng.choice([0o755, 0o700, 0o1755]))
