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


def file_patch_entry(path: str) -> str:
    return f"patch/system/{path}.p"


def whole_file_entry(path: str) -> str:
    return f"system/{path}"


def partition_patch_entry(name: str) -> str:
    return f"patch/{name}.img.p"


def partition_image_entry(name: str) -> str:
    return f"{name}.img"
