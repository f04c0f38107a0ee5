"""Bazel entry point of //tools/build:release_archive (the logic lives in ota.build.release_archive)."""

from ota.build import release_archive

if __name__ == "__main__":
    release_archive.run()
