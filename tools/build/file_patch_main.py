"""Bazel entry point of //tools/build:file_patch (the logic lives in ota.build.file_patch)."""

from ota.build import file_patch

if __name__ == "__main__":
    file_patch.run()
