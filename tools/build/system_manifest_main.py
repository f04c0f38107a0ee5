"""Bazel entry point of //tools/build:system_manifest (the logic lives in ota.build.system_manifest)."""

from ota.build import system_manifest

if __name__ == "__main__":
    system_manifest.run()
