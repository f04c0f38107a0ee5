"""Module extensions for Bazel 7/8 (bzlmod). Loaded only by MODULE.bazel: Bazel 4.2.3 cannot parse
module_extension, and an undefined global fails the whole .bzl file at load time."""

load("//rules:repositories.bzl", "ota_release_archive", "ota_tree_repository")
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
    doc = "pip_lock_repository as a module extension, so @rules_ota_pypi has the same labels as under WORKSPACE.",
)

# --- ota_release: import shipped release archives (rules_ota's ota_release_archive) -------------

# The attributes of ota_release_archive (docs/rules.md), plus the repository name.
_archive = tag_class(
    attrs = {
        "archive": attr.label(allow_single_file = [".zip"]),
        "name": attr.string(mandatory = True),
        "rules_ota_repo": attr.string(default = "@rules_ota"),
        "sha256": attr.string(),
        "urls": attr.string_list(),
    },
    doc = "One release archive to import as @<name> (targets :build, :system, :boot).",
)

def _ota_release_impl(mctx):
    for mod in mctx.modules:
        for tag in mod.tags.archive:
            ota_release_archive(
                name = tag.name,
                archive = tag.archive,
                urls = tag.urls,
                sha256 = tag.sha256,
                rules_ota_repo = tag.rules_ota_repo,
            )

ota_release = module_extension(
    implementation = _ota_release_impl,
    tag_classes = {"archive": _archive},
    doc = "ota_release_archive as a module extension: " +
          "`ota_release.archive(name = \"release_v1\", urls = [...], sha256 = \"...\")`.",
)

# --- ota_tree: import host directories as system trees (rules_ota's ota_tree_repository) --------

# The attributes of ota_tree_repository (docs/rules.md), plus the repository name.
_directory = tag_class(
    attrs = {
        "name": attr.string(mandatory = True),
        "path": attr.string(mandatory = True),
        "python": attr.string(default = "python3"),
        "rules_ota_repo": attr.string(default = "@rules_ota"),
        "scan_cache": attr.bool(default = True),
        "timeout": attr.int(default = 3600),
    },
    doc = "One host directory to import as @<name>//:tree (the `tree` of ota_system_image or ota_ramdisk).",
)

def _ota_tree_impl(mctx):
    for mod in mctx.modules:
        for tag in mod.tags.directory:
            ota_tree_repository(
                name = tag.name,
                path = tag.path,
                python = tag.python,
                rules_ota_repo = tag.rules_ota_repo,
                scan_cache = tag.scan_cache,
                timeout = tag.timeout,
            )

ota_tree = module_extension(
    implementation = _ota_tree_impl,
    tag_classes = {"directory": _directory},
    doc = "ota_tree_repository as a module extension: " +
          "`ota_tree.directory(name = \"device_tree\", path = \"/srv/trees/v2\")`.",
)
