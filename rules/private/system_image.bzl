"""ota_system_image: the system partition as a file tree plus its manifest."""

load("@bazel_skylib//lib:dicts.bzl", "dicts")
load(":providers.bzl", "OtaSystemImageInfo")
load(":tar_tree.bzl", "TAR_TREE_ATTRS", "tar_tree")
load(":tree.bzl", "TREE_ATTRS", "collect_tree", "run_tree_tool", "write_tree")

def _tar_system_image(ctx):
    """A system image read from `tar` (rules/private/tar_tree.bzl): one OtaTarTree action."""
    tar = tar_tree(ctx)
    outputs = [tar.manifest, tar.tree.tree_json]
    return [
        DefaultInfo(files = depset(outputs), runfiles = ctx.runfiles(outputs)),
        tar.tree,
        OtaSystemImageInfo(tree = tar.tree, manifest = tar.manifest),
    ]

def _manifest_entry(entry, contents):
    """The manifest entry (docs/contracts.md#2-system-manifest) of a tree entry.

    A file's exec path is replaced by its recorded size and digests; keys in sorted order, as the
    tool writes them (a tree entry's keys are already sorted, rules/private/tree.bzl).
    """
    if entry["kind"] != "file":
        return entry
    recorded = contents[entry["path"]]
    return {
        "gid": entry["gid"],
        "kind": "file",
        "mode": entry["mode"],
        "path": entry["path"],
        "sha1": recorded["sha1"],
        "sha256": recorded["sha256"],
        "size": recorded["size"],
        "uid": entry["uid"],
    }

def _recorded_manifest(ctx, tree, manifest):
    """Writes the manifest of a tree whose every file's size, SHA-256 and SHA-1 are recorded.

    That is a tree from an imported directory, a release archive's (`contents`), or labels whose
    `contents` are all given: no action, so a rebuild hashes nothing the scan or the archive
    already hashed.
    """
    ctx.actions.write(
        output = manifest,
        content = json.encode({"entries": [_manifest_entry(e, tree.contents) for e in tree.entries]}) + "\n",
    )

def _system_image_impl(ctx):
    if ctx.file.tar:
        return _tar_system_image(ctx)
    collected = collect_tree(ctx)
    tree = write_tree(ctx, collected, ctx.actions.declare_file(ctx.label.name + ".tree.json"))
    manifest = ctx.actions.declare_file(ctx.label.name + ".manifest.json")
    if collected.manifest:
        # The tree is an imported one exactly: its scan wrote this manifest, the same bytes
        # _recorded_manifest would (docs/contracts.md#10-imported-directory).
        ctx.actions.symlink(output = manifest, target_file = collected.manifest)
    elif len(tree.contents) == len(tree.files):
        _recorded_manifest(ctx, tree, manifest)
    else:
        run_tree_tool(
            ctx,
            tree,
            ctx.executable._system_manifest,
            manifest,
            "OtaSystemManifest",
            "Hashing %d system files of %s" % (len(tree.files), ctx.label),
        )
    return [
        DefaultInfo(
            files = depset([manifest, tree.tree_json]),
            runfiles = ctx.runfiles([manifest, tree.tree_json]),
        ),
        tree,
        OtaSystemImageInfo(tree = tree, manifest = manifest),
    ]

ota_system_image = rule(
    implementation = _system_image_impl,
    doc = """The system partition of a device build, as a tree of files, directories and symlinks.

Every regular file is a label, or a file of a directory imported by ota_tree_repository (`tree`),
so an ota_package can tell at analysis time which paths are the same File or have the same known
SHA-256 in two builds (no action) and which may differ (one OtaFilePatch action each). Two
sources for one install path are an analysis error naming both.

Outputs `<name>.tree.json` (docs/contracts.md#1-tree-description) and `<name>.manifest.json`
(docs/contracts.md#2-system-manifest: sizes and hashes, one OtaSystemManifest action; none when
every regular file's contents are recorded, by `tree`'s scan or `contents`, so the manifest is
written while Bazel analyzes; when the image is that tree alone, it is a symlink to the manifest
the scan wrote).

With `tar`, the tree is the archive's: one OtaTarTree action writes both files and the shard
directories, and an ota_package patches it by shards (docs/rules.md, "Tar input").""",
    attrs = dicts.add(TREE_ATTRS, TAR_TREE_ATTRS, {
        "_kind": attr.string(default = "ota_system_image"),
        "_system_manifest": attr.label(
            default = "//tools/actions:system_manifest",
            executable = True,
            cfg = "exec",
        ),
    }),
)
