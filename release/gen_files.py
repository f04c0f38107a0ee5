"""Writes the example release's files from a small spec, deterministically.

The example release (//release) needs tens of megabytes of realistic system files without
checking them in. Each file is a pure function of (kind, path, size, rev): `rev` 0 is a file's
first version and each later rev applies a few edits on top, the way a rebuilt binary or an
edited config differs from its predecessor, so patches between revs are small like real ones.
Pseudo-random bytes come from SHAKE-256 (stable across Python versions and machines), and
every zip/gzip is written by zlib with fixed metadata, so the same spec gives the same bytes
everywhere.

    gen_files.py --spec SPEC.json

SPEC.json: {"files": [{"kind", "path", "size", "rev", "out"}, ...]} where kind is one of
elf, text, gz, zip, random, and `out` is where to write the file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import sys
import zipfile

from ota.actions import toolchain_identity
from ota.errors import OtaError

_SEED = b"rules_ota example release"

# Machine code is not uniformly random: map bytes onto a 48-symbol alphabet so the "code"
# compresses to roughly 70 %, like real stripped binaries.
_CODE = bytes((b % 48) * 5 % 256 for b in range(256))

_WORDS = [
    "service",
    "start",
    "stop",
    "class",
    "core",
    "main",
    "late",
    "boot",
    "init",
    "property",
    "persist",
    "sys",
    "ro",
    "vendor",
    "system",
    "data",
    "cache",
    "user",
    "group",
    "root",
    "shell",
    "media",
    "audio",
    "wifi",
    "radio",
    "camera",
    "net",
    "log",
    "permission",
    "allow",
    "deny",
    "default",
    "path",
    "value",
    "enable",
    "disable",
    "on",
    "off",
    "true",
    "false",
    "device",
    "driver",
    "module",
    "firmware",
    "kernel",
    "socket",
    "stream",
    "dgram",
    "mode",
    "owner",
    "label",
    "context",
]


def _stream(label: str, size: int) -> bytes:
    return hashlib.shake_256(_SEED + b"\0" + label.encode()).digest(size)


def _elf_header(size: int) -> bytes:
    # ELF64 little-endian, x86-64 executable identification; the rest is zero-filled.
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    fields = (2).to_bytes(2, "little") + (62).to_bytes(2, "little") + (1).to_bytes(4, "little")
    return (ident + fields + size.to_bytes(8, "little")).ljust(64, b"\0")


def _code(label: str, size: int) -> bytes:
    body = _stream(label, size).translate(_CODE)
    # A string table at the end, as binaries carry symbol names.
    strings = " ".join(_WORDS[b % len(_WORDS)] for b in _stream(label + "#str", size // 40))
    return body[: size - len(strings)] + strings.encode()[:size]


def _text(label: str, size: int) -> bytes:
    out = []
    total = 0
    for n, b in enumerate(_stream(label, size // 6 + 8)):
        word = _WORDS[b % len(_WORDS)]
        out.append(word + ("\n" if n % 9 == 8 else " "))
        total += len(word) + 1
        if total >= size:
            break
    return "".join(out).encode()[:size]


def _edit(data: bytes, label: str, rev: int) -> bytes:
    """Applies `rev` rounds of small edits (overwrite, insert, delete) to data."""
    buf = bytearray(data)
    for r in range(1, rev + 1):
        rng = random.Random(f"{label}@{r}")
        for _ in range(rng.randint(3, 6)):
            if len(buf) < 64:
                break
            at = rng.randrange(len(buf) - 32)
            op = rng.randrange(3)
            if op == 0:
                n = rng.randint(8, 200)
                buf[at : at + n] = _stream(f"{label}@{r}/{at}", n).translate(_CODE)
            elif op == 1:
                buf[at:at] = _stream(f"{label}@{r}+{at}", rng.randint(32, 2048)).translate(_CODE)
            else:
                del buf[at : at + rng.randint(16, 512)]
    return bytes(buf)


def elf(path: str, size: int, rev: int) -> bytes:
    return _edit(_elf_header(size) + _code(path, size - 64), path, rev)


def text(path: str, size: int, rev: int) -> bytes:
    base = _text(path, size)
    if rev == 0:
        return base
    lines = base.split(b"\n")
    for r in range(1, rev + 1):
        rng = random.Random(f"{path}@{r}")
        for _ in range(rng.randint(2, 5)):
            at = rng.randrange(len(lines))
            lines[at : at + rng.randint(0, 2)] = [_text(f"{path}@{r}:{at}", rng.randint(20, 200))]
    return b"\n".join(lines)


def gz(path: str, size: int, rev: int) -> bytes:
    return gzip.compress(text(path, size, rev), compresslevel=9, mtime=0)


def _zip_entry(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(2008, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 0
    info.external_attr = 0o644 << 16
    zf.writestr(info, data, compresslevel=6)


def zip_file(path: str, size: int, rev: int) -> bytes:
    """An apk/jar-like archive: a manifest, a big code entry, resources and a native lib."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        _zip_entry(zf, "AndroidManifest.xml", text(path + "/manifest", 2048, rev))
        _zip_entry(zf, "classes.dex", elf(path + "/dex", size // 2, rev))
        for n in range(6):
            _zip_entry(zf, f"res/values/strings{n}.xml", text(f"{path}/res{n}", size // 24, rev if n == 1 else 0))
        _zip_entry(zf, "lib/arm64-v8a/libnative.so", elf(path + "/so", size // 4, 0))
    return out.getvalue()


def random_blob(path: str, size: int, rev: int) -> bytes:
    """Firmware-like incompressible data: every rev is new, so a patch cannot pay off."""
    return _stream(f"{path}@{rev}", size)


KINDS = {"elf": elf, "text": text, "gz": gz, "zip": zip_file, "random": random_blob}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True, help="JSON spec: files to write")
    parser.add_argument("--toolchain_identity", help="Identity file (docs/ci-and-remote-cache.md)")
    args = parser.parse_args(argv)
    try:
        toolchain_identity.verify(args.toolchain_identity)
    except OtaError as err:
        print(f"gen_files.py: error: {err}", file=sys.stderr)
        return 1
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    for item in spec["files"]:
        make = KINDS.get(item["kind"])
        if make is None:
            print(f"gen_files.py: {args.spec}: {item['path']}: unknown kind {item['kind']!r}", file=sys.stderr)
            return 1
        data = make(item["path"], int(item["size"]), int(item["rev"]))
        with open(item["out"], "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
