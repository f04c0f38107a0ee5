"""rules_ota repository rules, for WORKSPACE (bzlmod: //bazel:extensions.bzl). Reference: docs/rules.md.

    load("@rules_ota//rules:repositories.bzl", "ota_release_archive", "ota_tree_repository")

  ota_tree_repository  imports a directory of the build host as @<name>//:tree, the `tree` input
                       of ota_system_image and ota_ramdisk (modes, owners, symlinks, empty directories)
  ota_release_archive  imports a release archive as @<name>//:build (bzlmod: `ota_release` in
                       //bazel:extensions.bzl)
  ota_imported_tree    the rule of the `:tree` target an ota_tree_repository generates (not for
                       hand-written BUILD files)
"""

load("//rules/private:imported_tree.bzl", _ota_imported_tree = "ota_imported_tree")
load("//rules/private:release_archive_repo.bzl", _ota_release_archive = "ota_release_archive")
load("//rules/private:tree_repository.bzl", _ota_tree_repository = "ota_tree_repository")

ota_imported_tree = _ota_imported_tree
ota_release_archive = _ota_release_archive
ota_tree_repository = _ota_tree_repository
