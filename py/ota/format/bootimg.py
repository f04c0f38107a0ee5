"""Android boot images (header versions 0 to 4): parse and build, byte-compatible with mkbootimg.

Layout (docs/formats.md#android-boot-image): one header page, then each present section zero-padded to the page
size. v0-v2 carry load addresses, a board name, a 512+1024-byte command line and an id (SHA-1 of
the sections and their sizes, so a changed image changes its first page); v3/v4 fix the page at
4096, drop addresses and id, and v4 adds a boot signature section.

Parsing checks every declared size against the file before slicing, so a hostile header costs
nothing, and tolerates bytes after the last section (real images carry an appended signature).
Header fields are kept raw (bytes, packed os_version, header_size as found) so an image parsed
here rebuilds to the same bytes.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from ota.errors import OtaError

MAGIC = b"ANDROID!"
VENDOR_MAGIC = b"VNDRBOOT"
MAX_VERSION = 4
PAGE_SIZES = (2048, 4096, 8192, 16384)
DEFAULT_PAGE_SIZE = 2048
V3_PAGE_SIZE = 4096
VERSION_OFFSET = 40  # header_version sits here in every version, so readers dispatch on it

# mkbootimg's defaults: base plus per-section offsets (docs/formats.md#image-body-and-default-addresses).
DEFAULT_BASE = 0x10000000
DEFAULT_KERNEL_OFFSET = 0x00008000
DEFAULT_RAMDISK_OFFSET = 0x01000000
DEFAULT_SECOND_OFFSET = 0x00F00000
DEFAULT_TAGS_OFFSET = 0x00000100
DEFAULT_DTB_OFFSET = 0x01F00000

_V0 = struct.Struct("<8s10I16s512s32s1024s")
_V1_TAIL = struct.Struct("<IQI")  # recovery_dtbo_size, recovery_dtbo_offset, header_size
_V2_TAIL = struct.Struct("<IQ")  # dtb_size, dtb_addr
_V3 = struct.Struct("<8s4I16xI1536s")  # kernel, ramdisk, os_version, header_size, reserved, version
_V4_TAIL = struct.Struct("<I")  # signature_size
HEADER_SIZES = {0: 1632, 1: 1648, 2: 1660, 3: 1580, 4: 1584}
CMDLINE_SIZE = 512
EXTRA_CMDLINE_SIZE = 1024
V3_CMDLINE_SIZE = 1536
BOARD_SIZE = 16
ID_SIZE = 32

_SECTIONS = {  # section order in the image body, per header version
    0: ("kernel", "ramdisk", "second"),
    1: ("kernel", "ramdisk", "second", "recovery_dtbo"),
    2: ("kernel", "ramdisk", "second", "recovery_dtbo", "dtb"),
    3: ("kernel", "ramdisk"),
    4: ("kernel", "ramdisk", "boot_signature"),
}
_SIZE_FIELDS = {"boot_signature": "signature_size"}  # header field name when not "<section>_size"


@dataclass(frozen=True)
class BootImage:
    """Everything a boot image holds. Fields a header version lacks must stay empty/zero.

    Text fields are raw bytes without their NUL padding. page_size None means the version's
    default (2048 for v0-v2; v3/v4 always use 4096). header_size None means the canonical size
    for the version; other values are kept so images from other tools rebuild identically (Debian's
    mkbootimg 29 writes 1596 into v3 headers).
    """

    header_version: int = 0
    kernel: bytes = b""
    ramdisk: bytes = b""
    second: bytes = b""
    recovery_dtbo: bytes = b""
    dtb: bytes = b""
    boot_signature: bytes = b""
    cmdline: bytes = b""
    extra_cmdline: bytes = b""
    board: bytes = b""
    page_size: int | None = None
    kernel_addr: int = 0
    ramdisk_addr: int = 0
    second_addr: int = 0
    tags_addr: int = 0
    dtb_addr: int = 0
    os_version: int = 0
    header_size: int | None = None

    @property
    def page(self) -> int:
        """The page size the body is aligned to."""
        if self.header_version >= 3:
            return V3_PAGE_SIZE
        return DEFAULT_PAGE_SIZE if self.page_size is None else self.page_size

    def section_data(self) -> dict[str, bytes]:
        """The sections this version's layout has, in body order (absent ones empty)."""
        return {name: getattr(self, name) for name in _SECTIONS[self.header_version]}

    def compute_id(self) -> bytes:
        """The v0-v2 id: SHA-1 over each section's bytes then its size as u32 (docs/formats.md#the-id-v0-to-v2)."""
        sha = hashlib.sha1()
        for data in self.section_data().values():
            sha.update(data)
            sha.update(struct.pack("<I", len(data)))
        return sha.digest()


@dataclass(frozen=True)
class Section:
    """Where one present section lies in the image file."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class ParsedBootImage:
    """A parsed image plus what the file said beyond the model: id, layout, trailing bytes."""

    image: BootImage
    stored_id: bytes  # the 32-byte id field as found (v0-v2); empty for v3/v4
    sections: tuple[Section, ...]
    trailing: bytes

    @property
    def id_matches(self) -> bool | None:
        """Whether the stored id is the one the contents give (None: v3/v4 have no id)."""
        if not self.stored_id:
            return None
        return self.stored_id == self.image.compute_id().ljust(ID_SIZE, b"\0")


def _padded(size: int, page: int) -> int:
    return -(-size // page) * page


def layout(version: int, page: int, sizes: dict[str, int]) -> list[Section]:
    """Offsets of the sections (present or not) after the header page, each page-padded."""
    offset = page
    sections = []
    for name in _SECTIONS[version]:
        size = sizes.get(name, 0)
        sections.append(Section(name, offset, size))
        offset += _padded(size, page)
    return sections


# --- os_version -------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"(\d{1,3})(?:\.(\d{1,3})(?:\.(\d{1,3}))?)?")
_PATCH_RE = re.compile(r"(\d{4})-(\d{2})(?:-\d{2})?")


def encode_os_version(version: str = "", patch_level: str = "") -> int:
    """Packs "A.B.C" and "YYYY-MM" as (A<<25)|(B<<18)|(C<<11)|((YYYY-2000)<<4)|MM (docs/formats.md#os_version).

    An empty string encodes as zeros, as mkbootimg does when the flag is absent.
    """
    packed_version = 0
    if version:
        match = _VERSION_RE.fullmatch(version)
        parts = [int(p) for p in match.groups(default="0")] if match else []
        if not parts or max(parts) > 127:
            raise OtaError("os_version", f"{version!r} is not A[.B[.C]] with each part 0-127")
        packed_version = (parts[0] << 14) | (parts[1] << 7) | parts[2]
    packed_patch = 0
    if patch_level:
        match = _PATCH_RE.fullmatch(patch_level)
        year, month = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        if not match or not 2000 <= year <= 2127 or not 1 <= month <= 12:
            raise OtaError("os_patch_level", f"{patch_level!r} is not YYYY-MM with 2000<=YYYY<=2127")
        packed_patch = ((year - 2000) << 4) | month
    return (packed_version << 11) | packed_patch


def decode_os_version(value: int) -> tuple[str, str]:
    """("A.B.C", "YYYY-MM") from the packed field."""
    version, patch = value >> 11, value & 0x7FF
    text = f"{version >> 14}.{(version >> 7) & 0x7F}.{version & 0x7F}"
    return text, f"{(patch >> 4) + 2000:04d}-{patch & 0xF:02d}"


def split_cmdline(cmdline: bytes) -> tuple[bytes, bytes]:
    """Splits a v0-v2 command line over cmdline[512] and extra_cmdline[1024], keeping each
    NUL-terminated as bootloaders read them as C strings."""
    first = CMDLINE_SIZE - 1
    if len(cmdline) > first + EXTRA_CMDLINE_SIZE - 1:
        raise OtaError(
            "cmdline", f"{len(cmdline)} bytes exceed the {first + EXTRA_CMDLINE_SIZE - 1} bytes a v0-v2 header holds"
        )
    return cmdline[:first], cmdline[first:]


def addresses(
    version: int,
    *,
    has_ramdisk: bool,
    has_second: bool,
    base: int = DEFAULT_BASE,
    kernel_offset: int = DEFAULT_KERNEL_OFFSET,
    ramdisk_offset: int = DEFAULT_RAMDISK_OFFSET,
    second_offset: int = DEFAULT_SECOND_OFFSET,
    tags_offset: int = DEFAULT_TAGS_OFFSET,
    dtb_offset: int = DEFAULT_DTB_OFFSET,
) -> dict[str, int]:
    """mkbootimg's address fields from base + offsets: ramdisk/second addresses are 0 when the
    section is absent, dtb_addr exists from v2, and v3/v4 headers hold no addresses at all."""
    if version >= 3:
        return {}
    fields = {
        "kernel_addr": base + kernel_offset,
        "ramdisk_addr": base + ramdisk_offset if has_ramdisk else 0,
        "second_addr": base + second_offset if has_second else 0,
        "tags_addr": base + tags_offset,
    }
    if version >= 2:
        fields["dtb_addr"] = base + dtb_offset
    return fields


# --- build ------------------------------------------------------------------------------------


def _check_text(where: str, field: str, value: bytes, size: int) -> None:
    if len(value) > size:
        raise OtaError(where, f"{field}: {len(value)} bytes do not fit the {size}-byte field")
    if b"\0" in value:
        raise OtaError(where, f"{field}: contains a NUL byte")


def _check_fits(where: str, field: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise OtaError(where, f"{field}: {value:#x} does not fit {bits} bits")


def _validate(img: BootImage, where: str) -> None:
    version = img.header_version
    if version not in _SECTIONS:
        raise OtaError(where, f"header_version: unsupported value {version} (supported: 0-{MAX_VERSION})")
    absent: list[str] = [n for n in ("second", "recovery_dtbo", "dtb", "boot_signature") if n not in _SECTIONS[version]]
    if version >= 3:
        absent += ["extra_cmdline", "board", "kernel_addr", "ramdisk_addr", "second_addr", "tags_addr"]
    if version < 2:
        absent.append("dtb_addr")
    for name in absent:
        if getattr(img, name):
            raise OtaError(where, f"{name}: a v{version} boot image has no such field")
    if version >= 3:
        if img.page_size not in (None, V3_PAGE_SIZE):
            raise OtaError(where, f"page_size: v{version} images always use {V3_PAGE_SIZE}, not {img.page_size}")
        _check_text(where, "cmdline", img.cmdline, V3_CMDLINE_SIZE)
    else:
        if img.page not in PAGE_SIZES:
            raise OtaError(where, f"page_size: {img.page} is not one of {', '.join(map(str, PAGE_SIZES))}")
        _check_text(where, "cmdline", img.cmdline, CMDLINE_SIZE)
        _check_text(where, "extra_cmdline", img.extra_cmdline, EXTRA_CMDLINE_SIZE)
        _check_text(where, "board", img.board, BOARD_SIZE)
    for name in ("kernel_addr", "ramdisk_addr", "second_addr", "tags_addr", "os_version"):
        _check_fits(where, name, getattr(img, name), 32)
    _check_fits(where, "dtb_addr", img.dtb_addr, 64)
    for name, data in img.section_data().items():
        _check_fits(where, _SIZE_FIELDS.get(name, f"{name}_size"), len(data), 32)
    if img.header_size is not None:
        if version == 0:
            raise OtaError(where, "header_size: a v0 header has no such field")
        _check_header_size(where, version, img.header_size, img.page)


def _check_header_size(where: str, version: int, header_size: int, page: int) -> None:
    if not HEADER_SIZES[version] <= header_size <= page:
        raise OtaError(
            where,
            f"header_size: {header_size} is outside {HEADER_SIZES[version]}..{page} for a v{version} header",
        )


def build(img: BootImage, *, where: str = "boot image") -> bytes:
    """The image bytes: header page then each present section padded to the page size."""
    _validate(img, where)
    version, page = img.header_version, img.page
    sizes = {name: len(data) for name, data in img.section_data().items()}
    header_size = HEADER_SIZES[version] if img.header_size is None else img.header_size
    if version >= 3:
        head = _V3.pack(MAGIC, sizes["kernel"], sizes["ramdisk"], img.os_version, header_size, version, img.cmdline)
        if version == 4:
            head += _V4_TAIL.pack(sizes["boot_signature"])
    else:
        head = _V0.pack(
            MAGIC,
            sizes["kernel"],
            img.kernel_addr,
            sizes["ramdisk"],
            img.ramdisk_addr,
            sizes["second"],
            img.second_addr,
            img.tags_addr,
            page,
            version,
            img.os_version,
            img.board,
            img.cmdline,
            img.compute_id(),
            img.extra_cmdline,
        )
        if version >= 1:
            dtbo = layout(version, page, sizes)[3]
            head += _V1_TAIL.pack(dtbo.size, dtbo.offset if dtbo.size else 0, header_size)
        if version >= 2:
            head += _V2_TAIL.pack(sizes["dtb"], img.dtb_addr)
    out = bytearray(head.ljust(page, b"\0"))
    for data in img.section_data().values():
        out += data
        out += b"\0" * (_padded(len(data), page) - len(data))
    return bytes(out)


# --- parse ------------------------------------------------------------------------------------


def _text(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _check_magic(data: bytes, where: str) -> None:
    found = data[: len(MAGIC)]
    if found == MAGIC:
        return
    if len(found) < len(MAGIC) and MAGIC.startswith(found):
        raise OtaError(where, f"header: truncated, {len(data)} bytes (the magic alone is 8)")
    if found == VENDOR_MAGIC:
        raise OtaError(where, "magic: this is a vendor_boot image (VNDRBOOT), not a boot image")
    raise OtaError(where, f"magic: expected 'ANDROID!', found {found!r}")


def parse(data: bytes, where: str) -> ParsedBootImage:
    """Parses a boot image file, checking each header field against the file before use."""
    _check_magic(data, where)
    if len(data) < VERSION_OFFSET + 4:
        raise OtaError(where, f"header: truncated, {len(data)} bytes end before header_version (offset 40)")
    (version,) = struct.unpack_from("<I", data, VERSION_OFFSET)
    if version > MAX_VERSION:
        raise OtaError(where, f"header_version: unsupported value {version} (supported: 0-{MAX_VERSION})")
    if len(data) < HEADER_SIZES[version]:
        raise OtaError(
            where, f"header: truncated, {len(data)} bytes but a v{version} header is {HEADER_SIZES[version]}"
        )
    fields, sizes, stored_id, dtbo_offset = _read_header(data, version, where)
    page = fields.get("page_size") or V3_PAGE_SIZE
    header_size = fields.get("header_size")
    if header_size is not None:
        _check_header_size(where, version, header_size, page)
        if header_size == HEADER_SIZES[version]:
            fields["header_size"] = None
    sections = layout(version, page, sizes)
    for section in sections:
        if section.offset + section.size > len(data):
            field = _SIZE_FIELDS.get(section.name, f"{section.name}_size")
            raise OtaError(
                where,
                f"{field}: {section.size} bytes at offset {section.offset} run past the end of the "
                f"file ({len(data)} bytes)",
            )
    if version in (1, 2):
        dtbo = sections[3]
        expected = dtbo.offset if dtbo.size else 0
        if dtbo_offset != expected:
            raise OtaError(where, f"recovery_dtbo_offset: {dtbo_offset} but the layout puts it at {expected}")
    end = min(len(data), sections[-1].offset + _padded(sections[-1].size, page))
    parts = {s.name: data[s.offset : s.offset + s.size] for s in sections}
    image = BootImage(header_version=version, **parts, **fields)
    present = tuple(s for s in sections if s.size)
    return ParsedBootImage(image, stored_id, present, data[end:])


def _read_header(data: bytes, version: int, where: str) -> tuple[dict, dict[str, int], bytes, int]:
    """Header fields for `BootImage`, section sizes, the stored id and recovery_dtbo_offset."""
    if version >= 3:
        _, kernel, ramdisk, os_version, header_size, _, cmdline = _V3.unpack_from(data)
        sizes = {"kernel": kernel, "ramdisk": ramdisk}
        if version == 4:
            (sizes["boot_signature"],) = _V4_TAIL.unpack_from(data, HEADER_SIZES[3])
        fields = {"cmdline": _text(cmdline), "os_version": os_version, "header_size": header_size}
        return fields, sizes, b"", 0
    (
        _,
        kernel,
        kernel_addr,
        ramdisk,
        ramdisk_addr,
        second,
        second_addr,
        tags_addr,
        page_size,
        _,
        os_version,
        board,
        cmdline,
        stored_id,
        extra,
    ) = _V0.unpack_from(data)
    if page_size not in PAGE_SIZES:
        raise OtaError(where, f"page_size: {page_size} is not one of {', '.join(map(str, PAGE_SIZES))}")
    sizes = {"kernel": kernel, "ramdisk": ramdisk, "second": second}
    fields = {
        "page_size": page_size,
        "kernel_addr": kernel_addr,
        "ramdisk_addr": ramdisk_addr,
        "second_addr": second_addr,
        "tags_addr": tags_addr,
        "os_version": os_version,
        "board": _text(board),
        "cmdline": _text(cmdline),
        "extra_cmdline": _text(extra),
    }
    dtbo_offset = 0
    if version >= 1:
        sizes["recovery_dtbo"], dtbo_offset, fields["header_size"] = _V1_TAIL.unpack_from(data, _V0.size)
    if version >= 2:
        sizes["dtb"], fields["dtb_addr"] = _V2_TAIL.unpack_from(data, HEADER_SIZES[1])
    return fields, sizes, stored_id, dtbo_offset


def describe(parsed: ParsedBootImage) -> dict[str, object]:
    """The header as a flat, JSON-friendly dict (what `ota_bootimg info` prints)."""
    img = parsed.image
    os_version, patch_level = decode_os_version(img.os_version)
    text: dict[str, object] = {"header_version": img.header_version, "page_size": img.page}
    if img.header_version >= 1:
        text["header_size"] = img.header_size or HEADER_SIZES[img.header_version]
    for name, data in img.section_data().items():
        text[_SIZE_FIELDS.get(name, f"{name}_size")] = len(data)
    if img.header_version < 3:
        for name in ("kernel_addr", "ramdisk_addr", "second_addr", "tags_addr"):
            text[name] = f"{getattr(img, name):#010x}"
        if img.header_version == 2:
            text["dtb_addr"] = f"{img.dtb_addr:#x}"
        text["board"] = img.board.decode("utf-8", "backslashreplace")
    text["os_version"] = os_version
    text["os_patch_level"] = patch_level
    text["cmdline"] = img.cmdline.decode("utf-8", "backslashreplace")
    if img.header_version < 3:
        text["extra_cmdline"] = img.extra_cmdline.decode("utf-8", "backslashreplace")
        text["id"] = parsed.stored_id.hex()
        text["id_matches"] = parsed.id_matches
    text["sections"] = {s.name: {"offset": s.offset, "size": s.size} for s in parsed.sections}
    text["trailing_bytes"] = len(parsed.trailing)
    return text
