"""Applies any patch applypatch understands, chosen by its magic (docs/formats.md#patch-type-detection)."""

from __future__ import annotations

from ota.errors import OtaError
from ota.format import bsdiff, imgdiff_format, imgpatch

DEFAULT_LIMIT = bsdiff.DEFAULT_LIMIT


def apply_patch(
    source: bytes,
    patch: bytes,
    *,
    bonus: bytes | None = None,
    where: str = "patch",
    limit: int = DEFAULT_LIMIT,
    expand_limit: int = DEFAULT_LIMIT,
) -> bytes:
    """Applies a BSDIFF40 or IMGDIFF2 patch to `source` and returns the target bytes.

    Args:
      source: the whole source file or partition contents.
      patch: the patch file's bytes.
      bonus: extra data for IMGDIFF2 chunk 1 (AOSP's `-b`); ignored for BSDIFF40, as AOSP's
        applypatch does.
      where: names the patch in error messages (a path).
      limit: upper bound for the output and any buffer the patch declares; pass the expected
        target size when it is known.
      expand_limit: upper bound for an IMGDIFF2 chunk's inflated target (a gzip'd kernel inflates
        to more than the whole image, so the output limit cannot bound it).

    Raises:
      OtaError: unknown magic, or any malformed field (one line naming `where` and the field).
    """
    magic = bytes(patch[:8])
    if magic == bsdiff.MAGIC:
        return bsdiff.apply(source, patch, where=where, limit=limit)
    if magic == imgdiff_format.MAGIC:
        return imgpatch.apply(source, patch, bonus=bonus, where=where, limit=limit, expand_limit=expand_limit)
    raise OtaError(where, f"unknown patch format (magic {magic!r}; expected BSDIFF40 or IMGDIFF2)")
