"""Images of imported trees (tests/rules/tree_input_tests.bzl fixtures) as Bazel wrote them.

An image that is an imported tree alone takes the tree's checked entries as they are; the same
tree with an override that changes nothing is walked entry by entry: both must write the same
bytes. A tree missing parent directories gets them with the image's defaults. Every tree
description is written when built (rules/private/tree.bzl `write_tree`), in canonical JSON.
"""

from __future__ import annotations

import pathlib

import pytest

from ota.format import jsonio

REPO = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): stay inside Bazel runfiles
HERE = REPO / "tests/rules"


def _read(name: str) -> tuple[bytes, list[dict]]:
    raw = (HERE / name).read_bytes()
    doc = jsonio.loads(raw, name)
    assert raw == jsonio.dumps(doc), name  # canonical: sorted keys, no spaces, one newline
    return raw, doc["entries"]


@pytest.mark.parametrize("suffix", ["tree.json", "manifest.json"])
def test_an_imported_tree_alone_is_the_walked_tree(suffix: str) -> None:
    alone, entries = _read(f"imported_tricky_system.{suffix}")
    walked, _ = _read(f"imported_tricky_walked_system.{suffix}")
    assert alone == walked
    paths = [e["path"] for e in entries]
    assert paths == sorted(paths, key=lambda p: p.encode("utf-8", "surrogateescape"))
    by_path = {e["path"]: e for e in entries}
    assert by_path["..a"]["mode"] == 0o4755 and by_path["..a"]["gid"] == 4294967295
    assert by_path["sp ace"]["target"].encode("utf-8", "surrogateescape") == b"/abs\xffolute"
    assert by_path["sp ace"]["mode"] == 0o777
    assert by_path["a\\b"]["mode"] == 0o1777 and by_path["x."]["mode"] == 0
    assert "\udcff\udcfe" in by_path  # the bytes 0xff 0xfe, as they are


def test_missing_parents_take_the_image_defaults() -> None:
    _, entries = _read("imported_incomplete_system.tree.json")
    got = [(e["path"], e["kind"], e["mode"], e["uid"], e["gid"]) for e in entries]
    assert got == [
        ("a", "dir", 0o750, 7, 8),
        ("a/b", "dir", 0o750, 7, 8),
        ("a/b/c", "file", 0o644, 0, 0),
        ("a/b/l", "symlink", 0o777, 0, 0),
        ("d", "dir", 0o755, 0, 0),
    ]
