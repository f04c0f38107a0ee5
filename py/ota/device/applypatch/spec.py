"""Digests, partition specs (`MTD:`/`EMMC:`) and shortest-prefix loading (docs/applypatch.md#command-lines).

A raw partition has no end-of-file, and after an interrupted update it may hold the old or the
new image, of different lengths. So a spec lists every acceptable (size, digest) pair and the
loader streams the partition once, hashing as it goes, and stops at the shortest pair that
matches. SHA-256 digests (64 hex digits) are accepted wherever AOSP takes a SHA-1 (40).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ota.errors import OtaError

PREFIXES = ("MTD", "EMMC")
_ALGORITHMS = {40: "sha1", 64: "sha256"}
_READ_PIECE = 1 << 20


@dataclass(frozen=True)
class Digest:
    """A SHA-1 or SHA-256 digest, as lowercase hex."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str, where: str, field: str = "sha1") -> Digest:
        algorithm = _ALGORITHMS.get(len(text))
        if algorithm is None or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise OtaError(where, f"{field} {text!r} is not 40 (SHA-1) or 64 (SHA-256) hex digits")
        return cls(algorithm, text.lower())

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha1") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def matches(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    def __str__(self) -> str:
        return self.hex


def first_match(data: bytes, digests: Iterable[Digest]) -> Digest | None:
    """The first of `digests` that `data` hashes to (each algorithm computed once)."""
    computed: dict[str, str] = {}
    for digest in digests:
        if digest.algorithm not in computed:
            computed[digest.algorithm] = hashlib.new(digest.algorithm, data).hexdigest()
        if computed[digest.algorithm] == digest.hex:
            return digest
    return None


def parse_size(text: str, where: str, field: str, *, any_base: bool = False) -> int:
    """A positive size. `any_base` follows strtoul(..., 0): 0x.. hex, 0.. octal, else decimal."""
    body = text.lower()
    try:
        if any_base and body.startswith("0x"):
            value = int(body, 16)
        elif any_base and len(body) > 1 and body.startswith("0"):
            value = int(body[1:], 8)
        else:
            value = int(body, 10) if body.isdigit() else -1
    except ValueError:
        value = -1
    if value <= 0:
        raise OtaError(where, f"{field} {text!r} is not a positive integer")
    return value


@dataclass(frozen=True)
class Pair:
    """One acceptable content of a partition: its length and digest."""

    size: int
    digest: Digest


@dataclass(frozen=True)
class PartitionSpec:
    """`<kind>:<name>:<size>:<digest>[:<size>:<digest>...]`; `name` is an MTD name or an EMMC device."""

    kind: str
    name: str
    pairs: tuple[Pair, ...]
    text: str

    @property
    def device(self) -> str:
        """What writing addresses: `MTD:boot`, `EMMC:/dev/block/boot` (AOSP writes by name only)."""
        return f"{self.kind}:{self.name}"


def is_partition_spec(text: str) -> bool:
    return text.split(":", 1)[0] in PREFIXES and ":" in text


def parse_partition_spec(text: str) -> PartitionSpec:
    """Parses a spec strictly: a missing name, an odd field count or a bad size/digest is an error."""
    fields = text.split(":")
    if fields[0] not in PREFIXES or len(fields) < 4 or len(fields) % 2:
        raise OtaError(text, "partition spec must be MTD|EMMC:<name>:<size>:<sha1>[:<size>:<sha1>...]")
    if not fields[1]:
        raise OtaError(text, "partition spec has an empty name")
    pairs = [
        Pair(
            parse_size(fields[index], text, f"size #{index // 2}"),
            Digest.parse(fields[index + 1], text, f"sha1 #{index // 2}"),
        )
        for index in range(2, len(fields), 2)
    ]
    return PartitionSpec(fields[0], fields[1], tuple(pairs), text)


@dataclass(frozen=True)
class Loaded:
    """Data loaded by a spec and the pair it matched."""

    data: bytes
    pair: Pair


def load_by_spec(read: Callable[[int, int], bytes], pairs: Iterable[Pair], where: str) -> Loaded:
    """Shortest-prefix loading: streams from offset 0, returns the shortest prefix matching a pair.

    `read(offset, size)` returns up to `size` bytes (fewer only at the end). Raises OtaError
    (naming what was read and why it failed) when no pair matches; an OSError from `read`
    (e.g. an ECC error on a torn flash page) also ends the search as "no match".
    """
    ordered = sorted(pairs, key=lambda pair: pair.size)
    running = {name: hashlib.new(name) for name in {pair.digest.algorithm for pair in ordered}}
    data = bytearray()
    for pair in ordered:
        try:
            while len(data) < pair.size:
                piece = read(len(data), min(_READ_PIECE, pair.size - len(data)))
                if not piece:
                    raise OtaError(
                        where, f"holds none of the listed images (short read at {len(data)} of {pair.size} bytes)"
                    )
                data += piece
                for context in running.values():
                    context.update(piece)
        except OSError as err:
            raise OtaError(
                where, f"holds none of the listed images (read error at offset {len(data)}: {err.strerror or err})"
            ) from None
        if running[pair.digest.algorithm].copy().hexdigest() == pair.digest.hex:
            return Loaded(bytes(data[: pair.size]), pair)
    raise OtaError(where, "holds none of the listed images (no size:sha1 pair matches)")
