"""ota_inspect PACKAGE: what an OTA package will do and where its bytes go.

Prints the manifest (protobuf text format: one line per field, a path's bytes outside printable
ASCII as octal escapes, so any file name stays on its line), then a size breakdown: payload bytes per operation
and method, the largest entries first, and the package size as a share of a full package (the
whole target sizes of every file and partition), which is the number a release engineer watches.
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
from ota.format.layout import MANIFEST_ENTRY, SIGNATURE_ENTRY
from ota.format.paths import escape, from_bytes
from ota.io import fileio, runner
from ota.proto import ota_manifest_pb2 as pb

_TOP = flags.DEFINE_integer("top", 20, "How many of the largest entries to list.", lower_bound=0)


def _kinds(manifest: pb.OtaManifest) -> dict[str, str]:
    """Payload entry name -> "<op> <method>" of the operation that uses it."""
    kinds = {}
    for op in manifest.files:
        if op.entry:
            kinds[op.entry] = f"file {pb.FileOperation.Op.Name(op.op)} {pb.PatchMethod.Name(op.method)}"
    for part in manifest.partitions:
        if part.entry:
            kinds[part.entry] = f"partition {pb.PatchMethod.Name(part.method)}"
    return kinds


def _for_whom(manifest: pb.OtaManifest, name: str) -> str:
    """ "  <path>" of the file an entry is for, `escape`d to one line ("" for a partition's entry).

    Entries are named by index (py/ota/format/layout.py), so the path is what tells a reader which
    file a large entry is.
    """
    path = next((op.path for op in manifest.files if op.entry == name), None)
    return "" if path is None else f"  {escape(from_bytes(path))}"


def full_size(manifest: pb.OtaManifest) -> int:
    """Bytes a full package would carry: every target file and partition, whole."""
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
    """The breakdown of an opened package, from its (checked) zip directory."""
    members = package.members()
    payload = [members[entry.name] for entry in package.manifest.payload]
    manifest = members[MANIFEST_ENTRY]
    signature = members.get(SIGNATURE_ENTRY)
    return PackageBytes(
        package=package.size(),
        payload_stored=sum(m.compressed_size for m in payload),
        payload_inflated=sum(m.uncompressed_size for m in payload),
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
    kinds = _kinds(manifest)
    lines = ["# manifest.pb", text_format.MessageToString(manifest).rstrip(), "", "# payload by operation and method"]
    by_kind: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for entry in manifest.payload:
        tally = by_kind[kinds.get(entry.name, "unreferenced")]
        tally[0] += 1
        tally[1] += entry.size
    for kind, (count, size) in sorted(by_kind.items(), key=lambda item: (-item[1][1], item[0])):
        lines.append(f"{size:>12} bytes  {count:>6} entries  {kind}")
    lines.append("")
    lines.append(f"# largest entries (top {top})")
    largest = sorted(manifest.payload, key=lambda e: (-e.size, e.name))[:top]
    lines.extend(f"{entry.size:>12}  {entry.name}{_for_whom(manifest, entry.name)}" for entry in largest)
    payload = sum(entry.size for entry in manifest.payload)
    full = full_size(manifest)
    ratio = f"{100.0 * payload / full:.2f}%" if full else "n/a"
    lines.append("")
    lines.append(
        f"# total: {payload} payload bytes in {len(manifest.payload)} entries; "
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
