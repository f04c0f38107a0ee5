"""ramdisk: a deterministic gzip'd newc cpio archive of a file tree."""

load("@bazel_skylib//lib:dicts.bzl", "dicts")
load(":tar_tree.bzl", "TAR_TREE_ATTRS", "tar_tree")
load(":tree.bzl", "TREE_ATTRS", "collect_tree", "run_tree_tool", "write_tree")

def _ramdisk_impl(ctx):
    if ctx.file.tar:
        tree = tar_tree(ctx).tree
    else:
        tree = write_tree(ctx, collect_tree(ctx), ctx.actions.declare_file(ctx.label.name + ".tree.json"))
    out = ctx.actions.declare_file(ctx.label.name + ".cpio.gz")
    run_tree_tool(
        ctx,
        tree,
        ctx.executable._ramdisk_tool,
        out,
        "OtaRamdisk",
        "Packing ramdisk %s (%d entries)" % (ctx.label, len(tree.entries)),
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles([out])), tree]

ota_ramdisk = rule(
    implementation = _ramdisk_impl,
    doc = """A boot ramdisk: the tree (same attributes as ota_system_image) packed as a newc cpio
archive, sorted, with fixed inode numbers and times, gzip'd by zlib with recorded parameters, so
imgdiff can patch it in uncompressed space. Output: `<name>.cpio.gz`; also provides OtaTreeInfo.""",
    attrs = dicts.add(TREE_ATTRS, TAR_TREE_ATTRS, {
        "_kind": attr.string(default = "ota_ramdisk"),
        "_ramdisk_tool": attr.label(
            default = "//tools/actions:ramdisk",
            executable = True,
            cfg = "exec",
        ),
    }),
)
