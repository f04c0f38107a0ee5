"""Opens an OTA package zip without trusting anything in it (docs/contracts.md#7-reading-a-package).

The device side (ota_apply, signature checks, ota_inspect) gets its bytes only through here, and
every zip byte through `ota.format.zipscan`, the one bounded zip reader. In order of trust:

  * opening reads only what the signature check needs (`read_signed_parts`): memory and time
    bounded by the `Limits` constants, whatever the file claims;
  * `manifest` parses the manifest (the caller has checked its signature by then);
  * `check_contents` checks the manifest's names and operations (safe unique paths, every
    file's data slice inside the stored payload blob, every partition's entry in the payload)
    and matches the zip to it: no entry the manifest does not list, none missing, sizes equal,
    no duplicates; its walk is bounded by the payload count;
  * reading an entry stops after the size the manifest declares and checks the SHA-256 before
    handing bytes out, so a zip bomb, a truncated download or a swapped entry is a one-line
    OtaError, never a crash or a gigabyte allocation. A file's slice of the blob
    (`read_slice`) is read within the blob's bounds and inflated to at most its declared size;
    its user checks the result (a whole file against its target SHA-256, a patch's output
    against the target), after `verify_all` has checked the whole blob's SHA-256.

The manifest's authenticity is the signature check's job, not this module's.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.message import DecodeError, Message

from ota.errors import OtaError
from ota.format import zipscan
from ota.format.layout import FORMAT_VERSION, MANIFEST_ENTRY, PARTITION_NAME, PAYLOAD_BLOB_ENTRY, SIGNATURE_ENTRY
from ota.format.paths import check_path, escape, from_bytes
from ota.proto import ota_manifest_pb2 as pb

_ENTRY_OPS = (pb.FileOperation.PATCH, pb.FileOperation.WRITE)
# Before the signature is checked, only these two entries are read (docs/security.md).
SIGNED_PARTS = (MANIFEST_ENTRY, SIGNATURE_ENTRY)
MAX_MANIFEST_BYTES = 12 << 20
MAX_SIGNATURE_BYTES = 64 << 10
# The manifest fields the first checks need (device, builds, policy, partitions): `Package.header`.
HEADER_FIELDS = ("format_version", "type", "precondition", "postcondition", "downgrade", "partitions")


@dataclass(frozen=True)
class Limits:
    """Bounds on what a package may make us allocate or walk before anything in it is trusted.

    The directory bounds apply to the end record's declarations, before the directory is read;
    the manifest and signature bounds to the only two entries read before the signature check.
    The manifest bound keeps the pre-signature peak under 64 MiB (docs/security.md).
    """

    max_entries: int = 100_000
    max_directory_bytes: int = 16 << 20
    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    max_signature_bytes: int = MAX_SIGNATURE_BYTES
    max_read_bytes: int = 1 << 31  # `read` keeps an entry in memory; `copy_to` streams any size


def open_file(path: str) -> BinaryIO:
    """The package file, opened for reading; one line if it cannot be."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise OtaError(path, "no such package file") from None
    except OSError as err:
        raise OtaError(path, f"cannot read package ({err.strerror or err})") from None


def read_signed_parts(
    file: BinaryIO, where: str, limits: Limits = Limits()
) -> tuple[zipscan.Directory, bytes, bytes | None]:
    """The directory, the manifest bytes and the signature block (None if absent), read with bounds.

    This is everything read before the signature is verified, by ota_apply and by
    `signing.verify` alike: the end record (refused by declared entry count and directory size),
    one pass over the directory in bounded pieces (refusing any name that occurs twice, so the
    entry verified is the entry applied), and the two entries, each under its size limit.
    Memory: the two entries plus the directory's names; time: linear in the bounded directory.
    """
    directory = zipscan.find_directory(
        file, where, zipscan.DirectoryLimits(limits.max_entries, limits.max_directory_bytes)
    )
    found = zipscan.find_members(file, directory, SIGNED_PARTS, where)
    if MANIFEST_ENTRY not in found:
        raise OtaError(where, f"{MANIFEST_ENTRY}: missing")
    manifest = zipscan.read_member(file, found[MANIFEST_ENTRY], directory, where, limits.max_manifest_bytes)
    signature = (
        zipscan.read_member(file, found[SIGNATURE_ENTRY], directory, where, limits.max_signature_bytes)
        if SIGNATURE_ENTRY in found
        else None
    )
    return directory, manifest, signature


class Package:
    """An opened package: its raw `manifest_bytes` and `signature` (read at once, with bounds),
    then, once the caller has checked the signature, the parsed `manifest`.

    Opening reads only the two signed parts (`read_signed_parts`). `manifest` parses the
    manifest on first use; `check_contents` (run implicitly by `read`) checks it and matches the
    zip's directory against its payload, refusing the first entry the payload does not list, so
    what that walk keeps is bounded by the signed manifest.
    """

    def __init__(self, path: str, limits: Limits = Limits()) -> None:
        self.path = path
        self.limits = limits
        self._file = open_file(path)
        try:
            self._directory, self.manifest_bytes, self.signature = read_signed_parts(self._file, path, limits)
        except OSError as err:
            self._file.close()
            raise OtaError(path, f"cannot read package ({err.strerror or err})") from None
        except BaseException:
            self._file.close()
            raise
        self._members: dict[str, zipscan.Member] | None = None

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @functools.cached_property
    def header(self) -> Message:
        """The manifest's small fields only (`HEADER_FIELDS`), for the checks that come first.

        Files and payload are skipped, not built: checking device, builds and partitions costs
        about the manifest's size in memory however many operations it lists.
        """
        header = _header_class()()
        try:
            header.ParseFromString(self.manifest_bytes)
        except (DecodeError, RuntimeError, ValueError) as err:
            raise OtaError(self.path, f"{MANIFEST_ENTRY}: not a valid OtaManifest ({_reason(err)})") from None
        header.DiscardUnknownFields()
        _check_version_and_type(header, self.path)
        return header

    @functools.cached_property
    def manifest(self) -> pb.OtaManifest:
        """The parsed manifest (format version and type checked; the rest by `check_contents`).

        Parsing costs about ten times the manifest's size in memory and no per-operation Python
        work, so a caller can check the device and build before anything walks the operations.
        """
        return _parse_manifest(self.manifest_bytes, self.path)

    @functools.cached_property
    def payload(self) -> dict[str, pb.PayloadEntry]:
        return {entry.name: entry for entry in self.manifest.payload}

    def check_contents(self) -> None:
        """The manifest's payload names and operations are safe and consistent, and the zip holds
        exactly the manifest, the payload entries (sizes as listed) and the signature."""
        if self._members is not None:
            return
        _check_payload_names(self.manifest, self.path)
        _check_operations(self.manifest, self.payload, self.path)
        _check_unchanged_groups(self.manifest, self.path)
        members: dict[str, zipscan.Member] = {}
        for member in zipscan.members(self._file, self._directory, self.path):
            if member.name in members:
                raise OtaError(self.path, f"zip entry {member.name!r}: appears twice")
            zipscan.check_member(member, self.path)
            if member.name not in self.payload and member.name not in SIGNED_PARTS:
                raise OtaError(self.path, f"zip entry {member.name!r}: not listed in the manifest payload")
            members[member.name] = member
        for entry in self.manifest.payload:
            member = members.get(entry.name)
            if member is None:
                raise OtaError(self.path, f"payload entry {entry.name}: missing from the zip")
            if member.uncompressed_size != entry.size:
                raise OtaError(
                    self.path,
                    f"zip entry {entry.name}: {member.uncompressed_size} bytes, the manifest says {entry.size}",
                )
        blob = members.get(PAYLOAD_BLOB_ENTRY)
        if blob is not None and (
            blob.method != zipscan.METHOD_STORED or blob.compressed_size != blob.uncompressed_size
        ):
            raise OtaError(
                self.path, f"zip entry {PAYLOAD_BLOB_ENTRY}: not stored as it is; it must be (it is read by offset)"
            )
        self._members = members

    def members(self) -> dict[str, zipscan.Member]:
        """Every zip member by name (after `check_contents`), with its stored and inflated sizes."""
        self.check_contents()
        assert self._members is not None
        return self._members

    def size(self) -> int:
        """The package file's size in bytes."""
        return zipscan.file_size(self._file)

    def _verified(self, name: str, sink: Callable[[bytes], object]) -> None:
        entry = self.payload.get(name)
        if entry is None:
            raise OtaError(self.path, f"{name}: not a payload entry of this package")
        self.check_contents()
        assert self._members is not None
        digest = hashlib.sha256()

        def both(piece: bytes) -> None:
            digest.update(piece)
            sink(piece)

        try:
            zipscan.stream(self._file, self._members[name], self._directory, self.path, both)
        except OSError as err:
            raise OtaError(self.path, f"zip entry {name}: unreadable ({err.strerror or err})") from None
        if digest.hexdigest() != entry.sha256:
            raise OtaError(
                self.path, f"zip entry {name}: sha256 {digest.hexdigest()} does not match the manifest's {entry.sha256}"
            )

    def read(self, name: str) -> bytes:
        """The bytes of payload entry `name`, checked against the manifest's size and SHA-256."""
        size = self.payload[name].size if name in self.payload else 0
        if size > self.limits.max_read_bytes:
            raise OtaError(
                self.path, f"{name}: {size} bytes, more than the in-memory limit of {self.limits.max_read_bytes}"
            )
        out = bytearray()
        self._verified(name, out.extend)
        return bytes(out)

    def copy_to(self, name: str, stream: BinaryIO) -> None:
        """Streams payload entry `name` into `stream`; on OtaError what was written is garbage."""
        self._verified(name, stream.write)

    def read_slice(self, data: pb.DataSlice, size: int) -> bytes:
        """A file's bytes at `data` in the payload blob: exactly `size` bytes once inflated.

        `check_contents` has put the slice inside the blob and made the blob a stored entry, so
        its bytes are read at the blob's file offset, never beyond it; a deflated slice is
        inflated with its output capped at `size`. The caller checks what the bytes must be.
        """
        self.check_contents()
        assert self._members is not None
        where = f"{PAYLOAD_BLOB_ENTRY} at {data.offset}+{data.length}"
        if size > self.limits.max_read_bytes:
            raise OtaError(self.path, f"{where}: {size} bytes, more than the in-memory limit")
        member = self._members[PAYLOAD_BLOB_ENTRY]
        try:
            self._file.seek(zipscan.data_start(self._file, member, self._directory, self.path) + data.offset)
            raw = self._file.read(data.length)
        except OSError as err:
            raise OtaError(self.path, f"{where}: unreadable ({err.strerror or err})") from None
        if len(raw) != data.length:
            raise OtaError(self.path, f"{where}: the package ends early (truncated)")
        if data.compression == pb.DataSlice.STORED:
            out = raw
        else:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                out = inflater.decompress(raw, size + 1)
            except zlib.error as err:
                raise OtaError(self.path, f"{where}: not a deflate stream ({_reason(err)})") from None
            if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
                raise OtaError(self.path, f"{where}: the deflate stream does not end with the slice")
        if len(out) != size:
            raise OtaError(self.path, f"{where}: holds {len(out)} bytes, not the {size} the manifest says")
        return out

    def verify_all(self) -> None:
        """Reads every payload entry once, checking sizes and hashes (the expensive check: run last)."""
        for name in self.payload:
            self._verified(name, lambda piece: None)


def _reason(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@functools.cache
def _header_class() -> type[Message]:
    """A message type with OtaManifest's `HEADER_FIELDS` (same numbers and types), built once."""
    full = pb.OtaManifest.DESCRIPTOR
    proto = descriptor_pb2.DescriptorProto()
    full.CopyToProto(proto)
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{full.file.package}/ota_manifest_header.proto",
        package=full.file.package,
        syntax="proto3",
        dependency=[full.file.name],
    )
    header = file.message_type.add(name="OtaManifestHeader")
    header.field.extend(field for field in proto.field if field.name in HEADER_FIELDS)
    full.file.pool.Add(file)
    return message_factory.GetMessageClass(
        full.file.pool.FindMessageTypeByName(f"{full.file.package}.OtaManifestHeader")
    )


def _parse_manifest(data: bytes, where: str) -> pb.OtaManifest:
    header = _header_class()()
    try:
        header.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise OtaError(where, f"{MANIFEST_ENTRY}: not a valid OtaManifest ({_reason(err)})") from None
    _check_version_and_type(header, where)  # an older format is refused by name, not as garbage
    manifest = pb.OtaManifest()
    try:
        manifest.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise OtaError(where, f"{MANIFEST_ENTRY}: not a valid OtaManifest ({_reason(err)})") from None
    _check_version_and_type(manifest, where)
    return manifest


def _check_version_and_type(manifest: Message, where: str) -> None:
    if manifest.format_version != FORMAT_VERSION:
        raise OtaError(
            where,
            f"{MANIFEST_ENTRY} format_version: {manifest.format_version} is not supported "
            f"(this reader knows only {FORMAT_VERSION}; rebuild the package with this release's tools)",
        )
    if manifest.type not in (pb.OtaManifest.FULL, pb.OtaManifest.INCREMENTAL):
        raise OtaError(where, f"{MANIFEST_ENTRY} type: {manifest.type} is not FULL or INCREMENTAL")


def _check_payload_names(manifest: pb.OtaManifest, where: str) -> None:
    names = [entry.name for entry in manifest.payload]
    if names != sorted(set(names)):
        raise OtaError(where, f"{MANIFEST_ENTRY} payload: names not sorted and unique")
    for name in names:
        check_path(name, where, f"{MANIFEST_ENTRY} payload name")
        if name in SIGNED_PARTS:
            raise OtaError(where, f"{MANIFEST_ENTRY} payload: lists {name}")


def _check_operations(manifest: pb.OtaManifest, payload: dict[str, pb.PayloadEntry], where: str) -> None:
    """Every path safe and listed once; exactly PATCH and WRITE carry data, each slice inside the
    blob; every entry a partition needs present in the payload."""
    seen: set[bytes] = set()
    blob = payload.get(PAYLOAD_BLOB_ENTRY)
    for op in manifest.files:
        path = check_path(from_bytes(op.path), where, f"{MANIFEST_ENTRY} files path")
        if op.path in seen:
            raise OtaError(where, f"{MANIFEST_ENTRY} files: {escape(path)} listed twice")
        seen.add(op.path)
        if op.op not in pb.FileOperation.Op.values() or op.op == pb.FileOperation.OP_UNSPECIFIED:
            raise OtaError(where, f"{MANIFEST_ENTRY} files: {escape(path)}: unknown op {op.op}")
        if (op.op in _ENTRY_OPS) != op.HasField("data"):
            raise OtaError(
                where, f"{MANIFEST_ENTRY} files: {escape(path)}: data is set exactly for PATCH and WRITE operations"
            )
        if op.HasField("data"):
            _check_slice(op.data, blob, f"{MANIFEST_ENTRY} files: {escape(path)}: data", where)
    names: set[str] = set()
    for part in manifest.partitions:
        if not PARTITION_NAME.fullmatch(part.name) or part.name in names:
            raise OtaError(where, f"{MANIFEST_ENTRY} partitions: name {part.name!r} is invalid or listed twice")
        names.add(part.name)
        if part.entry and (part.entry not in payload or part.entry == PAYLOAD_BLOB_ENTRY):
            raise OtaError(
                where, f"{MANIFEST_ENTRY} partitions: {part.name}: entry {part.entry!r} is not in the payload"
            )


def _check_slice(data: pb.DataSlice, blob: pb.PayloadEntry | None, what: str, where: str) -> None:
    if blob is None:
        raise OtaError(where, f"{what}: the payload has no {PAYLOAD_BLOB_ENTRY}")
    if data.compression not in pb.DataSlice.Compression.values():
        raise OtaError(where, f"{what}: unknown compression {data.compression}")
    if data.offset > blob.size or data.length > blob.size - data.offset:
        raise OtaError(
            where,
            f"{what}: offset {data.offset} + length {data.length} runs past the end of "
            f"{PAYLOAD_BLOB_ENTRY} ({blob.size} bytes)",
        )


def _check_unchanged_groups(manifest: pb.OtaManifest, where: str) -> None:
    """Each unchanged group names a safe directory once, in order, with a 32-byte digest."""
    if manifest.unchanged and manifest.type != pb.OtaManifest.INCREMENTAL:
        raise OtaError(where, f"{MANIFEST_ENTRY} unchanged: only an INCREMENTAL package has unchanged paths")
    previous: bytes | None = None
    for group in manifest.unchanged:
        shown = escape(from_bytes(group.directory)) or "(the root)"
        if group.directory:
            check_path(from_bytes(group.directory), where, f"{MANIFEST_ENTRY} unchanged directory")
        if previous is not None and group.directory <= previous:
            raise OtaError(where, f"{MANIFEST_ENTRY} unchanged: {shown}: directories not sorted and unique")
        previous = group.directory
        if len(group.sha256) != 32 or group.count == 0:
            raise OtaError(where, f"{MANIFEST_ENTRY} unchanged: {shown}: needs a count and a 32-byte sha256")


def open_package(path: str, limits: Limits = Limits()) -> Package:
    """Opens and checks `path` (see the module docstring); use as a context manager."""
    return Package(path, limits)
