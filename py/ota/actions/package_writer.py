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

import functools
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
from ota.actions.content_cache import ByContent
from ota.actions.patch_info import BSDIFF, IMGDIFF, IMGDIFF_ZIP, UNCHANGED, WHOLE, FilePatch
from ota.errors import OtaError, UsageError
from ota.format import jsonio, unchanged
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
from ota.format.paths import check_path, escape, sort_key, to_bytes
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

# What a persistent worker keeps for its next request, each found by the bytes it was made from
# (py/ota/actions/content_cache.py): checked manifests by their files' SHA-256 and patch infos by
# their bytes, a shard's listing by its bytes once every check that needs nothing else has passed,
# and how a whole file goes into payload.bin (its deflated bytes, or None when stored is smaller)
# by the SHA-256 its bytes were just checked to have.
_MANIFESTS: ByContent[bytes, dict[str, tree.ManifestRow]] = ByContent()
_PATCH_INFOS: ByContent[bytes, FilePatch] = ByContent()
_SHARD_LISTINGS: ByContent[bytes, _ShardListing | None] = ByContent()
# 64 MiB of deflated whole files: all of them for the trees of docs/scale.md (4 MB at 7,000 files).
_DEFLATED: ByContent[str, bytes | None] = ByContent(budget=64 << 20, cost=lambda packed: len(packed or b""))
_CACHES = (_MANIFESTS, _PATCH_INFOS, _SHARD_LISTINGS, _DEFLATED)


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


def _string(item: dict[str, Any], key: str, where: str, listing: str, name: str) -> str:
    """item[key], checked as jsonio.get checks a str; the field is named `<listing> <name>: <key>`,
    with `name` escaped only for a message (a params file lists 1,000s of files)."""
    value = item.get(key)
    return value if isinstance(value, str) else jsonio.get(item, key, str, where, f"{listing} {escape(name)}: {key}")


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
                _patch_info(_string(item, "info", path, field_name, key)),
                _string(item, "data", path, field_name, key),
            )
            for key, item in items.items()
        }

    params = Params(
        full=kind == "FULL",
        downgrade=jsonio.get(doc, "downgrade", bool, path),
        source=None if raw_source is None else _build(raw_source, path, "source"),
        target=_build(jsonio.get(doc, "target", dict, path), path, "target"),
        file_patches=produced(patches, "file_patches"),
        whole_files={key: _string(item, "file", path, "whole_files", key) for key, item in wholes.items()},
        partitions=produced(parts, "partitions"),
    )
    shard_dirs = jsonio.get(doc, "file_patch_shards", list, path) if "file_patch_shards" in doc else []
    add_shard_results(params, shard_dirs, path)
    return params


def _patch_info(path: str) -> FilePatch:
    """FilePatch.load, through the worker's cache."""
    raw = jsonio.read_raw(path)
    return _PATCH_INFOS.get(raw, lambda: FilePatch.from_json(jsonio.loads(raw, path), path))


def _manifest(path: str) -> dict[str, tree.ManifestRow]:
    """A system manifest's rows by path (tree.manifest_rows), through the worker's cache (found by
    the SHA-256 of its bytes, so the cache does not hold megabytes of JSON as keys)."""
    raw = jsonio.read_raw(path)
    return _MANIFESTS.get(hashlib.sha256(raw).digest(), lambda: tree.manifest_rows(jsonio.loads(raw, path), path))


@dataclass(frozen=True)
class _ShardListing:
    """A shard's results.json that passed every check needing nothing but its own bytes."""

    shard: int
    shards: int
    results: tuple[tuple[str, str, str], ...]  # (path, info, data) as listed


def _plain_listing(raw: bytes, listing: str) -> _ShardListing | None:
    """The listing, if `add_shard_results` would find nothing wrong in it on its own; None if it
    might (that function then checks it step by step and says what is wrong). Malformed JSON is
    an OtaError here, as it was first of all there."""
    doc = jsonio.loads(raw, listing)
    if not isinstance(doc, dict):
        return None
    shard, shards, items = doc.get("shard"), doc.get("shards"), doc.get("results")
    if type(shard) is not int or type(shards) is not int or not 0 <= shard < shards or type(items) is not list:
        return None
    results = []
    for item in items:
        if not isinstance(item, dict):
            return None
        name, info, data = item.get("path"), item.get("info"), item.get("data")
        if type(name) is not str or type(info) is not str or type(data) is not str:
            return None
        try:
            check_path(name, "")
        except OtaError:
            return None
        if shard_layout.shard_of(name, shards) != shard:
            return None
        results.append((name, info, data))
    return _ShardListing(shard, shards, tuple(results))


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
        raw = jsonio.read_raw(listing)
        plain = _SHARD_LISTINGS.get(raw, functools.partial(_plain_listing, raw, listing))
        if plain is None:
            _add_listing_step_by_step(params, jsonio.loads(raw, listing), listing, raw_dir, len(shard_dirs), seen)
            continue
        _check_shard_number(plain.shard, plain.shards, listing, len(shard_dirs), seen)
        for name, info, data in plain.results:
            _refuse_twice(params, name, listing)
            _add_result(params, name, os.path.join(raw_dir, info), os.path.join(raw_dir, data))


def _check_shard_number(shard: int, shards: int, listing: str, count: int, seen: set[int]) -> None:
    if shards != count or not 0 <= shard < shards or shard in seen:
        raise OtaError(listing, f"shard {shard} of {shards} does not fit {count} file_patch_shards")
    seen.add(shard)


def _add_listing_step_by_step(params: Params, doc: Any, listing: str, raw_dir: str, count: int, seen: set[int]) -> None:
    """A listing `_plain_listing` has doubts about, checked in the order its messages promise."""
    shard, shards = jsonio.get(doc, "shard", int, listing), jsonio.get(doc, "shards", int, listing)
    _check_shard_number(shard, shards, listing, count, seen)
    for number, item in enumerate(jsonio.get(doc, "results", list, listing)):
        name = jsonio.get_path(item, "path", listing, f"results[{number}].path")
        if shard_layout.shard_of(name, shards) != shard:
            raise OtaError(
                listing, f"{escape(name)}: belongs to shard {shard_layout.shard_of(name, shards)}, not {shard}"
            )
        _refuse_twice(params, name, listing)
        info_file = os.path.join(raw_dir, jsonio.get(item, "info", str, listing, f"{name}: info"))
        data = os.path.join(raw_dir, jsonio.get(item, "data", str, listing, f"{name}: data"))
        _add_result(params, name, info_file, data)


def _refuse_twice(params: Params, name: str, listing: str) -> None:
    if name in params.file_patches or name in params.whole_files:
        raise OtaError(listing, f"{name}: listed twice")


def _add_result(params: Params, name: str, info_file: str, data: str) -> None:
    info = _patch_info(info_file)
    if info.method == WHOLE and info.source is None:
        params.whole_files[name] = data
    else:
        params.file_patches[name] = Produced(name, info, data)


@dataclass
class _Payload:
    """Zip entries collected while the manifest is built, with their checked contents."""

    sources: list[zipwrite.ZipSource] = field(default_factory=list)
    infos: dict[str, zipwrite.Written] = field(default_factory=dict)

    def add(self, name: str, file: str, compression: zipwrite.Compression, want: str, why: str) -> None:
        """Adds `file` as entry `name`, checking its SHA-256 is `want`, what the manifest will promise."""
        size, sha256 = _size_and_sha256(file)
        _check_sha256(file, sha256, want, lambda: why)
        self.sources.append(zipwrite.ZipSource(name, compression, file=file))
        self.infos[name] = zipwrite.Written(name, size, sha256)

    def add_blob(self, blob: _Blob, file: str) -> None:
        """Adds the finished `payload.bin` at `file`, whose contents `blob` counted as it wrote them."""
        self.sources.append(zipwrite.ZipSource(PAYLOAD_BLOB_ENTRY, zipwrite.Compression.STORED, file=file))
        self.infos[PAYLOAD_BLOB_ENTRY] = blob.written(PAYLOAD_BLOB_ENTRY)


def _check_sha256(file: str, actual: str, want: str, why: Callable[[], str]) -> None:
    """`why` makes the message's text only when it is needed (it escapes a path)."""
    if actual != want:
        raise OtaError(file, f"sha256 {actual} is not the {why()} sha256 {want} (stale or mixed-up input?)")


@dataclass
class _Blob:
    """`payload.bin` being written: every file's data back to back, in manifest order.

    A whole file is raw-deflated (level 9, as zipwrite does) when that is smaller, else stored;
    the choice is a function of the bytes alone, so the package stays byte-reproducible, and so
    is the deflated stream: the worker keeps both for its next request (`_DEFLATED`), where a
    rebuild finds every whole file but the edited one. Files are streamed, never held whole (but
    for a deflated stream the cache may keep). The blob's size and SHA-256 are counted as it is
    written, for its entry in the manifest's payload list.
    """

    stream: Any
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def append(
        self, file: str, data: pb.DataSlice, want: str, why: Callable[[], str], deflate_if_smaller: bool
    ) -> None:
        """Appends `file`, checking on the way that its SHA-256 is `want` (why() names whose)."""
        start = self.size
        deflated = deflate_if_smaller and self._deflated(file, want, why)
        if not deflated:
            self._copy(file, want, why)
        data.offset, data.length = start, self.size - start
        data.compression = pb.DataSlice.DEFLATED if deflated else pb.DataSlice.STORED

    def _deflated(self, file: str, want: str, why: Callable[[], str]) -> bool:
        """Writes the file deflated if that is smaller, and says so; otherwise writes nothing.

        Without a kept answer, one read hashes and deflates, collecting the deflated bytes for
        `_DEFLATED` while they fit its budget; a file that does not shrink is then taken back out.
        """
        kept, packed = _DEFLATED.find(want)
        if kept:
            if packed is not None:
                _check_sha256(file, _size_and_sha256(file)[1], want, why)
                self._write(packed)
            return packed is not None
        packer = zlib.compressobj(zipwrite.DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        start, before, raw_size, digest = self.size, self.digest.copy(), 0, hashlib.sha256()
        pieces: list[bytes] | None = []
        for chunk in fileio.read_chunks(file):
            digest.update(chunk)
            raw_size += len(chunk)
            pieces = self._write_collected(packer.compress(chunk), pieces, start)
        pieces = self._write_collected(packer.flush(), pieces, start)
        _check_sha256(file, digest.hexdigest(), want, why)
        if self.size - start < raw_size:
            if pieces is not None:
                _DEFLATED.keep(want, b"".join(pieces))
            return True
        self.stream.seek(start)
        self.stream.truncate()
        self.size, self.digest = start, before
        _DEFLATED.keep(want, None)
        return False

    def _write_collected(self, piece: bytes, pieces: list[bytes] | None, start: int) -> list[bytes] | None:
        """Writes `piece`, adding it to `pieces` unless what started at `start` is over the budget."""
        self._write(piece)
        if pieces is None or self.size - start > _DEFLATED.budget:
            return None
        pieces.append(piece)
        return pieces

    def _copy(self, file: str, want: str, why: Callable[[], str]) -> None:
        digest = hashlib.sha256()
        for chunk in fileio.read_chunks(file):
            digest.update(chunk)
            self._write(chunk)
        _check_sha256(file, digest.hexdigest(), want, why)

    def _write(self, piece: bytes) -> None:
        self.stream.write(piece)
        self.digest.update(piece)
        self.size += len(piece)

    def written(self, name: str) -> zipwrite.Written:
        """What the blob holds, as the zip entry `name` will."""
        return zipwrite.Written(name, self.size, self.digest.hexdigest())


def _size_and_sha256(file: str) -> tuple[int, str]:
    size, digest = 0, hashlib.sha256()
    for chunk in fileio.read_chunks(file):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


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


def _content_of(row: tree.ManifestRow) -> ContentInfo | None:
    """A file row's contents (None for any other kind)."""
    return None if row.kind != tree.FILE else ContentInfo(row.size, row.sha256, row.sha1)  # type: ignore[arg-type]


def _unchanged_record(name: bytes, row: tree.ManifestRow) -> bytes:
    """The serialized unchanged.Record of an unchanged path whose last component is `name`."""
    if row.kind == tree.FILE:
        size, data = row.size, bytes.fromhex(row.sha256)  # type: ignore[arg-type]
    else:
        size, data = 0, to_bytes(row.target) if row.kind == tree.SYMLINK else b""  # type: ignore[arg-type]
    return unchanged.serialize(name, row.kind, row.mode, row.uid, row.gid, size, data)  # type: ignore[arg-type]


def _in_byte_order(paths: set[str]) -> list[str]:
    """`paths` sorted by sort_key. An all-ASCII set (the usual one) sorts as plain strings, in the
    same order and without a key call per path."""
    return sorted(paths) if "".join(paths).isascii() else sorted(paths, key=sort_key)


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
        target = _manifest(p.target.system_manifest)
        source = {} if p.source is None else _manifest(p.source.system_manifest)
        for name in [*p.file_patches, *p.whole_files]:
            if name not in target or target[name].kind != tree.FILE:
                raise OtaError(
                    self.where,
                    f"{escape(name)}: has a file_patches/whole_files entry but is not a file of the target build",
                )
        if p.full and p.file_patches:
            raise OtaError(self.where, f"{escape(next(iter(p.file_patches)))}: a FULL package has no file_patches")
        # A path is unchanged when its rows are equal: same kind, mode, uid, gid, contents and link
        # target, every respect the device checks, so it needs no operation.
        groups: dict[bytes, list[tuple[bytes, bytes]]] = {}
        for path in _in_byte_order(target.keys() | source.keys()):
            old, new = source.get(path), target.get(path)
            raw_path = to_bytes(path)
            if old is not None and old == new:
                if path in p.file_patches or path in p.whole_files:
                    self._check_unchanged(path, new)
                directory, name = unchanged.parent_and_name(raw_path)
                groups.setdefault(directory, []).append((name, _unchanged_record(name, new)))
                continue
            op = self.manifest.files.add(path=raw_path)
            old_content = None
            if old is not None:
                op.source_kind = _SOURCE_KIND[old.kind]
                old_content = _content_of(old)
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
                self._file(op, path, old_content, _content_of(new))  # type: ignore[arg-type]
        for directory in sorted(groups):
            count, digest = unchanged.digest_serialized(groups[directory])
            self.manifest.unchanged.add(directory=directory, count=count, sha256=digest)

    def _check_unchanged(self, path: str, new: tree.ManifestRow) -> None:
        """An unchanged path's file_patch or whole_files entry must agree; it ships nothing."""
        produced = self.params.file_patches.get(path)
        if produced is not None:
            content = _content_of(new)
            _check_matches(produced, content, content, self.where)  # type: ignore[arg-type]
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
                self.payload.add(op.entry, produced.data, _WHOLE, info.target.sha256, f"partition {name}'s target")
                continue
            if self.params.full:
                raise OtaError(
                    self.where, f"partition {name}: a FULL package ships every partition WHOLE, not {info.method}"
                )
            op.method, op.entry = _METHOD[info.method], partition_patch_entry(name)
            self.payload.add(
                op.entry, produced.data, _PATCH, info.data_sha256, f"partition {name}'s patch info data_sha256"
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
        assembler.payload.add_blob(blob, blob_path)
    assembler.partitions()
    assembler.finish()
    return assembler.manifest, assembler.payload.sources


def write_package(params_path: str, out_path: str) -> pb.OtaManifest:
    try:
        return _write_package(params_path, out_path)
    finally:
        for cache in _CACHES:
            cache.end_request()


def _write_package(params_path: str, out_path: str) -> pb.OtaManifest:
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


# Its own flags and --toolchain_identity. What outlives a request is only what the caches above
# keep, each found by content: every input (params, manifests, patch infos, data files) is read
# afresh each time, so a file rewritten at the same path between two requests is read anew.
TOOL = persistent_worker.Tool("package", __doc__ or "", (__name__, toolchain_identity.__name__), package_from_flags)


def run() -> None:
    """`package --persistent_worker`, or one run of `package [@PARAMS | flags...]`."""
    sys.exit(persistent_worker.main(sys.argv, TOOL))


if __name__ == "__main__":
    run()
