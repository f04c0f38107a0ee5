"""Names inside an OTA package zip (docs/package-format.md#the-zip), shared by the writer, the reader and the docs.

Kept apart from the writer so the device side (package_reader, ota_apply) can import the names
without the build tools' flags.
"""

from __future__ import annotations

import re

FORMAT_VERSION = 1
MANIFEST_ENTRY = "manifest.pb"
SIGNATURE_ENTRY = "META-INF/ota/signature"
PARTITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# A file's entries are named after the index of its operation in the manifest, never after its
# install path: a path may hold any byte (py/ota/format/paths.py) and be 4,095 bytes long, which a
# zip entry name should not have to carry twice more, and which no tool should have to escape.
def file_patch_entry(index: int) -> str:
    return f"patch/system/{index}.p"


def whole_file_entry(index: int) -> str:
    return f"system/{index}"


def partition_patch_entry(name: str) -> str:
    return f"patch/{name}.img.p"


def partition_image_entry(name: str) -> str:
    return f"{name}.img"
