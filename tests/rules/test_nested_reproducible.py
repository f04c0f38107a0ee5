"""Two copies of the checkout at different paths, each with its own output root and no shared
cache, build byte-identical packages and release archive (runs Bazel twice: nested_bazel.py)."""

from __future__ import annotations

from nested_bazel import NestedWorkspace

TARGETS = ("//release:incremental_ota", "//release:full_ota", "//release:v1_archive")
OUTPUTS = ("release/incremental_ota.zip", "release/full_ota.zip", "release/v1_archive.zip")


def test_two_checkouts_build_byte_identical_outputs(tmp_path) -> None:
    first = NestedWorkspace.create(tmp_path, "a")
    second = NestedWorkspace.create(tmp_path / "elsewhere" / "deeper", "b")
    for ws in (first, second):
        try:
            ws.build(*TARGETS)
        finally:
            ws.close()
    assert first.root != second.root
    for out in OUTPUTS:
        assert first.bin(out).read_bytes() == second.bin(out).read_bytes(), out
