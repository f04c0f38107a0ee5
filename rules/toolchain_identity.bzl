"""The toolchain identity for rules of your own that run rules_ota's Python tools, such as the
example release's generator (release/gen.bzl): their actions are keyed on, and checked against,
the same identity as every Ota* action (docs/ci-and-remote-cache.md, "Toolchain identity")."""

load(
    "//rules/private:toolchain_identity.bzl",
    _TOOLCHAIN_IDENTITY_ATTRS = "TOOLCHAIN_IDENTITY_ATTRS",
    _add_toolchain_identity = "add_toolchain_identity",
)

TOOLCHAIN_IDENTITY_ATTRS = _TOOLCHAIN_IDENTITY_ATTRS
add_toolchain_identity = _add_toolchain_identity
