"""release_archive: contract-5 layout, byte reproducibility, consistency checks, reader."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest

from build_helpers import Item, run_ok, run_tool, write_tree
from ota.actions import release_archive
from ota.errors import OtaError

ITEMS = [
    Item("bin", "dir", mode=0o755),
    Item("bin/sh", data=b"shell\n" * 100, mode=0o755, gid=2000),
    Item("etc", "dir"),
    Item("etc/hosts", data=b"127.0.0.1 localhost\n"),
    Item("etc/link", "symlink", target="hosts", mode=0o777),
]
BUILD = {"device": "sargo", "fingerprint": "google/sargo/v1", "timestamp": 1700000000}
# The tool and the inputs every release_archive run here is given (written by `_make`).
ARCHIVE_INPUTS = (
    "ota.actions.release_archive",
    "--build_json",
    "build.json",
    "--system_manifest",
    "m.json",
    "--tree",
    "sys.tree.json",
)


def _make(work: Path, **kwargs) -> Path:  # type: ignore[no-untyped-def]
    work.mkdir(parents=True, exist_ok=True)
    write_tree(work, "sys", ITEMS)
    (work / "boot.img").write_bytes(b"ANDROID!" + bytes(2040))
    (work / "build.json").write_text(json.dumps(BUILD))
    run_ok("ota.actions.system_manifest", "--tree", "sys.tree.json", "--out", "m.json", cwd=work, **kwargs)
    run_ok(
        *ARCHIVE_INPUTS,
        "--partition",
        "boot=boot.img",
        "--out",
        "release.zip",
        cwd=work,
        **kwargs,
    )
    return work / "release.zip"


def test_layout_and_read_back(tmp_path: Path) -> None:
    path = _make(tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [
            "IMAGES/boot.img",
            "META/build.json",
            "META/system_manifest.json",
            "SYSTEM/1",  # bin/sh: entry 1 of the manifest
            "SYSTEM/3",  # etc/hosts
        ]
        assert archive.read("META/system_manifest.json") == (tmp_path / "m.json").read_bytes()
    release = release_archive.read_release_archive(str(path))
    assert release.build.to_json() == BUILD
    assert release.files == {"bin/sh": b"shell\n" * 100, "etc/hosts": b"127.0.0.1 localhost\n"}
    assert release.images == {"boot": b"ANDROID!" + bytes(2040)}
    assert [(e.path, e.kind, e.mode, e.gid, e.target) for e in release.manifest] == [
        ("bin", "dir", 0o755, 0, None),
        ("bin/sh", "file", 0o755, 2000, None),
        ("etc", "dir", 0o644, 0, None),
        ("etc/hosts", "file", 0o644, 0, None),
        ("etc/link", "symlink", 0o777, 0, "hosts"),
    ]


def test_byte_reproducible_across_cwd_tz_umask(tmp_path: Path) -> None:
    first = _make(tmp_path / "one").read_bytes()
    assert _make(tmp_path / "two" / "deeper", umask=0o077, TZ="Asia/Kolkata").read_bytes() == first


def test_tree_and_manifest_must_agree(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / "sys" / "etc" / "hosts").write_bytes(b"changed\n")
    proc = run_tool(
        *ARCHIVE_INPUTS,
        "--out",
        "r2.zip",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("release_archive: error: sys/etc/hosts: sha256 ")
    assert proc.stderr.endswith(" for etc/hosts\n")
    proc = run_tool(
        *ARCHIVE_INPUTS,
        "--partition",
        "../boot=boot.img",
        "--out",
        "r2.zip",
        cwd=tmp_path,
    )
    assert proc.returncode == 2


def test_reader_rejects_tampered_file(tmp_path: Path) -> None:
    path = _make(tmp_path)
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(tmp_path / "bad.zip", "w") as out:
        for name in archive.namelist():
            out.writestr(name, b"tampered\n" if name == "SYSTEM/3" else archive.read(name))
    with pytest.raises(OtaError) as info:
        release_archive.read_release_archive(str(tmp_path / "bad.zip"))
    assert (
        str(info.value) == f"{tmp_path / 'bad.zip'}: SYSTEM/3: contents do not match the system manifest's size/sha256"
    )


def test_reader_refuses_by_declared_size_before_reading(tmp_path: Path) -> None:
    path = _make(tmp_path)
    with zipfile.ZipFile(path) as archive:
        declared = sum(info.file_size for info in archive.infolist())
    with pytest.raises(OtaError, match=rf"^{path}: declares {declared} bytes, more than the limit of {declared - 1}$"):
        release_archive.read_release_archive(str(path), max_bytes=declared - 1)


@pytest.mark.parametrize("seed", range(60))
def test_damaged_archives_are_one_line_refusals(tmp_path: Path, seed: int) -> None:
    """Truncated or byte-flipped archives (seeded): the hardened zip reader refuses each with one
    OtaError naming the file, never another exception."""
    rng = random.Random(seed)
    data = bytearray(_make(tmp_path).read_bytes())
    if seed % 2:
        del data[rng.randrange(1, len(data)) :]
    else:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    bad = tmp_path / "damaged.zip"
    bad.write_bytes(bytes(data))
    try:
        release_archive.read_release_archive(str(bad))
    except OtaError as err:
        assert str(err).startswith(f"{bad}: ") and "\n" not in str(err)
