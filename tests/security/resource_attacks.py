"""Resource bombs against ota_apply, and how to measure one: reusable by tests and bench scripts.

Two families (docs/security.md, "Memory and time bounds"):

  * before the signature: zips of any shape, built here byte by byte (zipfile would refuse to
    write most of them, and is far too slow for millions of entries): entry counts, directory
    sizes, declared sizes that lie, deflate ratios, duplicate names, end-record mazes. Each must
    be refused within the pre-signature bound, whatever it claims;
  * after the signature (the hostile-pipeline model, signed by the trusted key through
    `attacks.Lab`): IMGDIFF2 deflate chunks that expand, and huge manifests for another device.

`measure` runs the ota_apply CLI in a child process and returns its exit status, stderr, peak
RSS (the child's own VmHWM, so not this process's bombs) and wall time.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import attacks
from ota.format import imgdiff_format, imgpatch, layout, package_reader, signing
from ota.proto import ota_manifest_pb2 as pb

MANIFEST = layout.MANIFEST_ENTRY
SIGNATURE = layout.SIGNATURE_ENTRY
# The bounds docs/security.md promises for everything read before the signature is verified.
PRE_SIGNATURE_MAX_RSS_MIB = 64
PRE_SIGNATURE_MAX_SECONDS = 5.0
MAX_MANIFEST = package_reader.MAX_MANIFEST_BYTES


# --- zip records, written by hand ---------------------------------------------------------------


def local_header(name: bytes, data: bytes, *, method: int, usize: int, crc: int) -> bytes:
    return (
        struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), usize, len(name), 0)
        + name
        + data
    )


def central_header(
    name: bytes, offset: int, *, csize: int = 0, usize: int = 0, crc: int = 0, method: int = 0, flags: int = 0
) -> bytes:
    return (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            20,
            20,
            flags,
            method,
            0,
            0x21,
            crc,
            csize,
            usize,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        + name
    )


def end_record(count: int, size: int, offset: int, *, comment: bytes = b"") -> bytes:
    """The end record; zip64 form (record + locator + saturated end record) when a field needs it."""
    if count < 0xFFFF and size < 0xFFFFFFFF and offset < 0xFFFFFFFF:
        return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, size, offset, len(comment)) + comment
    record_at = offset + size
    record = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, record_at, 1)
    return (
        record
        + locator
        + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
        + comment
    )


@dataclass(frozen=True)
class Member:
    """One entry as it is stored: `stored` bytes (deflated if `method` is 8), with the headers'
    uncompressed size and CRC as given (so they can lie)."""

    name: str
    stored: bytes
    method: int
    usize: int
    crc: int

    @classmethod
    def plain(cls, name: str, data: bytes) -> Member:
        return cls(name, data, 0, len(data), zlib.crc32(data))

    @classmethod
    def zeros(cls, name: str, size: int, declared: int | None = None) -> Member:
        """`size` zero bytes deflated in 1 MiB pieces (never held whole), declared as `declared`."""
        packer, pieces, crc, piece = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS), [], 0, bytes(1 << 20)
        for start in range(0, size, len(piece)):
            chunk = piece[: min(len(piece), size - start)]
            pieces.append(packer.compress(chunk))
            crc = zlib.crc32(chunk, crc)
        pieces.append(packer.flush())
        return cls(name, b"".join(pieces), 8, size if declared is None else declared, crc)


def zip_of(
    members: list[Member],
    *,
    filler: int = 0,
    filler_names: str = "junk/{:07d}",
    comment: bytes = b"",
    declared_count: int | None = None,
) -> bytes:
    """A zip of `members`, then `filler` directory entries (empty, stored, all pointing at the
    first local header), then the end record (declaring `declared_count` entries if given)."""
    body, central = bytearray(), []
    for member in members:
        name = member.name.encode("utf-8")
        central.append(
            central_header(
                name, len(body), csize=len(member.stored), usize=member.usize, crc=member.crc, method=member.method
            )
        )
        body += local_header(name, member.stored, method=member.method, usize=member.usize, crc=member.crc)
    central.extend(central_header(filler_names.format(i).encode(), 0) for i in range(filler))
    directory = b"".join(central)
    count = len(members) + filler if declared_count is None else declared_count
    return bytes(body) + directory + end_record(count, len(directory), len(body), comment=comment)


# --- pre-signature bombs -------------------------------------------------------------------------


def _fake_signature() -> bytes:
    return signing.sign_manifest(b"not this manifest", [attacks.OTHER_KEY])


def entry_count_bomb(count: int) -> bytes:
    """A real directory of `count` entries (3 million made zipfile allocate 1.1 GB)."""
    return zip_of([Member.plain(MANIFEST, b"\x08\x01"), Member.plain(SIGNATURE, _fake_signature())], filler=count - 2)


def declared_count_lie(count: int) -> bytes:
    """A tiny zip whose end record claims `count` entries (zip64 beyond 65534)."""
    return zip_of([Member.plain(MANIFEST, b"\x08\x01")], declared_count=count)


def long_names_directory(entries: int, name_len: int = 65_535) -> bytes:
    """Few entries with the longest names a zip allows: a directory of entries x name_len bytes."""
    return zip_of([Member.plain(MANIFEST, b"\x08\x01")], filler=entries, filler_names="{:07d}" + "n" * (name_len - 7))


def walk_at_the_limit(count: int = 100_000) -> bytes:
    """The most entries the reader walks before the signature: each name read and compared."""
    return zip_of([Member.plain(MANIFEST, b"\x08\x01"), Member.plain(SIGNATURE, _fake_signature())], filler=count - 2)


def duplicate_names(copies: int) -> bytes:
    return zip_of([Member.plain(MANIFEST, b"\x08\x01")] * copies)


def manifest_inflate_bomb(inflated: int, declared: int = 2) -> bytes:
    """manifest.pb's deflate stream inflates to `inflated` bytes; its headers claim `declared`."""
    return zip_of([Member.zeros(MANIFEST, inflated, declared), Member.plain(SIGNATURE, _fake_signature())])


def manifest_at_size(size: int) -> bytes:
    """A deflated manifest of `size` zero bytes, declared honestly, signed by nobody trusted."""
    return zip_of([Member.zeros(MANIFEST, size), Member.plain(SIGNATURE, _fake_signature())])


def signature_bomb(inflated: int) -> bytes:
    return zip_of([Member.plain(MANIFEST, b"\x08\x01"), Member.zeros(SIGNATURE, inflated)])


def end_record_maze() -> bytes:
    """A 65,535-byte comment made of fake end records: the backward search must stay linear."""
    fake = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, 0xFFFFFF, 0xFFFFFF, 0)
    comment = (fake * (65_535 // len(fake) + 1))[:65_535]
    return zip_of([Member.plain(MANIFEST, b"\x08\x01")], comment=comment)


@dataclass(frozen=True)
class Bomb:
    name: str
    expected: str  # a fragment of the one-line refusal
    make: Callable[[], bytes]


PRE_SIGNATURE: tuple[Bomb, ...] = (
    Bomb(
        "1,000,000 directory entries",
        "zip: 1000000 entries, more than the limit of 100000",
        lambda: entry_count_bomb(1_000_000),
    ),
    Bomb(
        "100,001 directory entries",
        "zip: 100001 entries, more than the limit of 100000",
        lambda: entry_count_bomb(100_001),
    ),
    Bomb(
        "end record claims 2^40 entries",
        f"zip: {1 << 40} entries, more than the limit of 100000",
        lambda: declared_count_lie(1 << 40),
    ),
    Bomb(
        "end record claims 65,534 entries in 0 bytes",
        "zip: central directory of 0 bytes cannot hold its 65534 entries",
        lambda: zip_of([], declared_count=65_534),
    ),
    Bomb("17 MiB directory of 65,535-byte names", "more than the limit of 16777216", lambda: long_names_directory(273)),
    Bomb("100,000 entries, each read", "unknown key", walk_at_the_limit),
    Bomb("manifest.pb named 50,000 times", "zip entry 'manifest.pb': appears twice", lambda: duplicate_names(50_000)),
    Bomb(
        "manifest.pb inflates to 1 GiB, declares 2 bytes",
        "zip entry manifest.pb: holds more than its declared 2 bytes",
        lambda: manifest_inflate_bomb(1 << 30),
    ),
    Bomb(
        "manifest.pb declares 12 MiB, inflates to 64 MiB",
        f"zip entry manifest.pb: holds more than its declared {MAX_MANIFEST} bytes",
        lambda: manifest_inflate_bomb(64 << 20, MAX_MANIFEST),
    ),
    Bomb(
        "manifest.pb declares 12 MiB + 1",
        f"manifest.pb: {MAX_MANIFEST + 1} bytes, more than the limit of {MAX_MANIFEST}",
        lambda: manifest_at_size(MAX_MANIFEST + 1),
    ),
    Bomb("manifest.pb of exactly 12 MiB, untrusted signer", "unknown key", lambda: manifest_at_size(MAX_MANIFEST)),
    Bomb(
        "manifest.pb of exactly 12 MiB, trusted signer (parsed after the signature)",
        "manifest.pb",
        lambda: zip_of(
            [
                Member.zeros(MANIFEST, MAX_MANIFEST),
                Member.plain(SIGNATURE, signing.sign_manifest(bytes(MAX_MANIFEST), [attacks.TRUSTED_KEY])),
            ]
        ),
    ),
    Bomb(
        "signature inflates to 64 MiB",
        "META-INF/ota/signature: 67108864 bytes, more than the limit of 65536",
        lambda: signature_bomb(64 << 20),
    ),
    Bomb("64 KiB comment of fake end records", "unsigned: no META-INF/ota/signature entry", end_record_maze),
)


# --- post-signature bombs (signed by the trusted key: a hostile pipeline) -----------------------


def bsdiff_of_zeros(size: int) -> bytes:
    """A BSDIFF40 patch that makes `size` zero bytes from nothing (one control tuple, all extra)."""
    return attacks.bsdiff_patch([(0, size, 0)], b"", b"\0" * size, size)


def imgdiff_expand_bomb(lab: attacks.Lab, expanded: int) -> bytes:
    """The genuine boot patch whose first deflate chunk inflates to `expanded` zero bytes.

    The chunk's BSDIFF40 body really makes that many bytes up to 64 MiB; beyond, it makes 64 MiB
    (building a bigger one here costs more than it shows: the declared length is refused first).
    """
    patch = lab.payload()[attacks.BOOT_PATCH]
    chunks = imgdiff_format.parse(patch, attacks.BOOT_PATCH)
    offsets = sorted(c.patch_offset for c in chunks if hasattr(c, "patch_offset")) + [len(patch)]
    bodies = [
        patch[c.patch_offset : offsets[offsets.index(c.patch_offset) + 1]] if hasattr(c, "patch_offset") else None
        for c in chunks
    ]
    index = next(i for i, c in enumerate(chunks) if isinstance(c, imgdiff_format.DeflateChunk))
    chunks[index] = dataclasses.replace(chunks[index], tgt_expanded_len=expanded)
    bodies[index] = bsdiff_of_zeros(min(expanded, 64 << 20))
    hostile = imgdiff_format.pack(chunks, bodies)
    return attacks.resigned(lab, lambda m: None, attacks.replace(lab.entries, attacks.BOOT_PATCH, hostile))


def boot_target_size(lab: attacks.Lab) -> int:
    return next(p.target.size for p in lab.manifest.partitions if p.name == "boot")


def expand_limit(lab: attacks.Lab) -> int:
    """What applypatch allows the boot patch's deflate chunks: derived from the declared target size."""
    return imgpatch.expand_limit(boot_target_size(lab))


def mkdir_flood(lab: attacks.Lab, count: int, device: str = "marlin") -> bytes:
    """A signed manifest with `count` MKDIR operations, for another device (874 MB before the fix)."""

    def edit(manifest: pb.OtaManifest) -> None:
        manifest.precondition.device[0] = device
        manifest.postcondition.device[0] = device
        manifest.files.extend(
            pb.FileOperation(path=b"flood/%d" % i, op=pb.FileOperation.MKDIR, mode=0o755) for i in range(count)
        )

    return attacks.resigned(lab, edit)


def post_signature_bound_mib(manifest_bytes: int, largest_target: int) -> float:
    """The peak docs/security.md promises once the signature holds, as a function of the largest
    legitimate items: the pre-signature bound, plus four times the manifest (its bytes, the
    signed message, the parsed header and the parsed operations), plus one patch application at
    a time: source, patch and target of the largest item and twice its deflate expand limit
    (one chunk's inflated source and target)."""
    mib = 1 << 20
    return (
        PRE_SIGNATURE_MAX_RSS_MIB
        + 4 * manifest_bytes / mib
        + 3 * largest_target / mib
        + 2 * imgpatch.expand_limit(largest_target) / mib
    )


# --- measuring ------------------------------------------------------------------------------------


Measured = attacks.Measured


def measure(package: str, device_config: str, work: str) -> Measured:
    """Runs the ota_apply CLI on `package` in a child process; peak RSS is that child's alone."""
    args = ["--package", package, "--device", device_config, "--progress", "none"]
    return attacks.run_tool("ota.cli.ota_apply", args, cwd=work)


def baseline_device(directory: str) -> str:
    """A device that trusts TRUSTED_KEY and requires signatures, holding nothing: enough for the
    pre-signature path, which reads no device state. Returns its config path."""
    os.makedirs(os.path.join(directory, "system"), exist_ok=True)
    os.makedirs(os.path.join(directory, "cache"), exist_ok=True)
    with open(os.path.join(directory, "trusted.pem"), "wb") as f:
        f.write(signing.public_key_pem(attacks.TRUSTED_KEY))
    with open(os.path.join(directory, "partitions.conf"), "w", encoding="utf-8") as f:
        f.write("cache cache\n")
    with open(os.path.join(directory, "build.json"), "w", encoding="utf-8") as f:
        f.write(
            '{"device": "guppy", "fingerprint": "rules_ota/guppy/1.0:user/release-keys", "timestamp": 1700000000}\n'
        )
    config = os.path.join(directory, "device.json")
    from ota.device.updater import device as device_mod

    device_mod.write_config(
        config,
        {
            "name": attacks.DEVICE,
            "system_root": "system",
            "build_file": "build.json",
            "partitions": "partitions.conf",
            "trusted_keys": ["trusted.pem"],
            "policy": {"require_signature": True},
        },
    )
    return config
