"""Normalizing a prebuilt boot image: the same image, its gzip streams recompressed by zlib.

A boot image made elsewhere usually carries a kernel compressed by GNU gzip (a kernel build's
Image.gz) and often a ramdisk compressed the same way. No zlib setting reproduces those deflate
streams, so imgdiff patches their compressed bytes and the patch is about as big as the image
(docs/formats.md#gzip-streams-imgdiff-can-reproduce). `normalize_image` unpacks the image
(py/ota/format/bootimg.py), recompresses every gzip member of the kernel and the ramdisk with
`ota.format.gzipper.normalize` (zlib at imgdiff's settings, the same inflated bytes) and repacks with
every header value as found; only the sizes and, for v0-v2, the id (a hash of the sections, as
mkbootimg computes it) follow the new sections.

Only a TARGET image needs this: the source of an incremental patch is whatever devices hold.

Normalizing changes the image's bytes, so it must come before any signing. An image that is
already signed (an AVB footer at its end, a v4 boot signature section, any other non-zero bytes
after the last section such as a verified-boot 1.0 signature) is refused unless the caller asks to
drop the signature, in which case the result is unsigned and must be signed again afterwards
(docs/rules.md, `ota_boot_image`).

Before returning, the result is parsed again and compared with the input: same header fields,
same inflated kernel and ramdisk (inflated here with zlib's own gzip reader, independently of the
code that recompressed them), same trailing bytes. A difference is a one-line error, never an
image.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

from ota.errors import OtaError
from ota.format import bootimg, deflate, gzipper

# The sections that hold gzip streams in practice (docs/formats.md#where-the-gzip-streams-are).
# second, recovery_dtbo and dtb are copied as they are.
NORMALIZED_SECTIONS = ("kernel", "ramdisk")

# avbtool's footer: the last 64 bytes of a signed partition image start with this magic.
AVB_FOOTER_MAGIC = b"AVBf"
AVB_FOOTER_SIZE = 64

_GZIP_WBITS = 16 + 15  # zlib's gzip reader, used for the independent check


@dataclass(frozen=True)
class SectionReport:
    """What happened to one section: one gzipper report per gzip member, and how many bytes after
    the last member were copied as they are (an appended DTB, padding)."""

    name: str
    members: tuple[gzipper.NormalizeReport, ...]
    tail_bytes: int

    def line(self) -> str:
        """One human-readable line for the tool's output."""
        if not self.members:
            return f"{self.name}: not gzip, copied as it is"
        actions = ", ".join(report.line() for report in self.members)
        tail = f"; {self.tail_bytes} bytes after the last member copied" if self.tail_bytes else ""
        return f"{self.name}: {len(self.members)} gzip member(s): {actions}{tail}"


def normalize_section(
    data: bytes, name: str, where: str, *, limit: int = gzipper.DEFAULT_INFLATE_LIMIT
) -> tuple[bytes, SectionReport]:
    """Recompresses each gzip member `data` starts with; bytes after the last member are kept.

    A section that does not start with gzip's magic (a raw Image, lz4, an x86 bzImage) is returned
    unchanged. Several members back to back (concatenated ramdisks) are each normalized.
    """
    where = f"{where}: {name}"
    pieces: list[bytes] = []
    reports: list[gzipper.NormalizeReport] = []
    pos = 0
    while data.startswith(deflate.GZIP_MAGIC, pos):
        member = deflate.read_gzip_member(data, pos, limit)
        if member is None:
            raise OtaError(where, f"gzip member at offset {pos}: damaged or truncated (does not inflate completely)")
        normalized, report = gzipper.normalize(data[pos : member.end], f"{where} (gzip member at offset {pos})")
        pieces.append(normalized)
        reports.append(report)
        pos = member.end
    pieces.append(data[pos:])
    tail = len(data) - pos if reports else 0
    return b"".join(pieces), SectionReport(name, tuple(reports), tail)


def inflated_contents(data: bytes, where: str) -> tuple[list[bytes], bytes]:
    """The inflated bytes of each leading gzip member and the bytes after them, read by zlib's own
    gzip decoder (not ota.format.deflate), so the check after normalizing does not share its code."""
    members: list[bytes] = []
    pos = 0
    while data.startswith(deflate.GZIP_MAGIC, pos):
        reader = zlib.decompressobj(_GZIP_WBITS)
        try:
            members.append(reader.decompress(data[pos:]))
        except zlib.error as err:
            raise OtaError(where, f"gzip member at offset {pos} does not inflate ({err})") from None
        if not reader.eof:
            raise OtaError(where, f"gzip member at offset {pos} is truncated")
        pos = len(data) - len(reader.unused_data)
    return members, data[pos:]


def signature_found(parsed: bootimg.ParsedBootImage) -> str | None:
    """What in the image looks like a signature normalizing would invalidate, or None."""
    trailing = parsed.trailing
    if len(trailing) >= AVB_FOOTER_SIZE and trailing[-AVB_FOOTER_SIZE:].startswith(AVB_FOOTER_MAGIC):
        return "an AVB footer (AVBf) ends the image"
    if parsed.image.boot_signature:
        return f"a {len(parsed.image.boot_signature)}-byte v4 boot signature section"
    if trailing.strip(b"\0"):
        return f"{len(trailing)} bytes after the last section that are not zero padding (a signature?)"
    return None


def normalize_image(
    data: bytes, where: str, *, drop_signature: bool = False
) -> tuple[bytes, tuple[SectionReport, ...]]:
    """The normalized image and a report per normalized section (see the module docstring)."""
    parsed = bootimg.parse(data, where)
    signature = signature_found(parsed)
    expected = parsed.image
    trailing = parsed.trailing
    if signature and not drop_signature:
        raise OtaError(
            where,
            f"{signature}: normalizing would invalidate it; normalize the unsigned image and sign "
            "afterwards, or drop the signature (boot_image drop_signature, ota_bootimg "
            "--drop_signature) and sign the result",
        )
    if signature:
        expected = dataclasses.replace(expected, boot_signature=b"")
        trailing = b""
    sections: dict[str, bytes] = {}
    reports = []
    for name in NORMALIZED_SECTIONS:
        sections[name], report = normalize_section(getattr(expected, name), name, where)
        reports.append(report)
    out = bootimg.build(dataclasses.replace(expected, **sections), where=where) + trailing
    _check_same_contents(expected, trailing, out, where)
    return out, tuple(reports)


def _check_same_contents(expected: bootimg.BootImage, trailing: bytes, out: bytes, where: str) -> None:
    """Fails unless `out` holds `expected`'s header values, inflated sections and trailing bytes."""
    result = bootimg.parse(out, where)
    for name in NORMALIZED_SECTIONS:
        before = inflated_contents(getattr(expected, name), f"{where}: {name}")
        after = inflated_contents(getattr(result.image, name), f"{where}: normalized {name}")
        if before != after:
            raise OtaError(where, f"normalized {name} does not inflate to the original's bytes (a zlib bug?)")
    unchanged = {name: getattr(expected, name) for name in NORMALIZED_SECTIONS}
    differing = [
        field.name
        for field in dataclasses.fields(bootimg.BootImage)
        if getattr(dataclasses.replace(result.image, **unchanged), field.name) != getattr(expected, field.name)
    ]
    if differing or result.trailing != trailing:
        what = ", ".join(differing) or "trailing bytes"
        raise OtaError(where, f"normalized image differs from the original in {what}")
