"""Opens an OTA package zip without trusting anything in it (contract 7).

The device side (ota_apply, signature checks, ota_inspect) gets its bytes only through here.
Opening checks the zip's shape against the manifest: entry count and sizes within limits, no
duplicate names, no entry the manifest does not list and no listed entry missing, sizes equal,
safe names, every operation's entry present. Reading an entry stops after the size the manifest
declares (plus one byte, to notice more) and checks the SHA-256 before handing bytes out, so a
zip bomb, a truncated download or a swapped entry is a one-line OtaError, never a crash or a
gigabyte allocation. The manifest's authenticity is the signature check's job, not this module's.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from google.protobuf.message import DecodeError

from ota.build.layout import FORMAT_VERSION, MANIFEST_ENTRY, PARTITION_NAME, SIGNATURE_ENTRY
from ota.build.paths import check_path
from ota.errors import OtaError
from ota.proto import ota_manifest_pb2 as pb

_CHUNK = 1 << 20
# Everything zipfile and zlib raise for damaged archives; all of it is bad input here.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
               NotImplementedError, RuntimeError, OverflowError, UnicodeDecodeError)
_ENTRY_OPS = (pb.FileOperation.PATCH, pb.FileOperation.WRITE)


@dataclass(frozen=True)
class Limits:
    """Bounds on what a package may make us allocate or walk."""

    max_entries: int = 100_000
    max_manifest_bytes: int = 64 << 20
    max_signature_bytes: int = 64 << 10
    max_read_bytes: int = 1 << 31  # `read` keeps an entry in memory; `copy_to` streams any size


class Package:
    """An opened package: `manifest`, its raw `manifest_bytes`, the optional `signature` bytes."""

    def __init__(self, path: str, limits: Limits = Limits()) -> None:
        self.path = path
        self.limits = limits
        try:
            self._zip = zipfile.ZipFile(path)
        except _ZIP_ERRORS as err:
            raise OtaError(path, f"not a readable zip file ({_reason(err)})") from None
        try:
            self._infos = self._check_zip()
            self.manifest_bytes = self._read_raw(MANIFEST_ENTRY, limits.max_manifest_bytes)
            self.manifest = _parse_manifest(self.manifest_bytes, path)
            self.payload = {entry.name: entry for entry in self.manifest.payload}
            self._check_payload()
            self.signature = (self._read_raw(SIGNATURE_ENTRY, limits.max_signature_bytes)
                              if SIGNATURE_ENTRY in self._infos else None)
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def _check_zip(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > self.limits.max_entries:
            raise OtaError(self.path, f"zip: {len(infos)} entries, more than the limit of {self.limits.max_entries}")
        by_name: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.filename in by_name:
                raise OtaError(self.path, f"zip entry {info.filename!r}: appears twice")
            if info.flag_bits & 0x1:
                raise OtaError(self.path, f"zip entry {info.filename!r}: encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise OtaError(self.path, f"zip entry {info.filename!r}: compression method {info.compress_type} "
                                          "is not stored (0) or deflate (8)")
            by_name[info.filename] = info
        if MANIFEST_ENTRY not in by_name:
            raise OtaError(self.path, f"{MANIFEST_ENTRY}: missing")
        return by_name

    def _check_payload(self) -> None:
        names = [entry.name for entry in self.manifest.payload]
        if names != sorted(set(names)):
            raise OtaError(self.path, f"{MANIFEST_ENTRY} payload: names not sorted and unique")
        for entry in self.manifest.payload:
            check_path(entry.name, self.path, f"{MANIFEST_ENTRY} payload name")
            if entry.name in (MANIFEST_ENTRY, SIGNATURE_ENTRY):
                raise OtaError(self.path, f"{MANIFEST_ENTRY} payload: lists {entry.name}")
            info = self._infos.get(entry.name)
            if info is None:
                raise OtaError(self.path, f"payload entry {entry.name}: missing from the zip")
            if info.file_size != entry.size:
                raise OtaError(self.path, f"zip entry {entry.name}: {info.file_size} bytes, the manifest says {entry.size}")
        for name in self._infos:
            if name not in self.payload and name not in (MANIFEST_ENTRY, SIGNATURE_ENTRY):
                raise OtaError(self.path, f"zip entry {name!r}: not listed in the manifest payload")
        _check_operations(self.manifest, self.payload, self.path)

    def _stream(self, name: str, declared: int, sink: BinaryIO | bytearray) -> str:
        """Copies entry `name` into `sink`, refusing more than `declared` bytes; returns sha256."""
        digest = hashlib.sha256()
        total = 0
        try:
            with self._zip.open(self._infos[name]) as stream:
                while chunk := stream.read(min(_CHUNK, declared - total + 1)):
                    total += len(chunk)
                    if total > declared:
                        raise OtaError(self.path, f"zip entry {name}: holds more than its declared {declared} bytes")
                    digest.update(chunk)
                    if isinstance(sink, bytearray):
                        sink += chunk
                    else:
                        sink.write(chunk)
        except _ZIP_ERRORS as err:
            raise OtaError(self.path, f"zip entry {name}: unreadable ({_reason(err)})") from None
        if total != declared:
            raise OtaError(self.path, f"zip entry {name}: holds {total} bytes, not its declared {declared}")
        return digest.hexdigest()

    def _read_raw(self, name: str, limit: int) -> bytes:
        size = self._infos[name].file_size
        if size > limit:
            raise OtaError(self.path, f"{name}: {size} bytes, more than the limit of {limit}")
        out = bytearray()
        self._stream(name, size, out)
        return bytes(out)

    def _verified(self, name: str, sink: BinaryIO | bytearray) -> None:
        entry = self.payload.get(name)
        if entry is None:
            raise OtaError(self.path, f"{name}: not a payload entry of this package")
        sha256 = self._stream(name, entry.size, sink)
        if sha256 != entry.sha256:
            raise OtaError(self.path, f"zip entry {name}: sha256 {sha256} does not match the manifest's {entry.sha256}")

    def read(self, name: str) -> bytes:
        """The bytes of payload entry `name`, checked against the manifest's size and SHA-256."""
        size = self.payload[name].size if name in self.payload else 0
        if size > self.limits.max_read_bytes:
            raise OtaError(self.path, f"{name}: {size} bytes, more than the in-memory limit of {self.limits.max_read_bytes}")
        out = bytearray()
        self._verified(name, out)
        return bytes(out)

    def copy_to(self, name: str, stream: BinaryIO) -> None:
        """Streams payload entry `name` into `stream`; on OtaError what was written is garbage."""
        self._verified(name, stream)

    def verify_all(self) -> None:
        """Reads every payload entry once, checking sizes and hashes (ota_inspect, tests)."""
        for name in self.payload:
            self._verified(name, _Discard())


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def _reason(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _parse_manifest(data: bytes, where: str) -> pb.OtaManifest:
    manifest = pb.OtaManifest()
    try:
        manifest.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise OtaError(where, f"{MANIFEST_ENTRY}: not a valid OtaManifest ({_reason(err)})") from None
    if manifest.format_version != FORMAT_VERSION:
        raise OtaError(where, f"{MANIFEST_ENTRY} format_version: {manifest.format_version} is not supported "
                              f"(this reader knows {FORMAT_VERSION})")
    if manifest.type not in (pb.OtaManifest.FULL, pb.OtaManifest.INCREMENTAL):
        raise OtaError(where, f"{MANIFEST_ENTRY} type: {manifest.type} is not FULL or INCREMENTAL")
    return manifest


def _check_operations(manifest: pb.OtaManifest, payload: dict[str, pb.PayloadEntry], where: str) -> None:
    """Every path safe and listed once, every entry an operation needs present in the payload."""
    seen: set[str] = set()
    for op in manifest.files:
        check_path(op.path, where, f"{MANIFEST_ENTRY} files path")
        if op.path in seen:
            raise OtaError(where, f"{MANIFEST_ENTRY} files: {op.path} listed twice")
        seen.add(op.path)
        if op.op not in pb.FileOperation.Op.values() or op.op == pb.FileOperation.OP_UNSPECIFIED:
            raise OtaError(where, f"{MANIFEST_ENTRY} files: {op.path}: unknown op {op.op}")
        if op.op in _ENTRY_OPS and op.entry not in payload:
            raise OtaError(where, f"{MANIFEST_ENTRY} files: {op.path}: entry {op.entry!r} is not in the payload")
    names: set[str] = set()
    for part in manifest.partitions:
        if not PARTITION_NAME.fullmatch(part.name) or part.name in names:
            raise OtaError(where, f"{MANIFEST_ENTRY} partitions: name {part.name!r} is invalid or listed twice")
        names.add(part.name)
        if part.entry and part.entry not in payload:
            raise OtaError(where, f"{MANIFEST_ENTRY} partitions: {part.name}: entry {part.entry!r} is not in the payload")


def open_package(path: str, limits: Limits = Limits()) -> Package:
    """Opens and checks `path` (see the module docstring); use as a context manager."""
    return Package(path, limits)
