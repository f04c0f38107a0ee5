"""Raw deflate streams: bounded inflation, exact re-deflation, and finding zlib settings.

imgpatch must re-deflate patched data bit-identically, so the recorded zlib parameters are the
whole contract. The generator therefore only patches a stream in uncompressed space when some
zlib setting reproduces its bytes exactly; finding that setting cheaply is the job of
`find_reproducing_params`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ota.errors import OtaError

RAW_WBITS = -15
# Deflate cannot expand more than 1032:1 (a 258-byte match costs at least 2 bits); anything
# declared beyond that is a lie and must not become an allocation.
MAX_RATIO = 1032


def inflate_exact(data: bytes | memoryview, expected_len: int, where: str, field: str) -> bytes:
    """Raw-inflates `data`, which must be one complete stream of exactly `expected_len` bytes."""
    if expected_len > MAX_RATIO * len(data) + 16:
        raise OtaError(where, f"{field} {expected_len} is more than a {len(data)}-byte deflate stream can hold")
    inflater = zlib.decompressobj(RAW_WBITS)
    try:
        out = inflater.decompress(data, expected_len + 1)
    except zlib.error as err:
        raise OtaError(where, f"deflate data does not inflate ({err})") from None
    if len(out) > expected_len or (not inflater.eof and inflater.unconsumed_tail):
        raise OtaError(where, f"deflate data inflates to more than {field} {expected_len}")
    if not inflater.eof:
        raise OtaError(where, f"deflate stream is truncated (inflated {len(out)} of {field} {expected_len})")
    if len(out) != expected_len:
        raise OtaError(where, f"deflate data inflates to {len(out)} bytes, {field} says {expected_len}")
    return out


def deflate(
    data: bytes,
    level: int,
    mem_level: int = 8,
    *,
    method: int = zlib.DEFLATED,
    window_bits: int = RAW_WBITS,
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
) -> bytes:
    """Compresses in one call; zlib's output does not depend on how input is split, so this
    equals AOSP's streamed Z_NO_FLUSH…Z_FINISH loop byte for byte."""
    compressor = zlib.compressobj(level, method, window_bits, mem_level, strategy)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)


# --- finding deflate streams -------------------------------------------------------------------

GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1, ID2, CM=deflate
GZIP_FIXED_HEADER = 10
GZIP_FOOTER = 8
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT, _FRESERVED = 0x02, 0x04, 0x08, 0x10, 0xE0
_FEED = 1 << 16


@dataclass(frozen=True)
class GzipMember:
    """One gzip member inside a larger image: header, raw deflate stream, 8-byte footer."""

    start: int
    header_len: int
    deflate_len: int
    inflated: bytes

    @property
    def deflate_start(self) -> int:
        return self.start + self.header_len

    @property
    def footer_start(self) -> int:
        return self.deflate_start + self.deflate_len

    @property
    def end(self) -> int:
        return self.footer_start + GZIP_FOOTER


def gzip_header_len(data: bytes, pos: int) -> int | None:
    """Length of the gzip header at `pos` (RFC 1952, all FLG bits), or None if there is none.

    AOSP recognises only FLG=0 headers; GNU gzip without -n sets FNAME, and such members are
    just as patchable once the whole header is treated as opaque bytes.
    """
    if data[pos : pos + 3] != GZIP_MAGIC or len(data) - pos < GZIP_FIXED_HEADER:
        return None
    flags = data[pos + 3]
    if flags & _FRESERVED:
        return None
    end = pos + GZIP_FIXED_HEADER
    if flags & _FEXTRA:
        if end + 2 > len(data):
            return None
        end += 2 + int.from_bytes(data[end : end + 2], "little")
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            nul = data.find(b"\0", end)
            if nul < 0:
                return None
            end = nul + 1
    if flags & _FHCRC:
        if end + 2 > len(data) or int.from_bytes(data[end : end + 2], "little") != zlib.crc32(data[pos:end]) & 0xFFFF:
            return None
        end += 2
    return end - pos if end <= len(data) else None


def inflate_stream(data: bytes, start: int, limit: int) -> tuple[bytes, int] | None:
    """Inflates the raw deflate stream starting at `start` up to its end marker.

    Returns (inflated bytes, compressed length), or None if the bytes are not one complete
    stream or it inflates past `limit`. Input is fed in pieces so that finding the end of many
    small members does not copy the rest of a large image each time.
    """
    inflater = zlib.decompressobj(RAW_WBITS)
    parts: list[bytes] = []
    size = 0
    pos = start
    view = memoryview(data)
    try:
        while not inflater.eof and pos < len(data):
            piece = inflater.decompress(view[pos : pos + _FEED], limit - size + 1)
            pos += _FEED
            size += len(piece)
            parts.append(piece)
            while inflater.unconsumed_tail and size <= limit:
                piece = inflater.decompress(inflater.unconsumed_tail, limit - size + 1)
                size += len(piece)
                parts.append(piece)
            if size > limit:
                return None
    except zlib.error:
        return None
    if not inflater.eof:
        return None
    consumed = min(pos, len(data)) - start - len(inflater.unused_data)
    return b"".join(parts), consumed


def read_gzip_member(data: bytes, pos: int, limit: int) -> GzipMember | None:
    """The gzip member at `pos`, if it parses, inflates, and its footer's ISIZE agrees (as AOSP
    checks since 2015; a member that fails any of these is ordinary data)."""
    header_len = gzip_header_len(data, pos)
    if header_len is None:
        return None
    stream = inflate_stream(data, pos + header_len, limit)
    if stream is None:
        return None
    inflated, deflate_len = stream
    footer = pos + header_len + deflate_len
    if footer + GZIP_FOOTER > len(data):
        return None
    if int.from_bytes(data[footer + 4 : footer + 8], "little") != len(inflated) & 0xFFFFFFFF:
        return None
    return GzipMember(pos, header_len, deflate_len, inflated)


def find_gzip_members(data: bytes, limit: int) -> list[GzipMember]:
    """Every gzip member of an image, in order; bytes between them are not compressed data."""
    members: list[GzipMember] = []
    pos = data.find(GZIP_MAGIC)
    while pos >= 0:
        member = read_gzip_member(data, pos, limit)
        if member is None:
            pos = data.find(GZIP_MAGIC, pos + 1)
        else:
            members.append(member)
            pos = data.find(GZIP_MAGIC, member.end)
    return members


# --- reproducing a stream ----------------------------------------------------------------------

# AOSP tries level 6 then 9 at memLevel 8. Those race first; then the other levels at zlib's
# default memLevel 8 (what most zlib users, Java's Deflater included, leave alone); then every
# other memLevel, so streams written with level 1 or memLevel 9 are found too.
SEARCH_STAGES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((6, 8), (9, 8)),
    tuple((level, 8) for level in (1, 2, 3, 4, 5, 7, 8)),
    tuple((level, mem) for mem in (9, 7, 6, 5, 4, 3, 2, 1) for level in range(1, 10)),
)
AOSP_PARAMS = SEARCH_STAGES[0]
_FIRST_PIECE = 1 << 12
_MAX_PIECE = 1 << 18
# Input raced before a search is taken as likely to succeed (start_search). Every setting but the
# stream's own has diverged by then on any real data: zlib emits its first block after at most
# 32 Ki symbols (memLevel 9), and one block is enough to differ.
SPECULATION_PREFIX = 1 << 20


def find_reproducing_params(inflated: bytes, compressed: bytes | memoryview) -> tuple[int, int] | None:
    """Returns the first (level, memLevel) of SEARCH_STAGES, in order, whose raw deflate of `inflated` is
    exactly `compressed`, or None.

    The stages of SEARCH_STAGES race one after the other, so the common case (AOSP's settings)
    costs about one compression. In a race every setting compresses the same growing pieces of
    input and drops out as soon as the output it has produced differs from `compressed`; settings
    diverge within their first emitted block, so a race costs about one compression plus one
    block per setting.
    """
    return _search_from(0, inflated, compressed)


def _search_from(first_stage: int, inflated: bytes, compressed: bytes | memoryview) -> tuple[int, int] | None:
    for stage in SEARCH_STAGES[first_stage:]:
        race = _Race(stage, inflated, compressed)
        race.advance(len(inflated))
        found = race.finish()
        if found is not None:
            return found
    return None


@dataclass
class PendingSearch:
    """A search started by start_search: `finish` gives exactly what find_reproducing_params
    gives, and `likely` is its probable answer (the first setting still in the race)."""

    inflated: bytes
    compressed: bytes | memoryview
    stage: int
    race: _Race | None  # None once the answer is known
    found: tuple[int, int] | None = None

    @property
    def likely(self) -> tuple[int, int]:
        return self.found if self.race is None else self.race.survivors[0]

    def finish(self) -> tuple[int, int] | None:
        """Races the survivors to the end; if none reproduces the stream, the later stages in full."""
        if self.race is None:
            return self.found
        self.race.advance(len(self.inflated))
        found = self.race.finish()
        return found if found is not None else _search_from(self.stage + 1, self.inflated, self.compressed)


def start_search(inflated: bytes, compressed: bytes | memoryview, prefix: int | None = None) -> PendingSearch | None:
    """The first part of find_reproducing_params: races each stage over `prefix` input bytes
    (default SPECULATION_PREFIX).

    None means no setting reproduces `compressed` (a full match never diverges, so a stage without
    survivors has none), which a stream from another compressor (GNU gzip) shows within its first
    block. A stream of at most `prefix` bytes is searched to the end here, so that no compressor
    state outlives the call (zip mode starts one search per entry). Otherwise the survivors of the
    first stage that has any are raced on by `finish`, so a caller can act on `likely` (imgdiff
    starts its diffs) while the compression runs to the end.
    """
    prefix = SPECULATION_PREFIX if prefix is None else prefix
    for index, stage in enumerate(SEARCH_STAGES):
        race = _Race(stage, inflated, compressed)
        race.advance(prefix)
        if not race.survivors:
            continue
        if prefix < len(inflated):
            return PendingSearch(inflated, compressed, index, race)
        found = race.finish()
        if found is not None:
            return PendingSearch(inflated, compressed, index, None, found)
    return None


class _Race:
    """Candidate settings compressing the same growing pieces of input side by side; a setting
    drops out as soon as the output it has produced differs from `compressed`."""

    def __init__(
        self, candidates: tuple[tuple[int, int], ...], inflated: bytes, compressed: bytes | memoryview
    ) -> None:
        self._alive = {
            params: zlib.compressobj(params[0], zlib.DEFLATED, RAW_WBITS, params[1]) for params in candidates
        }
        self._produced = dict.fromkeys(candidates, 0)
        self._view = memoryview(inflated)
        self._compressed = compressed
        self._pos = 0
        self._piece_size = _FIRST_PIECE

    @property
    def survivors(self) -> list[tuple[int, int]]:
        return list(self._alive)

    def advance(self, upto: int) -> None:
        """Feeds input until at least `upto` bytes (or all of it) went in, or no setting is left."""
        compressed = self._compressed
        while self._pos < min(upto, len(self._view)) and self._alive:
            piece = self._view[self._pos : self._pos + self._piece_size]
            for params in list(self._alive):
                out = self._alive[params].compress(piece)
                done = self._produced[params]
                if out and compressed[done : done + len(out)] != out:
                    del self._alive[params]
                self._produced[params] = done + len(out)
            self._pos += self._piece_size
            self._piece_size = min(2 * self._piece_size, _MAX_PIECE)

    def finish(self) -> tuple[int, int] | None:
        """After all input went in: the first surviving setting whose whole stream is `compressed`."""
        for params, compressor in self._alive.items():
            tail = compressor.flush(zlib.Z_FINISH)
            done = self._produced[params]
            if done + len(tail) == len(self._compressed) and self._compressed[done:] == tail:
                return params
        return None
