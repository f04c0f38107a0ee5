"""A small hand-made source/target build pair run through the real tool pipeline.

system_manifest for both trees, file_patch for every path present in both, then the package
params exactly as the ota_package rule writes them (exec paths relative to the work directory).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from build_helpers import Item, run_ok, write_tree
from ota.format import gzipper

_RNG = random.Random(1234)
TOOL_TEXT = b"".join(b"tool line %d\n" % i for i in range(3000))
RANDOM_OLD, RANDOM_NEW = _RNG.randbytes(3000), _RNG.randbytes(3000)
KERNEL = b"KERNEL" + _RNG.randbytes(4000)


def boot_image(ramdisk_text: bytes) -> bytes:
    """A boot-image-like file: raw bytes, one zlib gzip member, raw bytes."""
    return KERNEL + gzipper.compress(ramdisk_text) + b"\0" * 512


RAMDISK_OLD = b"".join(b"init line %d\n" % i for i in range(2000))
RAMDISK_NEW = RAMDISK_OLD.replace(b"init line 77\n", b"init line seventy-seven\n")

SOURCE = [
    Item("bin", "dir", mode=0o755, gid=2000),
    Item("bin/keep", data=b"kept bytes\n", mode=0o755, gid=2000),
    Item("bin/tool", data=TOOL_TEXT, mode=0o755, gid=2000),
    Item("etc", "dir", mode=0o755),
    Item("etc/conf", data=b"conf=1\n"),
    Item("etc/old", data=b"gone\n"),
    Item("etc/random", data=RANDOM_OLD),
    Item("lib", "dir", mode=0o755),
    Item("lib/link", "symlink", target="../bin/keep", mode=0o777),
]
TARGET = [
    Item("bin", "dir", mode=0o755, gid=2000),
    Item("bin/keep", data=b"kept bytes\n", mode=0o755, gid=2000),
    Item("bin/tool", data=TOOL_TEXT.replace(b"tool line 1500\n", b"tool line fifteen hundred\n"), mode=0o750, gid=2000),
    Item("etc", "dir", mode=0o755),
    Item("etc/conf", data=b"conf=1\n", mode=0o600, uid=1000, gid=1000),
    Item("etc/new", data=b"brand new\n" * 50, mode=0o644),
    Item("etc/random", data=RANDOM_NEW),
    Item("lib", "dir", mode=0o755),
    Item("lib/libc.so", "symlink", target="libc.so.6", mode=0o777),
    Item("var", "dir", mode=0o771, uid=1000, gid=1000),
]
# Paths the rule sends through file_patch (present as files in both builds); bin/keep is not,
# to exercise KEEP decided by the package writer from equal hashes.
PATCHED = ["bin/tool", "etc/conf", "etc/random"]


def build_inputs(work: Path, **run_kwargs) -> Path:
    """Writes trees, runs system_manifest and file_patch, writes params.json; returns its path."""
    work.mkdir(parents=True, exist_ok=True)
    write_tree(work, "source", SOURCE)
    write_tree(work, "target", TARGET)
    (work / "boot_source.img").write_bytes(boot_image(RAMDISK_OLD))
    (work / "boot_target.img").write_bytes(boot_image(RAMDISK_NEW))
    for side in ("source", "target"):
        run_ok(
            "ota.actions.system_manifest",
            "--tree",
            f"{side}.tree.json",
            "--out",
            f"{side}.manifest.json",
            cwd=work,
            **run_kwargs,
        )
    patches = []
    for index, path in enumerate(PATCHED):
        run_ok(
            "ota.actions.file_patch",
            "--source",
            f"source/{path}",
            "--target",
            f"target/{path}",
            "--path",
            path,
            "--out_data",
            f"p{index}.data",
            "--out_info",
            f"p{index}.json",
            cwd=work,
            **run_kwargs,
        )
        patches.append({"path": path, "info": f"p{index}.json", "data": f"p{index}.data"})
    run_ok(
        "ota.actions.file_patch",
        "--source",
        "boot_source.img",
        "--target",
        "boot_target.img",
        "--path",
        "boot.img",
        "--out_data",
        "boot.data",
        "--out_info",
        "boot.json",
        cwd=work,
        **run_kwargs,
    )
    params = {
        "type": "INCREMENTAL",
        "downgrade": False,
        "source": {
            "device": "sargo",
            "fingerprint": "v1/fp",
            "timestamp": 1000,
            "system_manifest": "source.manifest.json",
        },
        "target": {
            "device": "sargo",
            "fingerprint": "v2/fp",
            "timestamp": 2000,
            "system_manifest": "target.manifest.json",
        },
        "file_patches": patches,
        "whole_files": [{"path": "etc/new", "file": "target/etc/new"}],
        "partitions": [{"name": "boot", "info": "boot.json", "data": "boot.data"}],
    }
    (work / "params.json").write_text(json.dumps(params, sort_keys=True))
    return work / "params.json"
