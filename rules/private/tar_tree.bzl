"""Tree input from a tar archive another target builds, and the shard actions that patch it.

A tar's members are only known when an action reads it, so nothing about its paths exists at
analysis time. One OtaTarTree action reads the archive and writes the system manifest, the tree
description and TAR_SHARDS directories holding the regular files, each file in the shard its
path's bytes hash to (py/ota/actions/shard_layout.py). ota_package then declares TAR_SHARDS
OtaFilePatchShard actions, shard k reading only shard k of each side, so a change to one file
re-runs one shard (docs/rules.md, "Tar input"). The same split batches the small changed files of
two trees known at analysis time into buckets (file_patch_buckets, docs/rules.md, "Batches").
"""

load(":names.bzl", "escape")
load(":patch_methods.bzl", "add_diff_options")
load(":providers.bzl", "OtaTreeInfo")
load(":toolchain_identity.bzl", "add_toolchain_identity")

# Measured in docs/rules.md, "Tar input" and "Batches": the fixed number of shards of every
# tar-backed tree, and of buckets of small changed files. Fixed, so a path's bucket never moves
# when other paths come or go.
TAR_SHARDS = 32

TAR_TREE_ATTRS = {
    "tar": attr.label(
        allow_single_file = True,
        doc = "A tar archive (plain, gzip, bzip2 or xz) holding the whole tree, e.g. a " +
              "`pkg_tar` output or a genrule's. Modes, owners, symlinks, hard links (as " +
              "copies) and empty directories are taken from it exactly (docs/rules.md, " +
              "\"Tar input\"). Excludes every other tree attribute.",
    ),
    "tar_max_entries": attr.int(
        default = 1000000,
        doc = "With `tar`: refuse an archive of more members than this.",
    ),
    "tar_max_size_mb": attr.int(
        default = 16384,
        doc = "With `tar`: refuse an archive whose regular files (hard links counted again) " +
              "hold more than this many MiB, before they fill the disk.",
    ),
    "_tar_tree": attr.label(
        default = "//tools/actions:tar_tree",
        executable = True,
        cfg = "exec",
    ),
}

# Tree attributes a `tar` replaces: setting one of them too is an analysis error.
_LABEL_TREE_ATTRS = ["dirs", "files", "modes", "owners", "strip_prefix", "symlinks", "tree", "trees"]

def tar_tree(ctx):
    """Declares the OtaTarTree action of a rule whose `tar` is set.

    Args:
      ctx: the context of a rule with TREE_ATTRS, TAR_TREE_ATTRS and a private `_kind` string.

    Returns:
      struct(tree = OtaTreeInfo (no entries or files at analysis time; `tar_shards` set),
             manifest = the system manifest File).
    """
    for name in _LABEL_TREE_ATTRS:
        if getattr(ctx.attr, name):
            fail("%s %s: tar and %s exclude each other (the archive is the whole tree)" % (ctx.attr._kind, ctx.label, name))
    if ctx.attr.tar_max_entries < 1 or ctx.attr.tar_max_size_mb < 0:
        fail("%s %s: tar_max_entries must be positive and tar_max_size_mb not negative" % (ctx.attr._kind, ctx.label))
    prefix = ctx.label.name + ".tar_tree"
    shards = [ctx.actions.declare_directory("%s/shard_%d" % (prefix, k)) for k in range(TAR_SHARDS)]
    tree_json = ctx.actions.declare_file(ctx.label.name + ".tree.json")
    manifest = ctx.actions.declare_file(ctx.label.name + ".manifest.json")
    args = ctx.actions.args()
    args.add("--tar", ctx.file.tar)
    args.add_all(shards, before_each = "--shard_dir", expand_directories = False)
    args.add("--out_tree", tree_json)
    args.add("--out_manifest", manifest)
    args.add("--max_entries", ctx.attr.tar_max_entries)
    args.add("--max_total_size", "%d" % (ctx.attr.tar_max_size_mb * 1048576))
    identity = add_toolchain_identity(ctx, args)
    ctx.actions.run(
        executable = ctx.executable._tar_tree,
        arguments = [args],
        inputs = [ctx.file.tar, identity],
        outputs = shards + [tree_json, manifest],
        mnemonic = "OtaTarTree",
        progress_message = "Reading tree %s from %s" % (ctx.label, ctx.file.tar.short_path),
    )
    tree = OtaTreeInfo(
        tree_json = tree_json,
        entries = [],
        files = {},
        files_depset = depset(shards),
        sha256s = {},
        contents = {},
        tar_shards = shards,
    )
    return struct(tree = tree, manifest = manifest)

def shard_of(path, shards):
    """The shard of an install path: the same function as shard_of in py/ota/actions/shard_layout.py.

    Starlark's `hash` is Java's String.hashCode, and a Starlark string's characters are its bytes.
    """
    word = 4294967296
    return (hash(path) % word) * 1540483477 % word * shards // word

def _buckets(paths):
    """`paths` (sorted) split by shard_of into TAR_SHARDS lists."""
    buckets = [[] for _ in range(TAR_SHARDS)]
    for path in paths:
        buckets[shard_of(path, TAR_SHARDS)].append(path)
    return buckets

def _tree_buckets(tree):
    """The install paths of a tree known at analysis time, by shard (None for a tar tree)."""
    if getattr(tree, "tar_shards", None):
        return None
    return _buckets(sorted(tree.files.keys()))

def side_args(args, tree, buckets, name, shard):
    """Adds one side of shard `shard` to `args`; returns its input Files.

    A tar tree's side is its shard directory. A side known at analysis time goes on the command
    line as pairs: the i-th `--<name>_path` (the install path, `escape`d: it may hold any byte but
    NUL and '/', and the param file holds one argument a line) names the i-th `--<name>_file`.
    `escape` runs as `map_each`, when the action's command line is expanded, so analysis neither
    walks the paths nor writes a listing action per bucket. An empty bucket adds no pair.

    Args:
      args: the action's Args.
      tree: the side's OtaTreeInfo (`tar_shards` for a tar tree, else `files`: path -> File).
      buckets: the side's paths by shard (TAR_SHARDS sorted lists), None for a tar tree.
      name: "target" or "source", the flags' prefix.
      shard: the shard (bucket) number.

    Returns:
      The side's input Files for the action.
    """
    if buckets == None:
        args.add("--%s_dir" % name, tree.tar_shards[shard].path)
        return [tree.tar_shards[shard]]
    files = [tree.files[p] for p in buckets[shard]]
    args.add_all(buckets[shard], map_each = escape, format_each = "--%s_path=%%s" % name)
    args.add_all(files, format_each = "--%s_file=%%s" % name)
    return files

def _shard_actions(ctx, source_tree, target_tree, source_buckets, target_buckets, prefix):
    """Declares the TAR_SHARDS OtaFilePatchShard actions; returns their output directories.

    A side's buckets are None for a tar tree (its shard directories are the input). The command
    line goes into a param file of exec paths, as OtaFilePatch's does, so the actions run in a
    persistent worker (py/ota/actions/persistent_worker.py) and keep their keys from any checkout.
    """
    outs = []
    for shard in range(TAR_SHARDS):
        out = ctx.actions.declare_directory("%s/shard_%d" % (prefix, shard))
        args = ctx.actions.args()
        args.add("--shard", shard)
        args.add("--shards", TAR_SHARDS)
        inputs = side_args(args, target_tree, target_buckets, "target", shard)
        if source_tree:
            inputs += side_args(args, source_tree, source_buckets, "source", shard)
        args.add("--patch_methods", json.encode(ctx.attr.patch_methods))
        add_diff_options(ctx, args)
        args.add("--out_dir", out.path)
        inputs.append(add_toolchain_identity(ctx, args))
        args.use_param_file("@%s", use_always = True)
        args.set_param_file_format("multiline")
        ctx.actions.run(
            executable = ctx.executable._file_patch_shard,
            arguments = [args],
            inputs = inputs,
            outputs = [out],
            mnemonic = "OtaFilePatchShard",
            progress_message = "Diffing system shard %d of %d for %s" % (shard + 1, TAR_SHARDS, ctx.label),
            execution_requirements = {"supports-workers": "1"},
        )
        outs.append(out)
    return outs

def file_patch_shards(ctx, source, target, prefix):
    """The OtaFilePatchShard actions of an ota_package when either system tree is a tar.

    Args:
      ctx: the ota_package context (needs `_file_patch_shard`, `patch_methods`, `patch_threshold`,
        `max_diff_size`).
      source: OtaBuildInfo of the source, or None for a full package.
      target: OtaBuildInfo of the target.
      prefix: directory (relative to the package) for the shard outputs.

    Returns:
      The list of shard output directories, in shard order; empty when neither tree is a tar
      (every path then has its own action, or is batched by file_patch_buckets).
    """
    trees = [target.system.tree] + ([source.system.tree] if source else [])
    if not [t for t in trees if getattr(t, "tar_shards", None)]:
        return []
    return _shard_actions(
        ctx,
        source.system.tree if source else None,
        target.system.tree,
        _tree_buckets(source.system.tree) if source else None,
        _tree_buckets(target.system.tree),
        prefix,
    )

def file_patch_buckets(ctx, source, target, paths, prefix):
    """The OtaFilePatchShard bucket actions of an ota_package's small changed files.

    They diff the changed `paths` of two trees known at analysis time, each path in the bucket
    shard_of gives it (ota_package's `batch_max_bytes`). Only `paths` are listed, on both sides, so a bucket's inputs are its own changed files and a
    one-file change re-runs the one bucket holding it. Empty buckets run too (a complete set is
    what the package assembler reads), at the cost of one worker request each.

    Args:
      ctx: the ota_package context, as for file_patch_shards.
      source: OtaBuildInfo of the source.
      target: OtaBuildInfo of the target.
      paths: sorted install paths present in both builds.
      prefix: directory (relative to the package) for the bucket outputs.

    Returns:
      The list of TAR_SHARDS output directories, in bucket order.
    """
    buckets = _buckets(paths)
    return _shard_actions(ctx, source.system.tree, target.system.tree, buckets, buckets, prefix)
