"""rules_ota repository rules, for WORKSPACE (bzlmod: //bazel:extensions.bzl). Reference: docs/rules.md.

    load("@rules_ota//rules:repositories.bzl", "ota_release_archive", "ota_tree_repository")

  ota_tree_repository  imports a directory of the build host as @<name>//:tree, the `tree` input
                       of system_image and ramdisk (modes, owners, symlinks, empty directories)
  ota_release_archive  imports a release archive as @<name>//:build (also in //rules:defs.bzl)
"""

load("//rules/private:release_archive_repo.bzl", _ota_release_archive = "ota_release_archive")
load("//rules/private:tree_repository.bzl", _ota_tree_repository = "ota_tree_repository")

ota_release_archive = _ota_release_archive
ota_tree_repository = _ota_tree_repository
