"""Seeded pairs of tar archives for the tar-input tests: a source tree and a changed target.

Both archives hold what real root file systems hold and what the tar reader must keep exactly:
modes with setuid/sticky bits, several owners, symlinks (relative, absolute, dangling), hard
links, empty directories, and names with spaces, leading dots, '\\', non-ASCII UTF-8, bytes
that are not UTF-8 and newlines. The target changes a few files' bytes, modes, owners and link
targets, adds and deletes paths, and leaves the rest alone, so an incremental package between
them exercises every file operation. The same seed always gives the same archives.

Run as a program (the tests' genrule) it writes the pair: `--out_source S.tar --out_target T.tar.gz`.
"""

from __future__ import annotations

import argparse
import io
import random
import tarfile
from dataclasses import dataclass, replace

# Name pieces per class of name a Linux file system allows (every byte but NUL and '/').
NAME_CLASSES: dict[str, tuple[bytes, ...]] = {
    "plain": (b"lib", b"etc", b"data", b"conf"),
    "space": (b"with space", b"two  spaces", b"trailing "),
    "dot": (b".hidden", b"..dots", b".x.y"),
    "utf8": ("Főtanúsítvány".encode(), "日本".encode(), "ä-ö".encode()),
    "backslash": (b"system-systemd\\x2dcryptsetup", b"back\\slash"),
    "non_utf8": (b"latin1-\xe9t\xe9", b"\xff\xfe", b"bad-\xc3"),
    "newline": (b"line\nbreak", b"tab\tand\rcr"),
}
ALL_CLASSES = tuple(NAME_CLASSES)


@dataclass(frozen=True)
class Member:
    """One archive member: kind is "file", "dir", "symlink" or "hardlink" (link = target name)."""

    name: bytes
    kind: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    link: bytes = b""


def _name(rng: random.Random, classes: tuple[str, ...], index: int) -> bytes:
    piece = rng.choice(NAME_CLASSES[rng.choice(classes)])
    return piece + b"-%d" % index


def _data(rng: random.Random, size: int) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"delta\n", bytes(range(256))]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
    return bytes(out[:size])


def source_tree(seed: int, count: int, classes: tuple[str, ...] = ALL_CLASSES) -> list[Member]:
    """A tree of about `count` members under a few directories."""
    rng = random.Random(seed)
    dirs = [b"bin", b"etc", b"usr/lib", b"usr/share/" + _name(rng, classes, 0), b"empty/" + _name(rng, classes, 1)]
    members = [Member(b"bin", "dir", 0o755), Member(b"etc", "dir", 0o750, 0, 1000), Member(b"usr", "dir", 0o755)]
    members += [Member(b"usr/lib", "dir", 0o755), Member(dirs[3], "dir", 0o2775, 1000, 1000)]
    members += [Member(b"empty", "dir", 0o700), Member(dirs[4], "dir", 0o1777, 0, 2000)]
    files = []
    for index in range(count):
        parent = rng.choice(dirs[:4])
        name = parent + b"/" + _name(rng, classes, index + 2)
        mode = rng.choice((0o644, 0o755, 0o600, 0o4755, 0o640))
        owner = rng.choice((0, 0, 1000, 2000))
        members.append(Member(name, "file", mode, owner, owner, _data(rng, rng.randrange(0, 6000))))
        files.append(name)
    for index, target in enumerate((b"../etc/conf", b"/system/bin/sh", b"dangling target")):
        members.append(Member(b"bin/" + _name(rng, classes, count + 10 + index), "symlink", link=target))
    members.append(Member(b"usr/lib/" + _name(rng, classes, count + 20), "hardlink", 0o755, link=files[0]))
    return members


def target_tree(source: list[Member], seed: int, classes: tuple[str, ...] = ALL_CLASSES) -> list[Member]:
    """The source with a few files edited, a mode, an owner and a link changed, paths added and deleted."""
    rng = random.Random(seed + 1)
    out = []
    for member in source:
        roll = rng.random()
        if member.kind == "file" and roll < 0.15:
            out.append(replace(member, data=member.data[: len(member.data) // 2] + b"edited" + member.data[-50:]))
        elif member.kind == "file" and roll < 0.2:
            out.append(replace(member, mode=member.mode ^ 0o011, uid=member.uid + 1))
        elif member.kind == "file" and roll < 0.25 and not _is_link_target(member, source):
            continue  # deleted
        elif member.kind == "symlink" and roll < 0.5:
            out.append(replace(member, link=member.link + b".new"))
        else:
            out.append(member)
    out.append(Member(b"etc/" + _name(rng, classes, 9000), "file", 0o600, 0, 0, _data(rng, 3000)))
    out.append(Member(b"new dir", "dir", 0o755, 3000, 3000))
    return out


def bump(members: list[Member], index: int) -> list[Member]:
    """`members` with one more byte at the end of its `index`-th regular file."""
    files = [i for i, m in enumerate(members) if m.kind == "file"]
    out = list(members)
    out[files[index]] = replace(out[files[index]], data=out[files[index]].data + b"!")
    return out


def _is_link_target(member: Member, members: list[Member]) -> bool:
    return any(m.kind == "hardlink" and m.link == member.name for m in members)


def write_tar(path: str, members: list[Member], *, compression: str = "", pax: bool = False) -> None:
    """Writes `members` in order; compression "", "gz", "bz2" or "xz"; GNU or PAX format."""
    mode = "w:" + compression if compression else "w"
    fmt = tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT
    with tarfile.open(path, mode, format=fmt, encoding="utf-8", errors="surrogateescape") as archive:
        for member in members:
            archive.addfile(*tar_info(member))


def tar_info(member: Member) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    """The TarInfo (and contents) of one member, with a fixed mtime."""
    info = tarfile.TarInfo(member.name.decode("utf-8", "surrogateescape"))
    info.mode, info.uid, info.gid, info.mtime = member.mode, member.uid, member.gid, 1_000_000
    kinds = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}
    info.type = kinds[member.kind]
    info.linkname = member.link.decode("utf-8", "surrogateescape")
    if member.kind != "file":
        return info, None
    info.size = len(member.data)
    return info, io.BytesIO(member.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--classes", default=",".join(ALL_CLASSES), help="name classes, comma-separated")
    parser.add_argument("--bump", default="", help="index of a target file to append one byte to")
    parser.add_argument("--out_source", required=True)
    parser.add_argument("--out_target", required=True)
    args = parser.parse_args()
    classes = tuple(args.classes.split(","))
    source = source_tree(args.seed, args.count, classes)
    write_tar(args.out_source, source)
    target = target_tree(source, args.seed, classes)
    if args.bump:
        target = bump(target, int(args.bump))
    compression = {".gz": "gz", ".bz2": "bz2", ".xz": "xz"}.get(args.out_target[args.out_target.rfind(".") :], "")
    write_tar(args.out_target, target, compression=compression, pax=True)


if __name__ == "__main__":
    main()
