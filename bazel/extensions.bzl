"""Module extensions for Bazel 7/8 (bzlmod). Loaded only by MODULE.bazel: Bazel 4.2.3 cannot parse
module_extension, and an undefined global fails the whole .bzl file at load time."""

load(":pip.bzl", "pip_lock_repository")

_lock = tag_class(attrs = {
    "name": attr.string(mandatory = True),
    "requirements_lock": attr.label(mandatory = True),
    "python": attr.string(default = "python3"),
})

def _pip_lock_impl(mctx):
    for mod in mctx.modules:
        for tag in mod.tags.lock:
            pip_lock_repository(
                name = tag.name,
                requirements_lock = tag.requirements_lock,
                python = tag.python,
            )

pip_lock = module_extension(
    implementation = _pip_lock_impl,
    tag_classes = {"lock": _lock},
    doc = "pip_lock_repository as a module extension, so @pypi has the same labels as under WORKSPACE.",
)
