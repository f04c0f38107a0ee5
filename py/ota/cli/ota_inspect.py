"""ota_inspect PACKAGE: what an OTA package will do and where its bytes go.

Prints the manifest (protobuf text format: one line per field, a path's or digest's bytes outside
printable ASCII as octal escapes, so any file name stays on its line), then a size breakdown:
payload bytes per operation, method and compression (a file's data is its slice of the payload
blob, a partition's its own entry), the largest items first, and the payload as a share of the
whole target sizes of every changed file and every partition, which is the number a release
engineer watches.
Last comes where the package's own bytes go: the payload as stored in the zip, and the overhead
around it (manifest.pb, the signature, zip headers and directory), with package bytes over
payload bytes as the overhead ratio. The package is opened with ota.format.package_reader, so every
entry is checked on the way.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

from absl import flags
from google.protobuf import text_format

from ota.errors import UsageError
from ota.format import package_reader
from ota.format.layout import MANIFEST_ENTRY, SIGNATURE_ENTRY, slice_key
from ota.format.paths import escape, from_bytes
from ota.io import fileio, runner
from ota.proto import ota_manifest_pb2 as pb

_TOP = flags.DEFINE_integer("top", 20, "How many of the largest entries to list.", lower_bound=0)


@dataclass(frozen=True)
class Item:
    """One piece of payload: a file's slice of the blob or a partition's entry, as stored."""

    size: int
    kind: str
    name: str


def _items(manifest: pb.OtaManifest) -> list[Item]:
    """Every file's data slice and every partition entry, with "<op> <method> [<compression>]"."""
    items = [
        Item(
            op.data.length,
            f"file {pb.FileOperation.Op.Name(op.op)} {pb.PatchMethod.Name(op.method)} "
            f"{pb.DataSlice.Compression.Name(op.data.compression).lower()}",
            f"{slice_key(op.data.offset, op.data.length)}  {escape(from_bytes(op.path))}",
        )
        for op in manifest.files
        if op.HasField("data")
    ]
    entries = {entry.name: entry.size for entry in manifest.payload}
    items += [
        Item(entries.get(part.entry, 0), f"partition {pb.PatchMethod.Name(part.method)}", part.entry)
        for part in manifest.partitions
        if part.entry
    ]
    return items


def full_size(manifest: pb.OtaManifest) -> int:
    """Bytes the paths this package changes and its partitions would take whole (unchanged paths
    carry no size in the manifest, so this is a full package's share of what changed)."""
    return sum(op.target.size for op in manifest.files if op.HasField("target")) + sum(
        part.target.size for part in manifest.partitions
    )


@dataclass(frozen=True)
class PackageBytes:
    """Where a package file's bytes go; `stored` sizes are as in the zip, `inflated` as read."""

    package: int
    payload_stored: int
    payload_inflated: int
    manifest_stored: int
    manifest_inflated: int
    signature_stored: int

    @property
    def zip_structure(self) -> int:
        """Local headers, central directory and end records: everything that is not entry data."""
        return self.package - self.payload_stored - self.manifest_stored - self.signature_stored

    @property
    def ratio(self) -> float | None:
        """Package bytes per payload byte (None for a package without payload)."""
        return self.package / self.payload_stored if self.payload_stored else None


def package_bytes(package: package_reader.Package) -> PackageBytes:
    """The breakdown of an opened package, from its (checked) zip directory; a whole file deflated
    in the blob counts its target size as inflated."""
    members = package.members()
    payload = [members[entry.name] for entry in package.manifest.payload]
    manifest = members[MANIFEST_ENTRY]
    signature = members.get(SIGNATURE_ENTRY)
    inflated_in_blob = sum(
        op.target.size - op.data.length
        for op in package.manifest.files
        if op.HasField("data") and op.data.compression == pb.DataSlice.DEFLATED
    )
    return PackageBytes(
        package=package.size(),
        payload_stored=sum(m.compressed_size for m in payload),
        payload_inflated=sum(m.uncompressed_size for m in payload) + inflated_in_blob,
        manifest_stored=manifest.compressed_size,
        manifest_inflated=manifest.uncompressed_size,
        signature_stored=0 if signature is None else signature.compressed_size,
    )


def overhead_lines(sizes: PackageBytes) -> list[str]:
    ratio = "n/a" if sizes.ratio is None else f"{sizes.ratio:.4f}"
    return [
        "# package bytes",
        f"{sizes.payload_stored:>12} bytes  payload in the zip ({sizes.payload_inflated} bytes inflated)",
        f"{sizes.manifest_stored:>12} bytes  {MANIFEST_ENTRY} ({sizes.manifest_inflated} bytes inflated)",
        f"{sizes.signature_stored:>12} bytes  {SIGNATURE_ENTRY}",
        f"{sizes.zip_structure:>12} bytes  zip headers and central directory",
        f"# package: {sizes.package} bytes, payload: {sizes.payload_stored} bytes, ratio {ratio}",
    ]


def report(package: package_reader.Package, top: int) -> str:
    """The text ota_inspect prints for an opened (and verified) package."""
    manifest = package.manifest
    items = _items(manifest)
    lines = ["# manifest.pb", text_format.MessageToString(manifest).rstrip(), "", "# payload by operation and method"]
    by_kind: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for item in items:
        tally = by_kind[item.kind]
        tally[0] += 1
        tally[1] += item.size
    for kind, (count, size) in sorted(by_kind.items(), key=lambda pair: (-pair[1][1], pair[0])):
        lines.append(f"{size:>12} bytes  {count:>6} items  {kind}")
    lines.append("")
    lines.append(f"# largest items (top {top})")
    largest = sorted(items, key=lambda item: (-item.size, item.name))[:top]
    lines.extend(f"{item.size:>12}  {item.name}" for item in largest)
    payload = sum(item.size for item in items)
    full = full_size(manifest)
    ratio = f"{100.0 * payload / full:.2f}%" if full else "n/a"
    unchanged = sum(group.count for group in manifest.unchanged)
    lines.append("")
    lines.append(
        f"# total: {payload} payload bytes in {len(items)} items; {len(manifest.files)} operations, "
        f"{unchanged} unchanged paths in {len(manifest.unchanged)} directories; "
        f"a full package would carry {full} bytes; ratio {ratio}"
    )
    lines.append("")
    lines.extend(overhead_lines(package_bytes(package)))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
    if len(argv) != 2:
        raise UsageError("ota_inspect [--top N] PACKAGE")
    fileio.require_seekable(argv[1])
    with package_reader.open_package(argv[1]) as package:
        package.verify_all()
        print(report(package, _TOP.value), end="")


def run() -> None:
    runner.run_absl("ota_inspect", main)


if __name__ == "__main__":
    run()
