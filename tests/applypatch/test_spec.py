"""Partition specs, digests and shortest-prefix loading (docs/applypatch.md#command-lines)."""

from __future__ import annotations

import hashlib

import pytest

from ota.device.applypatch.spec import (
    Digest,
    Pair,
    first_match,
    is_partition_spec,
    load_by_spec,
    parse_partition_spec,
    parse_size,
)
from ota.errors import OtaError

OLD = b"old image " * 1000
NEW = b"new image, longer " * 1000


def reader(data: bytes, fail_at: int | None = None):
    def read(offset: int, size: int) -> bytes:
        if fail_at is not None and offset + size > fail_at:
            raise OSError(74, "Bad message")
        return data[offset : offset + size]

    return read


def pair(data: bytes, algorithm: str = "sha1") -> Pair:
    return Pair(len(data), Digest.of(data, algorithm))


def test_parse_spec_with_two_pairs_and_sha256():
    sha256 = hashlib.sha256(NEW).hexdigest().upper()
    spec = parse_partition_spec(f"MTD:boot:{len(OLD)}:{hashlib.sha1(OLD).hexdigest()}:{len(NEW)}:{sha256}")
    assert (spec.kind, spec.name, spec.device) == ("MTD", "boot", "MTD:boot")
    assert spec.pairs == (pair(OLD), Pair(len(NEW), Digest("sha256", sha256.lower())))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("MTD:boot:10", "partition spec must be"),
        ("MTD:boot:10:" + "a" * 40 + ":20", "partition spec must be"),
        ("EMMC::10:" + "a" * 40, "empty name"),
        ("MTD:boot:0:" + "a" * 40, "size #1 '0' is not a positive integer"),
        ("MTD:boot:ten:" + "a" * 40, "size #1 'ten'"),
        ("MTD:boot:10:" + "g" * 40, "sha1 #1"),
        ("MTD:boot:10:" + "a" * 41, "not 40 (SHA-1) or 64 (SHA-256) hex digits"),
    ],
)
def test_malformed_specs_are_one_line_errors(text, problem):
    with pytest.raises(OtaError) as info:
        parse_partition_spec(text)
    assert problem in str(info.value) and str(info.value).startswith(text) and "\n" not in str(info.value)


def test_is_partition_spec():
    assert is_partition_spec("MTD:boot:1:" + "a" * 40) and is_partition_spec("EMMC:/dev/block/x:1:a")
    assert not is_partition_spec("/system/bin/sh") and not is_partition_spec("MTD") and not is_partition_spec("X:y")


def test_parse_size_bases_like_strtoul():
    assert parse_size("0x10", "w", "f", any_base=True) == 16
    assert parse_size("010", "w", "f", any_base=True) == 8
    assert parse_size("4096", "w", "f", any_base=True) == 4096
    assert parse_size("010", "w", "f") == 10
    with pytest.raises(OtaError, match="'-5' is not a positive integer"):
        parse_size("-5", "w", "f", any_base=True)


@pytest.mark.parametrize("contents", [OLD, NEW])
def test_shortest_prefix_finds_whichever_image_is_present(contents):
    partition = contents + b"\xff" * 50_000  # a raw partition runs on past the image
    loaded = load_by_spec(reader(partition), [pair(NEW), pair(OLD)], "MTD:boot")
    assert loaded.data == contents and loaded.pair == pair(contents)


def test_sha256_pairs_load_too():
    loaded = load_by_spec(reader(NEW + b"\0" * 10), [pair(OLD, "sha256"), pair(NEW, "sha256")], "EMMC:x")
    assert loaded.data == NEW


def test_duplicate_sizes_with_different_hashes():
    other = b"X" * len(OLD)
    assert load_by_spec(reader(other), [pair(OLD), pair(other)], "p").data == other


def test_no_match_short_read_and_read_error_name_the_partition():
    with pytest.raises(OtaError, match=r"^MTD:boot: holds none of the listed images \(no size:sha1 pair matches\)$"):
        load_by_spec(reader(b"garbage" * 10_000), [pair(OLD)], "MTD:boot")
    with pytest.raises(OtaError, match=r"short read at 100 of 10000 bytes"):
        load_by_spec(reader(b"a" * 100), [pair(OLD)], "MTD:boot")
    with pytest.raises(OtaError, match=r"read error at offset 0: Bad message"):
        load_by_spec(reader(OLD, fail_at=10), [pair(OLD)], "MTD:boot")


def test_first_match_and_digest_parse():
    digests = [Digest.of(NEW), Digest.of(OLD, "sha256")]
    assert first_match(OLD, digests) == digests[1]
    assert first_match(b"none", digests) is None
    assert Digest.parse("AB" * 20, "w").hex == "ab" * 20
