"""Edits of a package's manifest and payload blob, for tests that forge packages (docs/package-format.md).

Why here: refusal and attack tests build hostile packages by changing a real one; adding a file's
data means appending to the payload blob and updating the blob's payload entry, which every such
test would otherwise redo by hand.
"""

from __future__ import annotations

import hashlib

from ota.format.layout import PAYLOAD_BLOB_ENTRY
from ota.proto import ota_manifest_pb2 as pb


def append_data(manifest: pb.OtaManifest, entries: dict[str, bytes], op: pb.FileOperation, data: bytes) -> None:
    """Appends `data` (stored) to the blob in `entries` and points `op.data` at it; the manifest's
    payload entry for the blob follows the new size and SHA-256."""
    blob = entries.get(PAYLOAD_BLOB_ENTRY, b"")
    op.data.offset, op.data.length, op.data.compression = len(blob), len(data), pb.DataSlice.STORED
    blob += data
    entries[PAYLOAD_BLOB_ENTRY] = blob
    kept = [entry for entry in manifest.payload if entry.name != PAYLOAD_BLOB_ENTRY]
    kept.append(pb.PayloadEntry(name=PAYLOAD_BLOB_ENTRY, size=len(blob), sha256=hashlib.sha256(blob).hexdigest()))
    del manifest.payload[:]
    manifest.payload.extend(sorted(kept, key=lambda entry: entry.name))


def set_whole_file(manifest: pb.OtaManifest, entries: dict[str, bytes], op: pb.FileOperation, data: bytes) -> None:
    """Makes `op` a WRITE of `data` (method WHOLE, target = `data`)."""
    op.op, op.method = pb.FileOperation.WRITE, pb.WHOLE
    op.target.size, op.target.sha256 = len(data), hashlib.sha256(data).digest()
    append_data(manifest, entries, op, data)
