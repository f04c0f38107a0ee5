"""The toolchain identity in every Ota* action's key (docs/ci-and-remote-cache.md).

@rules_ota_pypi//:toolchain_identity is one file, `toolchain_identity/<sha256>.json`, recording the Python,
zlib, bsdiff4, protobuf and cryptography versions the actions run with (bazel/pip.bzl writes it
once per fetch). Every Ota* action lists it as an input and names it on its command line: the
digest in the name makes the identity part of the action key (a key holds the command line, not
the inputs' contents), and the tool reads the file to check it runs on that toolchain
(py/ota/actions/toolchain_identity.py).
"""

TOOLCHAIN_IDENTITY_ATTRS = {
    "_toolchain_identity": attr.label(
        default = "@rules_ota_pypi//:toolchain_identity",
        allow_single_file = [".json"],
    ),
}

def add_toolchain_identity(ctx, args):
    """Adds `--toolchain_identity <file>` to an action's arguments.

    Args:
      ctx: the context of a rule with TOOLCHAIN_IDENTITY_ATTRS.
      args: the action's Args.

    Returns:
      The identity File, which the action must list among its inputs.
    """
    identity = ctx.file._toolchain_identity
    args.add("--toolchain_identity", identity)
    return identity
