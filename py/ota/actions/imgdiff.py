"""IMGDIFF2 generation: patch gzip/zip data in uncompressed space where possible.

AOSP's algorithm is docs/formats.md#generating-imgdiff2-imgdiff. Image mode cuts both files into
NORMAL runs and DEFLATE streams (gzip members), requires the two cuts to have the same shape, and
diffs each pair. A DEFLATE pair is only patched as deflate when some zlib setting reproduces the
target's compressed bytes exactly, because the applier rebuilds them by compressing. Zip mode (-z)
pairs deflated entries by name instead of by position. Beyond AOSP, gzip members with FLG bits set
are found and all 81 zlib level/memLevel pairs are tried; the resulting patches still use only
NORMAL, DEFLATE and RAW records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ota.actions import make_bsdiff
from ota.errors import OtaError
from ota.format import bsdiff, deflate, imgdiff_format, imgpatch, zipscan
from ota.format.imgdiff_format import Chunk, DeflateChunk, NormalChunk, RawChunk
from ota.io import forked

# A NORMAL chunk this small is stored as-is: a BSDIFF40 patch alone has a 32-byte header plus
# three bzip2 streams of ~40 bytes each (AOSP's threshold).
RAW_THRESHOLD = 160
DEFAULT_LIMIT = bsdiff.DEFAULT_LIMIT


@dataclass(frozen=True)
class _Piece:
    """A span of an input file: raw bytes (NORMAL) or one deflate stream with its contents."""

    start: int
    length: int
    inflated: bytes | None = None  # None for NORMAL
    name: str = ""
    params: tuple[int, int] | None = None  # (level, memLevel) that reproduces a target stream

    @property
    def is_deflate(self) -> bool:
        return self.inflated is not None

    def raw(self, data: bytes) -> bytes:
        return data[self.start : self.start + self.length]

    def view(self, data: bytes) -> memoryview:
        """The span without a copy: a search holds the target stream while the diffs' children
        are forked, and each would count a copy in its peak."""
        return memoryview(data)[self.start : self.start + self.length]

    def as_normal(self) -> _Piece:
        return _Piece(self.start, self.length)


def _merge_normals(pieces: Sequence[_Piece]) -> list[_Piece]:
    """Joins adjacent NORMAL spans (they are contiguous in the file by construction)."""
    merged: list[_Piece] = []
    for piece in pieces:
        if merged and not piece.is_deflate and not merged[-1].is_deflate:
            last = merged.pop()
            merged.append(_Piece(last.start, piece.start + piece.length - last.start))
        else:
            merged.append(piece)
    return merged


def _image_pieces(data: bytes, limit: int) -> list[_Piece]:
    """NORMAL runs around the raw deflate stream of every gzip member (header and footer are
    NORMAL). An empty file is one empty NORMAL chunk, so that it pairs with a plain file."""
    pieces: list[_Piece] = []
    pos = 0
    for member in deflate.find_gzip_members(data, limit):
        pieces.append(_Piece(pos, member.deflate_start - pos))
        pieces.append(_Piece(member.deflate_start, member.deflate_len, member.inflated))
        pos = member.footer_start
    pieces.append(_Piece(pos, len(data) - pos))
    return _merge_normals(pieces)


def _shape(pieces: Sequence[_Piece]) -> str:
    return ",".join("deflate" if p.is_deflate else "normal" for p in pieces)


def _start_pair(
    source_piece: _Piece, target_piece: _Piece, source: bytes, target: bytes
) -> deflate.PendingSearch | None:
    """The search for a DEFLATE pair's zlib setting, or None when the pair is patched as NORMAL
    bytes: its target stream did not change, inflates beyond what applypatch allows for this
    target (`imgpatch.expand_limit`), or no setting reproduces it (seen within its first bytes)."""
    target_raw = target_piece.view(target)
    if source_piece.view(source) == target_raw or len(target_piece.inflated) > imgpatch.expand_limit(len(target)):
        return None
    return deflate.start_search(target_piece.inflated, target_raw)


def _settle(
    pieces: Sequence[tuple[_Piece, _Piece]], found: Mapping[int, tuple[int, int] | None]
) -> tuple[list[_Piece], list[_Piece]]:
    """The source and target pieces once the searches of `found` (by pair index) are known: a
    reproduced target stream carries its setting, the others become NORMAL on both sides."""
    sources, targets = [src for src, _ in pieces], [tgt for _, tgt in pieces]
    for index, params in found.items():
        if params is None:
            sources[index], targets[index] = sources[index].as_normal(), targets[index].as_normal()
        else:
            targets[index] = dataclasses.replace(targets[index], params=params)
    return sources, targets


def make_image_patch(
    source: bytes,
    target: bytes,
    *,
    bonus: bytes | None = None,
    source_name: str = "source",
    target_name: str = "target",
    limit: int = DEFAULT_LIMIT,
) -> bytes:
    """Image mode: chunk both files by gzip members; their shapes must match, else OtaError."""
    try:
        return _image_patch(source, target, bonus, source_name, target_name, limit)
    finally:
        forked.release_free_memory()  # the inflated images are gone: a worker falls back to its inputs


def _image_patch(
    source: bytes, target: bytes, bonus: bytes | None, source_name: str, target_name: str, limit: int
) -> bytes:
    src_pieces, tgt_pieces = _image_pieces(source, limit), _image_pieces(target, limit)
    if _shape(src_pieces) != _shape(tgt_pieces):
        raise OtaError(
            target_name,
            f"chunk structure ({len(tgt_pieces)} chunks: {_shape(tgt_pieces)}) differs from "
            f"{source_name} ({len(src_pieces)} chunks: {_shape(src_pieces)})",
        )
    pieces = list(zip(src_pieces, tgt_pieces, strict=True))
    searches: dict[int, deflate.PendingSearch] = {}
    for index, (src, tgt) in enumerate(pieces):
        if src.is_deflate:
            search = _start_pair(src, tgt, source, target)
            if search is None:
                pieces[index] = (src.as_normal(), tgt.as_normal())
            else:
                searches[index] = search

    def pairs_for(found: Mapping[int, tuple[int, int] | None]) -> list[tuple[_Piece, _Piece]]:
        sources, targets = _settle(pieces, found)
        sources, targets = _merge_normals(sources), _merge_normals(targets)
        if bonus is not None:
            if len(sources) < 2 or not sources[1].is_deflate:
                raise OtaError(
                    source_name,
                    f"bonus data needs chunk 1 to be a changed, reproducible deflate chunk (chunks: {_shape(sources)})",
                )
            sources[1] = dataclasses.replace(sources[1], inflated=sources[1].inflated + bonus)
        return list(zip(sources, targets, strict=True))

    return _write(source, target, searches, pairs_for)


def _zip_pieces(data: bytes, where: str) -> list[_Piece]:
    """Each deflated entry whose data inflates to its recorded size, in file order."""
    pieces = []
    for entry in sorted(zipscan.read_entries(data, where), key=lambda e: e.data_start):
        if entry.method != zipscan.METHOD_DEFLATED:
            continue
        try:
            inflated = deflate.inflate_exact(
                memoryview(data)[entry.data_start : entry.data_end], entry.uncompressed_size, where, "uncompressed size"
            )
        except OtaError:
            continue  # not a clean deflate stream (e.g. encrypted): ordinary bytes
        pieces.append(_Piece(entry.data_start, entry.compressed_size, inflated, entry.name))
    return pieces


def make_zip_patch(source: bytes, target: bytes, *, source_name: str = "source", target_name: str = "target") -> bytes:
    """Zip mode: target deflated entries pair with same-named source entries; every other target
    byte is diffed against the whole source file."""
    try:
        return _zip_patch(source, target, source_name, target_name)
    finally:
        forked.release_free_memory()  # the inflated entries are gone: a worker falls back to its inputs


def _zip_patch(source: bytes, target: bytes, source_name: str, target_name: str) -> bytes:
    by_name: dict[str, _Piece] = {}
    for piece in _zip_pieces(source, source_name):
        by_name.setdefault(piece.name, piece)
    whole_source = _Piece(0, len(source))
    pieces: list[tuple[_Piece, _Piece]] = []
    searches: dict[int, deflate.PendingSearch] = {}
    pos = 0
    for tgt in _zip_pieces(target, target_name):
        if tgt.start < pos:
            continue  # overlapping entries (a crafted zip): leave the bytes to the NORMAL run
        pieces.append((whole_source, _Piece(pos, tgt.start - pos)))
        src = by_name.get(tgt.name)
        search = None if src is None else _start_pair(src, tgt, source, target)
        if search is None:
            pieces.append((whole_source, tgt.as_normal()))
        else:
            searches[len(pieces)] = search
            pieces.append((src, tgt))
        pos = tgt.start + tgt.length
    pieces.append((whole_source, _Piece(pos, len(target) - pos)))

    def pairs_for(found: Mapping[int, tuple[int, int] | None]) -> list[tuple[_Piece, _Piece]]:
        _, targets = _settle(pieces, found)
        return [(by_name[t.name] if t.is_deflate else whole_source, t) for t in _merge_normals(targets)]

    return _write(source, target, searches, pairs_for)


# What a search's child holds beyond the inputs it shares with this process: a zlib compressor
# (under 1 MiB at memLevel 9) and its output pieces of at most a few hundred KiB.
SEARCH_PEAK = 8 << 20


def _write(
    source: bytes,
    target: bytes,
    searches: Mapping[int, deflate.PendingSearch],
    pairs_for: Callable[[Mapping[int, tuple[int, int] | None]], list[tuple[_Piece, _Piece]]],
) -> bytes:
    """The patch of the chunk pairs `pairs_for` lays out once the zlib settings of the changed
    deflate streams are known.

    Finding a setting costs a full compression of the stream, as long as its diff, and the diff
    of an inflated pair does not depend on which setting it is. So the diffs start at once on the
    layout where every search ends as it began (`likely`), and the searches still racing finish
    beside them in the same pool of forked children (make_bsdiff.diff_many_beside; never in
    threads, which a fork would cut off). A search that ends otherwise (a stream that only its
    first megabyte matched) changes the layout, and only its new pairs are diffed then. The
    bytes are those of a search finished before any diff.
    """
    patches: dict[tuple[int, int, int, int, bool], bytes] = {}
    found = {index: search.finish() for index, search in searches.items() if search.race is None}
    racing = {index: search for index, search in searches.items() if index not in found}
    likely_pairs = pairs_for({index: search.likely for index, search in searches.items()})
    finished = _diff_new(
        source, target, likely_pairs, patches, [(search.finish, SEARCH_PEAK) for search in racing.values()]
    )
    found.update(zip(racing, finished, strict=True))
    pairs = pairs_for(found)
    _diff_new(source, target, pairs, patches, [])
    return _assemble(target, pairs, patches)


def _key(src: _Piece, tgt: _Piece) -> tuple[int, int, int, int, bool]:
    return (src.start, src.length, tgt.start, tgt.length, tgt.is_deflate)


def _is_raw(tgt: _Piece) -> bool:
    return not tgt.is_deflate and tgt.length <= RAW_THRESHOLD


def _diff_new(
    source: bytes,
    target: bytes,
    pairs: Sequence[tuple[_Piece, _Piece]],
    patches: dict[tuple[int, int, int, int, bool], bytes],
    others: Sequence[tuple[forked.Job, int]],
) -> list[object]:
    """Diffs the pairs not in `patches` yet into it, and returns what the `others` jobs (with
    their expected peaks) returned. The chunks' diffs are independent, so
    make_bsdiff.diff_many_beside runs the large ones and the others side by side in child
    processes."""
    keys: dict[tuple[int, int, int, int, bool], None] = {}
    inputs: list[tuple[bytes, bytes]] = []
    for src, tgt in pairs:
        key = _key(src, tgt)
        if _is_raw(tgt) or key in patches or key in keys:
            continue
        keys[key] = None
        inputs.append((src.inflated, tgt.inflated) if tgt.is_deflate else (src.raw(source), tgt.raw(target)))
    made, results = make_bsdiff.diff_many_beside(inputs, others)
    patches.update(zip(keys, made, strict=True))
    return results


def _assemble(
    target: bytes, pairs: Sequence[tuple[_Piece, _Piece]], patches: Mapping[tuple[int, int, int, int, bool], bytes]
) -> bytes:
    """The IMGDIFF2 file, with the RAW rule (2018+): RAW when the target bytes are smaller than
    their patch, or a NORMAL chunk of at most RAW_THRESHOLD bytes."""
    chunks: list[Chunk] = []
    chunk_patches: list[bytes | None] = []
    for src, tgt in pairs:
        patch = None if _is_raw(tgt) else patches[_key(src, tgt)]
        if patch is None or tgt.length < len(patch):
            chunks.append(RawChunk(tgt.raw(target)))
            chunk_patches.append(None)
        elif tgt.is_deflate:
            level, mem_level = tgt.params
            chunks.append(DeflateChunk(src.start, src.length, len(src.inflated), len(tgt.inflated), level, mem_level))
            chunk_patches.append(patch)
        else:
            chunks.append(NormalChunk(src.start, src.length))
            chunk_patches.append(patch)
    return imgdiff_format.pack(chunks, chunk_patches)
