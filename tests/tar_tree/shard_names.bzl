"""starlark_shards: the shard rules/private/tar_tree.bzl computes for a list of names, as JSON,
so test_shards.py can check that Starlark and py/ota/actions/shard_layout.py agree byte for byte.
starlark_shard_args: the command line the shard actions get for such names, so
test_shard_args.py can feed the tool exactly what Bazel writes."""

# buildifier: disable=bzl-visibility
load("//rules/private:tar_tree.bzl", "TAR_SHARDS", "shard_of", "side_args")  # a test of private helpers

# Each name's characters are its bytes: octal escapes give bytes >= 0x80 and control bytes.
NAMES = [
    "bin/sh",
    "etc/conf",
    "usr/share/doc/F\305\221tan\303\272s\303\255tv\303\241ny.crt",
    "lib/systemd/system/system-systemd\\x2dcryptsetup.slice",
    "latin1-\351t\351",
    "\377\376",
    "line\nbreak",
    "with space/.hidden",
    "a",
    "",
]

def _impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name + ".json")
    ctx.actions.write(out, json.encode({
        "shards": TAR_SHARDS,
        "by_name": [[name, shard_of(name, TAR_SHARDS), shard_of(name, 1000003)] for name in NAMES],
    }) + "\n")
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles([out]))]

starlark_shards = rule(implementation = _impl)

# Paths for starlark_shard_args: one of every byte class an install path may hold, including the
# ones the one-argument-a-line param file could not carry unescaped ('\n', '\r') and values that
# look like flags or format strings.
ARG_NAMES = [name for name in NAMES if name] + [
    "--looks-like-a-flag",
    "-",
    "percent %s %% %d",
    "equals=sign=twice",
    "quote\"d and back\\slash",
    "cr\rlf\r\n",
    "tab\tdel\177bell\007",
    "trailing space ",
    " leading space",
    ".../..x/.hidden",
    "x" * 255 + "/" + "\303\251" * 100,
]

def _args_impl(ctx):
    """Writes the real side_args of rules/private/tar_tree.bzl for ARG_NAMES, as Bazel expands it.

    Each name gets a file; every shard that holds a name adds its side, and the Args are
    written as a "multiline" file, the format of the shard action's param file.
    """
    files = {}
    for index, name in enumerate(ARG_NAMES):
        file = ctx.actions.declare_file("%s_files/%d" % (ctx.label.name, index))
        ctx.actions.write(file, "%d\n" % index)
        files[name] = file
    tree = struct(files = files)
    buckets = [[] for _ in range(TAR_SHARDS)]
    for name in sorted(ARG_NAMES):
        buckets[shard_of(name, TAR_SHARDS)].append(name)
    args = ctx.actions.args()
    args.set_param_file_format("multiline")
    for shard in range(TAR_SHARDS):
        if buckets[shard]:
            args.add("--shard=%d" % shard)
            side_args(args, tree, buckets, "target", shard)
    params = ctx.actions.declare_file(ctx.label.name + ".params")
    ctx.actions.write(params, args)
    names = ctx.actions.declare_file(ctx.label.name + ".json")
    ctx.actions.write(names, json.encode({"names": ARG_NAMES, "files": [files[n].path for n in ARG_NAMES]}) + "\n")
    return [DefaultInfo(files = depset([params, names]), runfiles = ctx.runfiles([params, names]))]

starlark_shard_args = rule(implementation = _args_impl)
