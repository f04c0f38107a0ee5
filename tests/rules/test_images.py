"""system_image and boot_image outputs as Bazel built them (tests/rules/BUILD fixtures)."""

from __future__ import annotations

import gzip
import hashlib
import json
import pathlib

from ota.format import bootimg, gzipper

REPO = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): stay inside Bazel runfiles
HERE = REPO / "tests/rules"


def test_tree_from_trees_files_dirs_symlinks_with_modes_and_owners() -> None:
    entries = json.loads((HERE / "tree_system.tree.json").read_text())["entries"]
    got = [(e["path"], e["kind"], oct(e["mode"]), e["uid"], e["gid"]) for e in entries]
    assert got == [
        ("etc", "dir", "0o750", 0, 0),
        ("etc/same.txt", "file", "0o644", 0, 0),
        ("usr", "dir", "0o750", 0, 0),  # "usr/" applies below usr, not to usr itself
        ("usr/bin", "symlink", "0o777", 1000, 1001),
        ("usr/share", "dir", "0o750", 1000, 1001),
        ("usr/share/a.txt", "file", "0o644", 1000, 1001),
        ("usr/share/bin", "dir", "0o750", 1000, 1001),
        ("usr/share/bin/run.sh", "file", "0o755", 1000, 1001),
        ("usr/share/sub", "dir", "0o750", 1000, 1001),
        ("usr/share/sub/b.txt", "file", "0o644", 1000, 1001),
        ("var", "dir", "0o750", 0, 0),
        ("var/empty", "dir", "0o700", 0, 0),
    ]
    by_path = {e["path"]: e for e in entries}
    assert by_path["usr/bin"]["target"] == "share/bin"
    assert by_path["usr/share/sub/b.txt"]["file"].endswith("tests/rules/testdata/tree/sub/b.txt")
    assert not by_path["usr/share/sub/b.txt"]["file"].startswith("/")


def test_manifest_hashes_the_files() -> None:
    entries = json.loads((HERE / "tree_system.manifest.json").read_text())["entries"]
    b_txt = next(e for e in entries if e["path"] == "usr/share/sub/b.txt")
    data = b"beta\n"
    assert (b_txt["size"], b_txt["sha256"], b_txt["sha1"]) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
        hashlib.sha1(data).hexdigest(),
    )
    assert "file" not in b_txt


def test_v4_boot_image_with_normalized_kernel() -> None:
    parsed = bootimg.parse((HERE / "v4_boot.img").read_bytes(), "v4_boot.img")
    img = parsed.image
    assert img.header_version == 4
    assert img.cmdline == b"console=ttyS0 quiet"
    assert bootimg.decode_os_version(img.os_version) == ("15.1.2", "2026-11")
    gnu = (HERE / "kernel.gz").read_bytes()
    # Same contents as GNU gzip's file, in a stream zlib reproduces (so imgdiff can patch it).
    assert gzip.decompress(img.kernel) == gzip.decompress(gnu) == (HERE / "testdata/kernel.txt").read_bytes()
    member = gzipper.parse_member(img.kernel, "kernel")
    stream = img.kernel[member.deflate_start : member.deflate_start + member.deflate_len]
    assert gzipper.reproducing_level(member.inflated, stream) is not None
    assert img.ramdisk == (HERE / "tgt_ramdisk.cpio.gz").read_bytes()


def test_v1_boot_image_with_offsets_board_page_size_and_dtbo() -> None:
    parsed = bootimg.parse((HERE / "v1_boot_offsets.img").read_bytes(), "v1_boot_offsets.img")
    img = parsed.image
    assert (img.header_version, img.page, img.board) == (1, 4096, b"fixtureboard")
    assert img.kernel_addr == 0x80000000 + 0x8000 and img.ramdisk_addr == 0x80000000 + 0x01000000
    assert img.kernel == (HERE / "testdata/kernel.txt").read_bytes()  # raw kernel kept as is
    assert img.recovery_dtbo == (HERE / "testdata/odm.img").read_bytes()
    assert parsed.id_matches
