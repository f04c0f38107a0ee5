"""ota_build_archive: writes the release archive (target-files style zip) of an ota_build, so a
build shipped today can be the source of tomorrow's incremental packages
(docs/contracts.md#5-release-archive)."""

load(":providers.bzl", "OtaBuildInfo")
load(":toolchain_identity.bzl", "TOOLCHAIN_IDENTITY_ATTRS", "add_toolchain_identity")

def _ota_build_archive_impl(ctx):
    build = ctx.attr.build[OtaBuildInfo]
    tree = build.system.tree
    out = ctx.actions.declare_file(ctx.label.name + ".zip")
    args = ctx.actions.args()
    args.add("--build_json", build.build_json)
    args.add("--system_manifest", build.system.manifest)
    args.add("--tree", tree.tree_json)
    images = []
    for name in sorted(build.partitions.keys()):
        args.add("--partition", "%s=%s" % (name, build.partitions[name].path))
        images.append(build.partitions[name])
    args.add("--out", out)
    identity = add_toolchain_identity(ctx, args)
    ctx.actions.run(
        executable = ctx.executable._release_archive,
        arguments = [args],
        inputs = depset(
            [build.build_json, build.system.manifest, tree.tree_json, identity] + images,
            transitive = [tree.files_depset],
        ),
        outputs = [out],
        mnemonic = "OtaReleaseArchive",
        progress_message = "Writing release archive of %s (%d files, %d images)" % (
            ctx.attr.build.label,
            len(tree.files),
            len(images),
        ),
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles([out]))]

ota_build_archive = rule(
    implementation = _ota_build_archive_impl,
    doc = """The release archive of an ota_build: `<name>.zip` with META/build.json,
META/system_manifest.json, SYSTEM/<path> for every regular file and IMAGES/<partition>.img.
Keep it with the release; ota_release_archive imports it later as a package source.""",
    attrs = dict(TOOLCHAIN_IDENTITY_ATTRS, **{
        "build": attr.label(mandatory = True, providers = [OtaBuildInfo], doc = "The ota_build to archive."),
        "_release_archive": attr.label(
            default = "//tools/actions:release_archive",
            executable = True,
            cfg = "exec",
        ),
    }),
)
