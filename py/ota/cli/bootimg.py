"""ota_bootimg: build, unpack and inspect Android boot images (header v0-v4).

    ota_bootimg build --kernel K [--ramdisk R] [--header_version N] ... --output boot.img
    ota_bootimg unpack boot.img --out DIR
    ota_bootimg info boot.img
    ota_bootimg normalize boot.img --output normalized.img [--drop_signature]
    ota_bootimg ramdisk --root DIR --output ramdisk.cpio.gz

`build` takes mkbootimg's flag names and defaults, so existing build scripts carry over; with
--normalize_gzip a kernel or ramdisk that is a gzip file from another compressor is recompressed
by zlib first, so imgdiff can later patch it in uncompressed space. `normalize` does the same to
a prebuilt image: every gzip member of its kernel and ramdisk recompressed by zlib, every header
value kept (py/ota/actions/boot_normalize.py); a signed image is refused unless --drop_signature.
`ramdisk` packs a directory as a deterministic newc cpio gzip'd by zlib.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from ota.actions import boot_normalize, toolchain_identity
from ota.errors import OtaError, UsageError
from ota.format import bootimg, cpio, gzipper
from ota.io import fileio, runner

_SECTION_FLAGS = ("kernel", "ramdisk", "second", "recovery_dtbo", "dtb", "boot_signature")
_OFFSET_FLAGS = {
    "base": bootimg.DEFAULT_BASE,
    "kernel_offset": bootimg.DEFAULT_KERNEL_OFFSET,
    "ramdisk_offset": bootimg.DEFAULT_RAMDISK_OFFSET,
    "second_offset": bootimg.DEFAULT_SECOND_OFFSET,
    "tags_offset": bootimg.DEFAULT_TAGS_OFFSET,
    "dtb_offset": bootimg.DEFAULT_DTB_OFFSET,
}
_V0_2_ONLY = ("pagesize", "board", "second", "recovery_dtbo", "dtb", *_OFFSET_FLAGS)

for _name in _SECTION_FLAGS:
    flags.DEFINE_string(_name, None, f"build: path of the {_name} section")
for _name, _default in _OFFSET_FLAGS.items():
    flags.DEFINE_integer(_name, _default, f"build (v0-v2): {_name.replace('_', ' ')} (0x... accepted)")
flags.DEFINE_string("cmdline", "", "build: kernel command line (v0-v2 spill past 511 bytes into extra_cmdline)")
flags.DEFINE_integer(
    "header_version", 0, "build: boot image header version, 0 to 4", lower_bound=0, upper_bound=bootimg.MAX_VERSION
)
flags.DEFINE_enum("pagesize", "2048", [str(p) for p in bootimg.PAGE_SIZES], "build (v0-v2): page size")
flags.DEFINE_string("os_version", "", "build: OS version A.B.C")
flags.DEFINE_string("os_patch_level", "", "build: security patch level YYYY-MM")
flags.DEFINE_string("board", "", "build (v0-v2): board name, at most 16 bytes")
flags.DEFINE_bool("normalize_gzip", False, "build: recompress a foreign gzip kernel/ramdisk with zlib")
flags.DEFINE_bool(
    "drop_signature",
    False,
    "normalize: drop an AVB footer, a v4 boot signature or other bytes after the last section "
    "instead of refusing a signed image (sign the result again)",
)
flags.DEFINE_string("output", None, "build, normalize, ramdisk: output file")
flags.DEFINE_string("out", None, "unpack: directory for the sections and header.json")
flags.DEFINE_string("root", None, "ramdisk: directory to pack")
flags.DEFINE_integer("uid", 0, "ramdisk: owner of every entry", lower_bound=0)
flags.DEFINE_integer("gid", 0, "ramdisk: group of every entry", lower_bound=0)

FLAGS = flags.FLAGS


def _require(name: str) -> str:
    value = getattr(FLAGS, name)
    if not value:
        raise UsageError(f"--{name} is required")
    return value


def _section(name: str) -> bytes:
    path = getattr(FLAGS, name)
    if path is None:
        return b""
    data = fileio.read_file(path)
    if FLAGS.normalize_gzip and name in ("kernel", "ramdisk"):
        data, report = gzipper.normalize(data, path)
        print(f"ota_bootimg: {path}: {report.line()}", file=sys.stderr)
    return data


def _build() -> None:
    output = _require("output")
    _require("kernel")
    version = FLAGS.header_version
    if version >= 3:
        given = [f"--{name}" for name in _V0_2_ONLY if FLAGS[name].present]
        if given:
            raise UsageError(f"{', '.join(given)}: not stored in a v{version} header")
    parts = {name: _section(name) for name in _SECTION_FLAGS}
    cmdline = FLAGS.cmdline.encode()
    if version >= 3:
        text = {"cmdline": cmdline}
    else:
        first, extra = bootimg.split_cmdline(cmdline)
        text = {"cmdline": first, "extra_cmdline": extra, "board": FLAGS.board.encode()}
    addresses = bootimg.addresses(
        version,
        has_ramdisk=bool(parts["ramdisk"]),
        has_second=bool(parts["second"]),
        **{name: getattr(FLAGS, name) for name in _OFFSET_FLAGS},
    )
    image = bootimg.BootImage(
        header_version=version,
        page_size=int(FLAGS.pagesize) if version < 3 else None,
        os_version=bootimg.encode_os_version(FLAGS.os_version, FLAGS.os_patch_level),
        **parts,
        **text,
        **addresses,
    )
    fileio.write_file(output, bootimg.build(image, where=output))


def _image_arg(argv: Sequence[str], command: str) -> tuple[str, bootimg.ParsedBootImage]:
    if len(argv) != 3:
        raise UsageError(f"{command} takes exactly one IMAGE argument")
    return argv[2], bootimg.parse(fileio.read_file(argv[2]), argv[2])


def _unpack(argv: Sequence[str]) -> None:
    _path, parsed = _image_arg(argv, "unpack")
    out = Path(_require("out"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OtaError(str(out), f"cannot create: {err.strerror}") from None
    outputs = [(str(out / section.name), getattr(parsed.image, section.name)) for section in parsed.sections]
    if parsed.trailing:
        outputs.append((str(out / "trailing"), parsed.trailing))
    description = bootimg.describe(parsed)
    outputs.append((str(out / "header.json"), (json.dumps(description, indent=2, sort_keys=True) + "\n").encode()))
    fileio.write_files(outputs)


def _info(argv: Sequence[str]) -> None:
    _, parsed = _image_arg(argv, "info")
    for key, value in bootimg.describe(parsed).items():
        if key == "sections":
            for name, where in value.items():
                print(f"section {name}: offset {where['offset']}, {where['size']} bytes")
        else:
            print(f"{key}: {value}")


def _normalize(argv: Sequence[str]) -> None:
    if len(argv) != 3:
        raise UsageError("normalize takes exactly one IMAGE argument")
    path, output = argv[2], _require("output")
    data, reports = boot_normalize.normalize_image(fileio.read_file(path), path, drop_signature=FLAGS.drop_signature)
    for report in reports:
        print(f"ota_bootimg: {path}: {report.line()}", file=sys.stderr)
    fileio.write_file(output, data)


def _ramdisk() -> None:
    output, root = _require("output"), Path(_require("root"))
    if not root.is_dir():
        raise OtaError(str(root), "ramdisk root: not a directory")
    entries = cpio.entries_from_tree(root, uid=FLAGS.uid, gid=FLAGS.gid)
    fileio.write_file(output, gzipper.compress(cpio.write(entries)))


def main(argv: Sequence[str]) -> None:
    """Dispatches on the subcommand (argv[1])."""
    toolchain_identity.verify_flag()
    command = argv[1] if len(argv) > 1 else ""
    if command == "build" and len(argv) == 2:
        _build()
    elif command == "ramdisk" and len(argv) == 2:
        _ramdisk()
    elif command == "unpack":
        _unpack(argv)
    elif command == "info":
        _info(argv)
    elif command == "normalize":
        _normalize(argv)
    else:
        raise UsageError("expected: build|unpack IMAGE|info IMAGE|normalize IMAGE|ramdisk, with flags (see --help)")


def run() -> None:
    """Console-script entry point."""
    runner.run_absl("ota_bootimg", main)


if __name__ == "__main__":
    run()
