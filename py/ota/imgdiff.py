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
from collections.abc import Sequence
from dataclasses import dataclass

from ota import bsdiff, deflate, imgdiff_format, imgpatch, zipscan
from ota.errors import OtaError
from ota.imgdiff_format import Chunk, DeflateChunk, NormalChunk, RawChunk

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


def _pair_deflate(source_piece: _Piece, target_piece: _Piece, source: bytes, target: bytes) -> tuple[_Piece, _Piece]:
    """Keeps a DEFLATE pair only if the target stream changed, inflates within what applypatch
    allows for this target (`imgpatch.expand_limit`) and a zlib setting reproduces it."""
    target_raw = target_piece.raw(target)
    if source_piece.raw(source) == target_raw or len(target_piece.inflated) > imgpatch.expand_limit(len(target)):
        return source_piece.as_normal(), target_piece.as_normal()
    params = deflate.find_reproducing_params(target_piece.inflated, target_raw)
    if params is None:
        return source_piece.as_normal(), target_piece.as_normal()
    return source_piece, dataclasses.replace(target_piece, params=params)


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
    src_pieces, tgt_pieces = _image_pieces(source, limit), _image_pieces(target, limit)
    if _shape(src_pieces) != _shape(tgt_pieces):
        raise OtaError(
            target_name,
            f"chunk structure ({len(tgt_pieces)} chunks: {_shape(tgt_pieces)}) differs from "
            f"{source_name} ({len(src_pieces)} chunks: {_shape(src_pieces)})",
        )
    for index, (src, tgt) in enumerate(zip(src_pieces, tgt_pieces, strict=True)):
        if src.is_deflate:
            src_pieces[index], tgt_pieces[index] = _pair_deflate(src, tgt, source, target)
    src_pieces, tgt_pieces = _merge_normals(src_pieces), _merge_normals(tgt_pieces)
    if bonus is not None:
        if len(src_pieces) < 2 or not src_pieces[1].is_deflate:
            raise OtaError(
                source_name,
                f"bonus data needs chunk 1 to be a changed, reproducible deflate chunk (chunks: {_shape(src_pieces)})",
            )
        src_pieces[1] = dataclasses.replace(src_pieces[1], inflated=src_pieces[1].inflated + bonus)
    return _write(source, target, list(zip(src_pieces, tgt_pieces, strict=True)))


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
    by_name: dict[str, _Piece] = {}
    for piece in _zip_pieces(source, source_name):
        by_name.setdefault(piece.name, piece)
    whole_source = _Piece(0, len(source))
    tgt_pieces: list[_Piece] = []
    pos = 0
    for tgt in _zip_pieces(target, target_name):
        if tgt.start < pos:
            continue  # overlapping entries (a crafted zip): leave the bytes to the NORMAL run
        tgt_pieces.append(_Piece(pos, tgt.start - pos))
        src = by_name.get(tgt.name)
        tgt_pieces.append(tgt.as_normal() if src is None else _pair_deflate(src, tgt, source, target)[1])
        pos = tgt.start + tgt.length
    tgt_pieces.append(_Piece(pos, len(target) - pos))
    pairs = [(by_name[t.name] if t.is_deflate else whole_source, t) for t in _merge_normals(tgt_pieces)]
    return _write(source, target, pairs)


def _write(source: bytes, target: bytes, pairs: Sequence[tuple[_Piece, _Piece]]) -> bytes:
    """Diffs each pair and applies the RAW rule (2018+): RAW when the target bytes are smaller than
    their patch, or a NORMAL chunk of at most RAW_THRESHOLD bytes. The chunks' diffs are
    independent, so bsdiff.diff_many runs the large ones side by side in child processes."""
    chunks: list[Chunk] = []
    to_diff: list[tuple[bytes, bytes]] = []
    for src, tgt in pairs:
        if not tgt.is_deflate and tgt.length <= RAW_THRESHOLD:
            chunks.append(RawChunk(tgt.raw(target)))
            continue
        if tgt.is_deflate:
            level, mem_level = tgt.params
            chunks.append(DeflateChunk(src.start, src.length, len(src.inflated), len(tgt.inflated), level, mem_level))
            to_diff.append((src.inflated, tgt.inflated))
        else:
            chunks.append(NormalChunk(src.start, src.length))
            to_diff.append((src.raw(source), tgt.raw(target)))
    made = iter(bsdiff.diff_many(to_diff))
    patches: list[bytes | None] = []
    for index, ((_, tgt), chunk) in enumerate(zip(pairs, chunks, strict=False)):
        if isinstance(chunk, RawChunk):
            patches.append(None)
            continue
        patch = next(made)
        if tgt.length < len(patch):
            chunks[index] = RawChunk(tgt.raw(target))
            patches.append(None)
        else:
            patches.append(patch)
    return imgdiff_format.pack(chunks, patches)
