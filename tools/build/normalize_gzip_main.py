"""Bazel entry point of //tools/build:normalize_gzip (the logic lives in ota.build.normalize_gzip)."""

from ota.build import normalize_gzip

if __name__ == "__main__":
    normalize_gzip.run()
