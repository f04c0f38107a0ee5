"""Bazel entry point of //tools/build:ramdisk (the logic lives in ota.build.ramdisk)."""

from ota.build import ramdisk

if __name__ == "__main__":
    ramdisk.run()
