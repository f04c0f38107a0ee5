"""package --params P.json --out PKG.zip: assembles an OTA package
(docs/contracts.md#4-package-parameters).

Inputs are the two system manifests, the results of the per-path file_patch actions and the
whole target files; nothing is diffed here. The writer cross-checks everything it is handed
(each patch's recorded source and target against the manifests, each data file against its
recorded hash), because a package that disagrees with itself would only fail on a device.
The output is byte-reproducible: sorted entries, fixed zip metadata, deterministic protobuf.

Layout (docs/package-format.md): every file's patch or whole contents goes, back to back, into one
stored entry, `payload.bin` (a zip entry per file would cost more than the 3 % the package may
add to its payload); a whole file is raw-deflated there when that makes it smaller, a patch is
stored (BSDIFF40 and IMGDIFF2 are bzip2 inside); partition patches and images stay entries of
their own; manifest.pb is always deflated. A path the same in both builds gets no operation:
its directory's `unchanged` digest (py/ota/format/unchanged.py) covers it.

Bazel runs it as a persistent worker (`package --persistent_worker`, py/ota/actions/persistent_worker.py)
or one-shot as `package @PARAMS`; both run `package_from_flags` on the same arguments, so the
package bytes are the same either way.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from absl import flags

from ota.actions import persistent_worker, shard_layout, toolchain_identity, tree, zipwrite
from ota.actions.patch_info import BSDIFF, IMGDIFF, IMGDIFF_ZIP, UNCHANGED, WHOLE, FilePatch
from ota.errors import OtaError, UsageError
from ota.format import hashing, jsonio, unchanged
from ota.format.build_info import BuildInfo
from ota.format.hashing import ContentInfo
from ota.format.layout import (
    FORMAT_VERSION,
    MANIFEST_ENTRY,
    PARTITION_NAME,
    PAYLOAD_BLOB_ENTRY,
    partition_image_entry,
    partition_patch_entry,
)
from ota.format.paths import escape, sort_key, to_bytes
from ota.io import fileio
from ota.proto import ota_manifest_pb2 as pb

_WHOLE = zipwrite.Compression.SMALLEST
_PATCH = zipwrite.Compression.STORED
_METHOD = {WHOLE: pb.WHOLE, BSDIFF: pb.BSDIFF, IMGDIFF: pb.IMGDIFF, IMGDIFF_ZIP: pb.IMGDIFF_ZIP}
Op = pb.FileOperation
# What a device expects at a path of the source build (a regular file's contents are in `source`).
_SOURCE_KIND = {tree.FILE: Op.SOURCE_FILE, tree.DIR: Op.SOURCE_DIR, tree.SYMLINK: Op.SOURCE_SYMLINK}

flags.DEFINE_string(
    "params", None, "Package parameters JSON written by the ota_package rule (docs/contracts.md#4-package-parameters)."
)
flags.DEFINE_string("out", None, "Where to write the package zip.")


@dataclass(frozen=True)
class Build:
    """One side of the update, as the params name it."""

    info: BuildInfo
    system_manifest: str


@dataclass(frozen=True)
class Produced:
    """A file_patch result: its info and the data file it describes."""

    key: str
    info: FilePatch
    data: str


@dataclass(frozen=True)
class Params:
    full: bool
    downgrade: bool
    source: Build | None
    target: Build
    file_patches: dict[str, Produced]
    whole_files: dict[str, str]
    partitions: dict[str, Produced]


def _build(raw: Any, where: str, side: str) -> Build:
    manifest = jsonio.get(raw, "system_manifest", str, where, f"{side}.system_manifest")
    return Build(BuildInfo.from_json(raw, where, f"{side}."), manifest)


def _keyed(items: list[Any], key: str, where: str, field_name: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items):
        field = f"{field_name}[{index}].{key}"
        name = jsonio.get_path(item, key, where, field) if key == "path" else jsonio.get(item, key, str, where, field)
        if name in out:
            raise OtaError(where, f'{field_name}: "{escape(name)}" listed twice')
        out[name] = item
    return out


def load_params(path: str) -> Params:
    """Reads and checks the params file; every data/info/file it names is checked later."""
    doc = jsonio.read(path)
    kind = jsonio.get(doc, "type", str, path)
    if kind not in ("FULL", "INCREMENTAL"):
        raise OtaError(path, f"type: {kind!r} is not FULL or INCREMENTAL")
    raw_source = jsonio.get(doc, "source", (dict, type(None)), path)
    if (raw_source is None) != (kind == "FULL"):
        raise OtaError(path, "source: a FULL package has no source build, an INCREMENTAL one needs it")
    patches = _keyed(jsonio.get(doc, "file_patches", list, path), "path", path, "file_patches")
    wholes = _keyed(jsonio.get(doc, "whole_files", list, path), "path", path, "whole_files")
    parts = _keyed(jsonio.get(doc, "partitions", list, path), "name", path, "partitions")
    for name in parts:
        if not PARTITION_NAME.fullmatch(name):
            raise OtaError(path, f"partitions: name {name!r} must match {PARTITION_NAME.pattern}")
    both = sorted(set(patches) & set(wholes))
    if both:
        raise OtaError(path, f"{both[0]}: listed in both file_patches and whole_files")

    def produced(items: dict[str, dict[str, Any]], field_name: str) -> dict[str, Produced]:
        return {
            key: Produced(
                key,
                FilePatch.load(jsonio.get(item, "info", str, path, f"{field_name} {escape(key)}: info")),
                jsonio.get(item, "data", str, path, f"{field_name} {escape(key)}: data"),
            )
            for key, item in items.items()
        }

    params = Params(
        full=kind == "FULL",
        downgrade=jsonio.get(doc, "downgrade", bool, path),
        source=None if raw_source is None else _build(raw_source, path, "source"),
        target=_build(jsonio.get(doc, "target", dict, path), path, "target"),
        file_patches=produced(patches, "file_patches"),
        whole_files={
            key: jsonio.get(item, "file", str, path, f"whole_files {escape(key)}: file") for key, item in wholes.items()
        },
        partitions=produced(parts, "partitions"),
    )
    shard_dirs = jsonio.get(doc, "file_patch_shards", list, path) if "file_patch_shards" in doc else []
    add_shard_results(params, shard_dirs, path)
    return params


def add_shard_results(params: Params, shard_dirs: list[Any], where: str) -> None:
    """Adds what the file_patch_shard actions produced (docs/contracts.md#11-tar-trees-and-patch-shards).

    A result with no source (a file new in the target, or any file of a full package) is a whole
    file; every other result is a file patch. Each shard must be one of a complete set, and each
    path must belong to its shard, so shards of different splits cannot be mixed up.
    """
    seen: set[int] = set()
    for index, raw_dir in enumerate(shard_dirs):
        if not isinstance(raw_dir, str):
            raise OtaError(where, f"file_patch_shards[{index}]: expected a directory path")
        listing = os.path.join(raw_dir, shard_layout.RESULTS)
        doc = jsonio.read(listing)
        shard, shards = jsonio.get(doc, "shard", int, listing), jsonio.get(doc, "shards", int, listing)
        if shards != len(shard_dirs) or not 0 <= shard < shards or shard in seen:
            raise OtaError(listing, f"shard {shard} of {shards} does not fit {len(shard_dirs)} file_patch_shards")
        seen.add(shard)
        for number, item in enumerate(jsonio.get(doc, "results", list, listing)):
            name = jsonio.get_path(item, "path", listing, f"results[{number}].path")
            if shard_layout.shard_of(name, shards) != shard:
                raise OtaError(
                    listing, f"{escape(name)}: belongs to shard {shard_layout.shard_of(name, shards)}, not {shard}"
                )
            if name in params.file_patches or name in params.whole_files:
                raise OtaError(listing, f"{name}: listed twice")
            info_file = os.path.join(raw_dir, jsonio.get(item, "info", str, listing, f"{name}: info"))
            data = os.path.join(raw_dir, jsonio.get(item, "data", str, listing, f"{name}: data"))
            info = FilePatch.load(info_file)
            if info.method == WHOLE and info.source is None:
                params.whole_files[name] = data
            else:
                params.file_patches[name] = Produced(name, info, data)


@dataclass
class _Payload:
    """Zip entries collected while the manifest is built, with their checked contents."""

    sources: list[zipwrite.ZipSource] = field(default_factory=list)
    infos: dict[str, ContentInfo] = field(default_factory=dict)

    def add(
        self,
        name: str,
        file: str,
        compression: zipwrite.Compression,
        expected: ContentInfo | None = None,
        expected_sha256: str | None = None,
        why: str = "",
    ) -> None:
        """Adds `file` as entry `name`, checking it holds what the manifest will promise."""
        actual = _checked(file, expected.sha256 if expected is not None else expected_sha256, why)
        self.sources.append(zipwrite.ZipSource(name, compression, file=file))
        self.infos[name] = actual


def _checked(file: str, want: str | None, why: str) -> ContentInfo:
    """The file's ContentInfo, if its SHA-256 is `want` (None: anything)."""
    actual = hashing.of_file(file)
    if want is not None:
        _check_sha256(file, actual.sha256, want, lambda: why)
    return actual


def _check_sha256(file: str, actual: str, want: str, why: Callable[[], str]) -> None:
    """`why` makes the message's text only when it is needed (it escapes a path)."""
    if actual != want:
        raise OtaError(file, f"sha256 {actual} is not the {why()} sha256 {want} (stale or mixed-up input?)")


@dataclass
class _Blob:
    """`payload.bin` being written: every file's data back to back, in manifest order.

    A whole file is raw-deflated (level 9, as zipwrite does) when that is smaller, else stored;
    the choice is a function of the bytes alone, so the package stays byte-reproducible. Files are
    streamed, never held whole.
    """

    stream: Any
    size: int = 0

    def append(
        self, file: str, data: pb.DataSlice, want: str, why: Callable[[], str], deflate_if_smaller: bool
    ) -> None:
        """Appends `file`, checking on the way that its SHA-256 is `want` (why() names whose).

        One read hashes and writes it (deflated, when it may be); only a file that does not
        shrink is read again, to be stored instead, over the deflated bytes.
        """
        packer = (
            zlib.compressobj(zipwrite.DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS) if deflate_if_smaller else None
        )
        start, raw_size, digest = self.size, 0, hashlib.sha256()
        for chunk in fileio.read_chunks(file):
            digest.update(chunk)
            raw_size += len(chunk)
            self._write(packer.compress(chunk) if packer else chunk)
        if packer:
            self._write(packer.flush())
        _check_sha256(file, digest.hexdigest(), want, why)
        if packer and self.size - start >= raw_size:
            self.stream.seek(start)
            self.stream.truncate()
            self.size, packer = start, None
            for chunk in fileio.read_chunks(file):
                self._write(chunk)
        data.offset, data.length = start, self.size - start
        data.compression = pb.DataSlice.DEFLATED if packer else pb.DataSlice.STORED

    def _write(self, piece: bytes) -> None:
        self.stream.write(piece)
        self.size += len(piece)


def _file_content(message: pb.FileContent, info: ContentInfo) -> None:
    message.size, message.sha256 = info.size, bytes.fromhex(info.sha256)


def _content(message: pb.ContentInfo, info: ContentInfo) -> None:
    message.size, message.sha256, message.sha1 = info.size, info.sha256, info.sha1


def _check_matches(produced: Produced, source: ContentInfo | None, target: ContentInfo, where: str) -> None:
    """A file_patch result must describe exactly the manifests' source and target contents."""
    info = produced.info
    if info.path != produced.key:
        raise OtaError(where, f'{escape(produced.key)}: its info file says path "{escape(info.path)}"')
    if info.target != target:
        raise OtaError(
            where,
            f"{escape(produced.key)}: patch info target {info.target.sha256} is not the target build's {target.sha256}",
        )
    if info.method != WHOLE and info.source != source:
        have = "absent" if source is None else source.sha256
        raise OtaError(
            where,
            f"{escape(produced.key)}: patch info source {info.source.sha256} is not the source build's ({have})",  # type: ignore[union-attr]
        )


def _same(old: tree.TreeEntry, new: tree.TreeEntry) -> bool:
    """Whether a path is unchanged in every respect the device checks (so it needs no operation)."""
    return (
        old.kind == new.kind
        and (old.mode, old.uid, old.gid) == (new.mode, new.uid, new.gid)
        and old.content == new.content
        and old.target == new.target
    )


def _record(entry: tree.TreeEntry) -> unchanged.Record:
    name = unchanged.parent_and_name(to_bytes(entry.path))[1]
    if entry.kind == tree.FILE:
        assert entry.content is not None  # a system manifest's file has its content
        size, data = entry.content.size, bytes.fromhex(entry.content.sha256)
    else:
        size, data = 0, to_bytes(entry.target) if entry.kind == tree.SYMLINK else b""  # type: ignore[arg-type]
    return unchanged.Record(name, entry.kind, entry.mode, entry.uid, entry.gid, size, data)


class _Assembler:
    def __init__(self, params: Params, where: str, blob: _Blob) -> None:
        self.params = params
        self.where = where
        self.payload = _Payload()
        self.blob = blob
        self.manifest = pb.OtaManifest(format_version=FORMAT_VERSION)

    def states(self) -> None:
        p, m = self.params, self.manifest
        m.type = pb.OtaManifest.FULL if p.full else pb.OtaManifest.INCREMENTAL
        m.downgrade = p.downgrade
        m.postcondition.device.append(p.target.info.device)
        m.postcondition.build_fingerprint.append(p.target.info.fingerprint)
        m.postcondition.timestamp = p.target.info.timestamp
        if p.source is None:
            m.precondition.device.append(p.target.info.device)
            return
        if p.source.info.device != p.target.info.device:
            raise OtaError(
                self.where,
                f"target.device {p.target.info.device!r} differs from source.device {p.source.info.device!r}",
            )
        older = p.target.info.timestamp < p.source.info.timestamp
        if older and not p.downgrade:
            raise OtaError(
                self.where,
                f"target.timestamp {p.target.info.timestamp} is older than source.timestamp "
                f"{p.source.info.timestamp}: set downgrade to build a downgrade package",
            )
        if p.downgrade and not older:
            raise OtaError(self.where, "downgrade: set, but the target build is not older than the source build")
        m.precondition.device.append(p.source.info.device)
        m.precondition.build_fingerprint.append(p.source.info.fingerprint)
        m.precondition.timestamp = p.source.info.timestamp

    def files(self) -> None:
        p = self.params
        target = {e.path: e for e in tree.load_manifest(p.target.system_manifest)}
        source = {} if p.source is None else {e.path: e for e in tree.load_manifest(p.source.system_manifest)}
        for name in [*p.file_patches, *p.whole_files]:
            if name not in target or target[name].kind != tree.FILE:
                raise OtaError(
                    self.where,
                    f"{escape(name)}: has a file_patches/whole_files entry but is not a file of the target build",
                )
        if p.full and p.file_patches:
            raise OtaError(self.where, f"{escape(next(iter(p.file_patches)))}: a FULL package has no file_patches")
        groups: dict[bytes, list[unchanged.Record]] = {}
        for path in sorted(set(target) | set(source), key=sort_key):
            old, new = source.get(path), target.get(path)
            old_content = old.content if old is not None and old.kind == tree.FILE else None
            if old is not None and new is not None and _same(old, new):
                self._check_unchanged(path, new)
                groups.setdefault(unchanged.parent_and_name(to_bytes(path))[0], []).append(_record(new))
                continue
            op = self.manifest.files.add(path=to_bytes(path))
            if old is not None:
                op.source_kind = _SOURCE_KIND[old.kind]
            if old_content is not None:
                _file_content(op.source, old_content)
            if new is None:
                op.op = Op.DELETE
                continue
            op.mode, op.uid, op.gid = new.mode, new.uid, new.gid
            if new.kind == tree.DIR:
                op.op = Op.MKDIR
            elif new.kind == tree.SYMLINK:
                op.op, op.symlink_target = Op.SYMLINK, to_bytes(new.target)  # type: ignore[arg-type]
            else:
                self._file(op, path, old_content, new.content)  # type: ignore[arg-type]
        for directory in sorted(groups):
            count, digest = unchanged.digest(groups[directory])
            self.manifest.unchanged.add(directory=directory, count=count, sha256=digest)

    def _check_unchanged(self, path: str, new: tree.TreeEntry) -> None:
        """An unchanged path's file_patch result (if any) must agree; it ships nothing."""
        produced = self.params.file_patches.get(path)
        if produced is not None:
            _check_matches(produced, new.content, new.content, self.where)  # type: ignore[arg-type]
            if produced.info.method != UNCHANGED:
                raise OtaError(
                    self.where, f"{escape(path)}: unchanged, but its file_patch result is {produced.info.method}"
                )
        if path in self.params.whole_files:
            raise OtaError(self.where, f"{escape(path)}: unchanged, but listed in whole_files")

    def _file(self, op: pb.FileOperation, path: str, old: ContentInfo | None, new: ContentInfo) -> None:
        _file_content(op.target, new)
        produced = self.params.file_patches.get(path)
        whole = self.params.whole_files.get(path)
        if produced is not None:
            _check_matches(produced, old, new, self.where)
            method = produced.info.method
            if method == UNCHANGED:
                op.op = Op.KEEP
            elif method == WHOLE:
                op.op, op.method = Op.WRITE, pb.WHOLE
                self._append(op, produced.data, new.sha256, lambda: f"target of {escape(path)}", True)
            else:
                op.op, op.method = Op.PATCH, _METHOD[method]
                why = lambda: f"patch info's data_sha256 of {escape(path)}"  # noqa: E731
                self._append(op, produced.data, produced.info.data_sha256, why, False)
        elif whole is not None:
            op.op, op.method = Op.WRITE, pb.WHOLE
            self._append(op, whole, new.sha256, lambda: f"target manifest's {escape(path)}", True)
        elif self.params.full:
            raise OtaError(self.where, f"{escape(path)}: a FULL package needs every target file in whole_files")
        elif old is not None and old == new:
            op.op = Op.KEEP
        else:
            raise OtaError(
                self.where,
                f"{escape(path)}: {'changed' if old else 'new'} in the target build but has no "
                "file_patches or whole_files entry",
            )

    def _append(self, op: pb.FileOperation, file: str, want: str, why: Callable[[], str], deflate: bool) -> None:
        """Appends `file` to the blob at `op.data`, checking it holds what the manifest promises."""
        self.blob.append(file, op.data, want, why, deflate)

    def partitions(self) -> None:
        for name in sorted(self.params.partitions):
            produced = self.params.partitions[name]
            info = produced.info
            op = self.manifest.partitions.add(name=name)
            _content(op.target, info.target)
            if info.source is not None and not self.params.full:
                _content(op.source, info.source)
            if info.method == UNCHANGED:
                if self.params.full:
                    raise OtaError(self.where, f"partition {name}: a FULL package ships every partition WHOLE")
                continue  # verify-only: no entry, no method
            if info.method == WHOLE:
                op.method, op.entry = pb.WHOLE, partition_image_entry(name)
                self.payload.add(op.entry, produced.data, _WHOLE, info.target, why=f"partition {name}'s target")
                continue
            if self.params.full:
                raise OtaError(
                    self.where, f"partition {name}: a FULL package ships every partition WHOLE, not {info.method}"
                )
            op.method, op.entry = _METHOD[info.method], partition_patch_entry(name)
            self.payload.add(
                op.entry,
                produced.data,
                _PATCH,
                expected_sha256=info.data_sha256,
                why=f"partition {name}'s patch info data_sha256",
            )

    def finish(self) -> None:
        """cache_bytes_required and the payload list (see docs/package-format.md for why)."""
        m = self.manifest
        backup = max(
            (op.source.size for op in m.partitions if op.method in (pb.BSDIFF, pb.IMGDIFF, pb.IMGDIFF_ZIP)), default=0
        )
        staged = sum(info.size for name, info in self.payload.infos.items() if name.startswith("patch/"))
        staged += sum(op.data.length for op in m.files if op.op == Op.PATCH)
        m.cache_bytes_required = backup + staged
        for name in sorted(self.payload.infos):
            info = self.payload.infos[name]
            m.payload.add(name=name, size=info.size, sha256=info.sha256)


def assemble(params: Params, where: str, blob_path: str) -> tuple[pb.OtaManifest, list[zipwrite.ZipSource]]:
    """The manifest and the zip entries (manifest.pb excluded) of the package `params` describe;
    every file's data is written to `blob_path`, which becomes `payload.bin` if anything is in it."""
    with open(blob_path, "wb") as stream:
        blob = _Blob(stream)
        assembler = _Assembler(params, where, blob)
        assembler.states()
        assembler.files()
    if any(op.HasField("data") for op in assembler.manifest.files):
        assembler.payload.add(PAYLOAD_BLOB_ENTRY, blob_path, zipwrite.Compression.STORED)
    assembler.partitions()
    assembler.finish()
    return assembler.manifest, assembler.payload.sources


def write_package(params_path: str, out_path: str) -> pb.OtaManifest:
    params = load_params(params_path)
    with tempfile.TemporaryDirectory(prefix="package.", dir=os.path.dirname(os.path.abspath(out_path))) as work:
        manifest, sources = assemble(params, params_path, os.path.join(work, PAYLOAD_BLOB_ENTRY))
        data = manifest.SerializeToString(deterministic=True)
        written = zipwrite.write_zip(
            out_path, [*sources, zipwrite.ZipSource(MANIFEST_ENTRY, zipwrite.Compression.DEFLATED, data=data)]
        )
    expected = {entry.name: (entry.size, entry.sha256) for entry in manifest.payload}
    for entry in written:
        if entry.name != MANIFEST_ENTRY and expected[entry.name] != (entry.size, entry.sha256):
            raise OtaError(out_path, f"entry {entry.name}: input changed while the package was written")
    return manifest


def package_from_flags(values: flags.FlagValues, rest: Sequence[str]) -> None:
    """One package from parsed flag `values` (a persistent worker's private copy per request, or
    the one-shot run's) and the leftover arguments `rest`."""
    toolchain_identity.verify(values.toolchain_identity)
    if len(rest) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(rest[1:])}")
    if not values.params or not values.out:
        raise UsageError("--params and --out are required")
    write_package(values.params, values.out)


# Its own flags and --toolchain_identity. Nothing else outlives a request: the writer keeps no
# module-level state, and what it reads (params, manifests, patch infos, data files) is read
# afresh each time, so a file rewritten at the same path between two requests is read anew.
TOOL = persistent_worker.Tool("package", __doc__ or "", (__name__, toolchain_identity.__name__), package_from_flags)


def run() -> None:
    """`package --persistent_worker`, or one run of `package [@PARAMS | flags...]`."""
    sys.exit(persistent_worker.main(sys.argv, TOOL))


if __name__ == "__main__":
    run()
