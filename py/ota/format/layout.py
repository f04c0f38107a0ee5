"""Names inside an OTA package zip (docs/package-format.md#the-zip), shared by the writer, the reader and the docs.

Kept apart from the writer so the device side (package_reader, ota_apply) can import the names
without the build tools' flags.
"""

from __future__ import annotations

import re

FORMAT_VERSION = 2
MANIFEST_ENTRY = "manifest.pb"
SIGNATURE_ENTRY = "META-INF/ota/signature"
# Every file's patch or whole contents, back to back, in one stored entry: a zip entry per file
# would cost ~110 bytes of headers each (docs/package-format.md, "What is left: overhead").
PAYLOAD_BLOB_ENTRY = "payload.bin"
PARTITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def slice_key(offset: int, length: int) -> str:
    """How ota_apply names a file's patch in the blob (a stage step, a staged cache file, errors)."""
    return f"{PAYLOAD_BLOB_ENTRY}@{offset}+{length}"


def partition_patch_entry(name: str) -> str:
    return f"patch/{name}.img.p"


def partition_image_entry(name: str) -> str:
    return f"{name}.img"
