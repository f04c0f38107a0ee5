"""rules_ota public API. Attribute reference: docs/rules.md.

    load("@rules_ota//rules:defs.bzl", "ota_boot_image", "ota_build", "ota_build_archive",
         "ota_package", "ota_ramdisk", "ota_system_image", "ota_test")

Rules:
  ota_ramdisk        a file tree packed as a deterministic gzip'd newc cpio
  ota_boot_image     an Android boot image (header v0-v4) or a prebuilt one
  ota_system_image   the system partition as a file tree, plus its manifest
  ota_build          one device build: identity, boot image, system image, other partitions
  ota_package        a full (no source) or incremental OTA package
  ota_build_archive  the release archive of an ota_build, to import it later
  ota_test           applies a package to a device made from the source build; expects the target
Repository rules: //rules:repositories.bzl (ota_release_archive, ota_tree_repository).
Providers: //rules:providers.bzl.
"""

load("//rules/private:boot_image.bzl", _ota_boot_image = "ota_boot_image")
load("//rules/private:ota_build.bzl", _ota_build = "ota_build")
load("//rules/private:ota_package.bzl", _ota_package = "ota_package")
load("//rules/private:ota_test.bzl", _ota_test = "ota_test")
load("//rules/private:ramdisk.bzl", _ota_ramdisk = "ota_ramdisk")
load("//rules/private:release_archive.bzl", _ota_build_archive = "ota_build_archive")
load("//rules/private:system_image.bzl", _ota_system_image = "ota_system_image")

ota_boot_image = _ota_boot_image
ota_build = _ota_build
ota_build_archive = _ota_build_archive
ota_package = _ota_package
ota_ramdisk = _ota_ramdisk
ota_system_image = _ota_system_image
ota_test = _ota_test
