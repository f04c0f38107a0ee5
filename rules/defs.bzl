"""rules_ota public API. Attribute reference: docs/rules.md.

    load("@rules_ota//rules:defs.bzl", "boot_image", "ota_build", "ota_package", "ota_test",
         "ramdisk", "system_image")

Rules:
  ramdisk            a file tree packed as a deterministic gzip'd newc cpio
  boot_image         an Android boot image (header v0-v4) or a prebuilt one
  system_image       the system partition as a file tree, plus its manifest
  ota_build          one device build: identity, boot image, system image, other partitions
  ota_package        a full (no source) or incremental OTA package
  ota_build_archive  the release archive of an ota_build, to import it later
  ota_test           applies a package to a device made from the source build; expects the target
Repository rules (also in //rules:repositories.bzl):
  ota_release_archive  imports a release archive as @<name>//:build (WORKSPACE; for bzlmod see
                       //bazel:extensions.bzl, `ota_release`)
  ota_tree_repository  imports a host directory as @<name>//:tree, the `tree` of system_image or
                       ramdisk (WORKSPACE; for bzlmod see //bazel:extensions.bzl, `ota_tree`)
Providers: //rules:providers.bzl.
"""

load("//rules/private:boot_image.bzl", _boot_image = "boot_image")
load("//rules/private:ota_build.bzl", _ota_build = "ota_build")
load("//rules/private:ota_package.bzl", _ota_package = "ota_package")
load("//rules/private:ota_test.bzl", _ota_test = "ota_test")
load("//rules/private:ramdisk.bzl", _ramdisk = "ramdisk")
load("//rules/private:release_archive.bzl", _ota_build_archive = "ota_build_archive")
load("//rules/private:release_archive_repo.bzl", _ota_release_archive = "ota_release_archive")
load("//rules/private:system_image.bzl", _system_image = "system_image")
load("//rules/private:tree_repository.bzl", _ota_tree_repository = "ota_tree_repository")

boot_image = _boot_image
ota_build = _ota_build
ota_build_archive = _ota_build_archive
ota_package = _ota_package
ota_release_archive = _ota_release_archive
ota_test = _ota_test
ota_tree_repository = _ota_tree_repository
ramdisk = _ramdisk
system_image = _system_image
