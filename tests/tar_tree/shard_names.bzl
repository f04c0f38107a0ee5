"""starlark_shards: the shard rules/private/tar_tree.bzl computes for a list of names, as JSON,
so test_shards.py can check that Starlark and py/ota/actions/shard_layout.py agree byte for byte."""

# buildifier: disable=bzl-visibility
load("//rules/private:tar_tree.bzl", "TAR_SHARDS", "shard_of")  # a test of a private helper

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
