"""Bazel entry point of //tools/build:package (the logic lives in ota.build.package_writer)."""

from ota.build import package_writer

if __name__ == "__main__":
    package_writer.run()
