"""ota_boot_image: an Android boot image (header v0-v4) from its sections, or a prebuilt one."""

load(":providers.bzl", "OtaBootImageInfo")
load(":toolchain_identity.bzl", "TOOLCHAIN_IDENTITY_ATTRS", "add_toolchain_identity")

_PAGE_SIZES = [2048, 4096, 8192, 16384]
_ADDRESS_ATTRS = ["base", "kernel_offset", "ramdisk_offset", "second_offset", "tags_offset", "dtb_offset"]

# Sections per header version (docs/formats.md#android-boot-image): what a header of that version can describe.
_SECTION_VERSIONS = {
    "second": [0, 1, 2],
    "recovery_dtbo": [1, 2],
    "dtb": [2],
}

def _hex(ctx, name):
    value = getattr(ctx.attr, name)
    digits = value[2:] if value.startswith("0x") or value.startswith("0X") else ""
    if not digits or len(digits) > 8:
        fail("ota_boot_image %s: %s = '%s': expected a 32-bit hex number like 0x10000000" % (ctx.label, name, value))
    for c in digits.elems():
        if c not in "0123456789abcdefABCDEF":
            fail("ota_boot_image %s: %s = '%s': expected a 32-bit hex number like 0x10000000" % (ctx.label, name, value))
    return value

def _check_version_string(ctx, value, name, parts_wanted):
    parts = value.split("-" if name == "os_patch_level" else ".")
    if len(parts) != parts_wanted or [p for p in parts if not p.isdigit()]:
        example = "2024-05" if name == "os_patch_level" else "14.0.0"
        fail("ota_boot_image %s: %s = '%s': expected a value like %s" % (ctx.label, name, value, example))

def _check(ctx):
    """Analysis-time validation: every bad attribute is one clear error naming the target."""
    where = "ota_boot_image %s" % ctx.label
    version = ctx.attr.header_version
    if ctx.attr.drop_signature and not ctx.attr.normalize_src:
        fail("%s: drop_signature only applies with normalize_src = True" % where)
    if ctx.file.src:
        given = [n for n in ["kernel", "ramdisk", "second", "recovery_dtbo", "dtb"] if getattr(ctx.file, n)]
        if given:
            fail("%s: src (a prebuilt image) excludes %s" % (where, ", ".join(given)))
        return
    if ctx.attr.normalize_src:
        fail("%s: normalize_src needs src (images built from sections follow normalize_compression)" % where)
    if not ctx.file.kernel:
        fail("%s: set either src (a prebuilt image) or kernel" % where)
    if version < 0 or version > 4:
        fail("%s: header_version = %d: supported versions are 0 to 4" % (where, version))
    for name, versions in _SECTION_VERSIONS.items():
        if getattr(ctx.file, name) and version not in versions:
            fail("%s: %s needs header_version %s, not %d" % (
                where,
                name,
                " or ".join([str(v) for v in versions]),
                version,
            ))
    if ctx.attr.page_size and ctx.attr.page_size not in _PAGE_SIZES:
        fail("%s: page_size = %d: allowed are %s" % (where, ctx.attr.page_size, _PAGE_SIZES))
    if version >= 3:
        if ctx.attr.page_size not in (0, 4096):
            fail("%s: page_size = %d: header v%d always uses 4096" % (where, ctx.attr.page_size, version))
        given = [n for n in _ADDRESS_ATTRS + ["board"] if getattr(ctx.attr, n)]
        if given:
            fail("%s: %s: not stored in a v%d header" % (where, ", ".join(given), version))

    # v0-v2: cmdline[512] + extra_cmdline[1024], each NUL-terminated; v3/v4: cmdline[1536].
    max_cmdline = 1536 if version >= 3 else 511 + 1023
    if len(ctx.attr.cmdline) > max_cmdline:
        fail("%s: cmdline is %d bytes; header v%d holds at most %d" % (
            where,
            len(ctx.attr.cmdline),
            version,
            max_cmdline,
        ))
    if len(ctx.attr.board) > 16:
        fail("%s: board '%s' is longer than 16 bytes" % (where, ctx.attr.board))
    if ctx.attr.os_version:
        _check_version_string(ctx, ctx.attr.os_version, "os_version", 3)
    if ctx.attr.os_patch_level:
        _check_version_string(ctx, ctx.attr.os_patch_level, "os_patch_level", 2)

def _normalized_src(ctx):
    """One OtaBootNormalize action: the prebuilt image with its gzip streams recompressed by zlib."""
    out = ctx.actions.declare_file(ctx.label.name + ".img")
    args = ctx.actions.args()
    args.add("normalize")
    args.add(ctx.file.src)
    args.add("--output", out)
    if ctx.attr.drop_signature:
        args.add("--drop_signature")
    identity = add_toolchain_identity(ctx, args)
    ctx.actions.run(
        executable = ctx.executable._bootimg,
        arguments = [args],
        inputs = [ctx.file.src, identity],
        outputs = [out],
        mnemonic = "OtaBootNormalize",
        progress_message = "Normalizing boot image %s" % ctx.label,
    )
    return [
        DefaultInfo(files = depset([out]), runfiles = ctx.runfiles([out])),
        OtaBootImageInfo(image = out, header_version = -1, prebuilt = False, normalized = True),
    ]

def _boot_image_impl(ctx):
    _check(ctx)
    if ctx.attr.normalize_src:
        return _normalized_src(ctx)
    if ctx.file.src:
        return [
            DefaultInfo(files = depset([ctx.file.src]), runfiles = ctx.runfiles([ctx.file.src])),
            OtaBootImageInfo(image = ctx.file.src, header_version = -1, prebuilt = True, normalized = False),
        ]
    out = ctx.actions.declare_file(ctx.label.name + ".img")
    version = ctx.attr.header_version
    args = ctx.actions.args()
    args.add("build")
    inputs = []
    for name in ["kernel", "ramdisk", "second", "recovery_dtbo", "dtb"]:
        f = getattr(ctx.file, name)
        if f:
            args.add("--" + name, f)
            inputs.append(f)
    args.add("--header_version", str(version))
    if version < 3:
        args.add("--pagesize", str(ctx.attr.page_size or 2048))
        for name in _ADDRESS_ATTRS:
            if getattr(ctx.attr, name):
                args.add("--%s=%s" % (name, _hex(ctx, name)))
        if ctx.attr.board:
            args.add("--board", ctx.attr.board)
    args.add("--cmdline=" + ctx.attr.cmdline)
    if ctx.attr.os_version:
        args.add("--os_version", ctx.attr.os_version)
    if ctx.attr.os_patch_level:
        args.add("--os_patch_level", ctx.attr.os_patch_level)
    if ctx.attr.normalize_compression:
        args.add("--normalize_gzip")
    args.add("--output", out)
    inputs.append(add_toolchain_identity(ctx, args))
    ctx.actions.run(
        executable = ctx.executable._bootimg,
        arguments = [args],
        inputs = inputs,
        outputs = [out],
        mnemonic = "OtaBootImage",
        progress_message = "Building boot image %s (header v%d)" % (ctx.label, version),
    )
    return [
        DefaultInfo(files = depset([out]), runfiles = ctx.runfiles([out])),
        OtaBootImageInfo(
            image = out,
            header_version = version,
            prebuilt = False,
            normalized = ctx.attr.normalize_compression,
        ),
    ]

_SECTION_DOC = "Optional %s section (a single file); header version %s only."

ota_boot_image = rule(
    implementation = _boot_image_impl,
    doc = """An Android boot image, byte-compatible with mkbootimg (one OtaBootImage action), or a
prebuilt image (`src`: no action, or one OtaBootNormalize action with `normalize_src`).

By default compressed sections are normalized: a kernel or ramdisk that is a gzip stream zlib
cannot reproduce (GNU gzip, a kernel build) is inflated and recompressed by zlib with recorded
parameters, so imgdiff can later patch it in uncompressed space (see docs/rules.md).""",
    attrs = dict(TOOLCHAIN_IDENTITY_ATTRS, **{
        "src": attr.label(
            allow_single_file = True,
            doc = "A prebuilt boot image, used as it is (e.g. IMAGES/boot.img of an imported " +
                  "release). Excludes every section attribute.",
        ),
        "kernel": attr.label(allow_single_file = True, doc = "The kernel (raw or gzip'd); required without `src`."),
        "ramdisk": attr.label(
            allow_single_file = True,
            doc = "The ramdisk: usually an `ota_ramdisk` target; any single file works.",
        ),
        "second": attr.label(allow_single_file = True, doc = _SECTION_DOC % ("second-stage loader", "0-2")),
        "recovery_dtbo": attr.label(allow_single_file = True, doc = _SECTION_DOC % ("recovery DTBO", "1-2")),
        "dtb": attr.label(allow_single_file = True, doc = _SECTION_DOC % ("device tree blob", "2")),
        "cmdline": attr.string(doc = "Kernel command line (at most 1534 bytes for v0-v2, 1536 for v3/v4)."),
        "header_version": attr.int(default = 0, doc = "Boot image header version, 0 to 4."),
        "page_size": attr.int(
            default = 0,
            doc = "Page size: 2048, 4096, 8192 or 16384; 0 = 2048 (v0-v2). v3/v4 always use 4096.",
        ),
        "base": attr.string(doc = "v0-v2: base address, hex (default 0x10000000)."),
        "kernel_offset": attr.string(doc = "v0-v2: kernel offset from base, hex (default 0x00008000)."),
        "ramdisk_offset": attr.string(doc = "v0-v2: ramdisk offset, hex (default 0x01000000)."),
        "second_offset": attr.string(doc = "v0-v2: second offset, hex (default 0x00f00000)."),
        "tags_offset": attr.string(doc = "v0-v2: tags offset, hex (default 0x00000100)."),
        "dtb_offset": attr.string(doc = "v2: dtb offset, hex (default 0x01f00000)."),
        "board": attr.string(doc = "v0-v2: board name, at most 16 bytes."),
        "os_version": attr.string(doc = "OS version A.B.C, e.g. \"14.0.0\" (empty: 0)."),
        "os_patch_level": attr.string(doc = "Security patch level YYYY-MM (empty: 0)."),
        "normalize_compression": attr.bool(
            default = True,
            doc = "Recompress a kernel or ramdisk that is a gzip stream zlib cannot reproduce " +
                  "(GNU gzip, a kernel build) with zlib, so imgdiff can patch it uncompressed. " +
                  "False keeps the sections' bytes exactly.",
        ),
        "normalize_src": attr.bool(
            default = False,
            doc = "With `src`: unpack the prebuilt image, recompress every gzip member of its " +
                  "kernel and ramdisk with zlib and repack it with the same header values, so " +
                  "imgdiff can patch it uncompressed. For a TARGET image only, before any signing; " +
                  "a signed image is refused (see `drop_signature`).",
        ),
        "drop_signature": attr.bool(
            default = False,
            doc = "With `normalize_src`: drop an AVB footer, a v4 boot signature or other bytes " +
                  "after the last section instead of refusing the image. The result is unsigned: " +
                  "sign it again after this rule.",
        ),
        "_bootimg": attr.label(
            default = "//tools:ota_bootimg",
            executable = True,
            cfg = "exec",
        ),
    }),
)
