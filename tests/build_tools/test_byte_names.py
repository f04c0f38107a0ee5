"""Any file name through the build tools: escape, JSON as Starlark writes it, file_patch's command
line (param file and worker), the release archive and ota_inspect keep every byte.

Names come from hypothesis (any bytes but NUL and '/') and from py/ota/testing/byte_names.py (every
kind a real tree has); illegal paths get one message per kind.
"""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st

from build_helpers import Item, run_ok, run_tool
from ota.actions import file_patch, persistent_worker, release_archive
from ota.errors import OtaError
from ota.format import jsonio, paths
from ota.format.paths import SCRATCH_DIR, escape, from_bytes, to_bytes, unescape
from ota.proto import ota_manifest_pb2 as pb
from ota.testing import byte_names

COMPONENT = st.binary(min_size=1, max_size=byte_names.NAME_MAX).map(
    lambda b: b.replace(b"\0", b"\1").replace(b"/", b"_")
)
LEGAL_COMPONENT = COMPONENT.filter(lambda b: b not in (b".", b".."))
PATH = (
    st.lists(LEGAL_COMPONENT, min_size=1, max_size=4)
    .map(b"/".join)
    .filter(lambda p: p.split(b"/")[0] != b".ota-scratch")
)


def starlark_json_string(name: bytes) -> bytes:
    """A JSON string the way Bazel 4.2.3's json.encode writes a Starlark string of these bytes
    (measured: \\b \\t \\n \\f \\r and \\u00XX for other control bytes, '"' and '\\' escaped,
    0x7f and every byte >= 0x80 written raw)."""
    short = {8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r", 34: b'\\"', 92: b"\\\\"}
    out = bytearray(b'"')
    for byte in name:
        out += short.get(byte, b"\\u%04x" % byte if byte < 0x20 else bytes([byte]))
    return bytes(out + b'"')


@settings(max_examples=300, deadline=None)
@given(PATH)
def test_escape_is_one_printable_line_and_unescape_inverts_it(path: bytes) -> None:
    name = from_bytes(path)
    assert to_bytes(name) == path
    shown = escape(name)
    assert shown.isascii() and shown.isprintable() and '"' not in shown
    assert unescape(shown, "test") == name
    assert paths.check_path(name, "test") == name


@settings(max_examples=300, deadline=None)
@given(PATH, st.binary(min_size=1).map(lambda b: b.replace(b"\0", b"x")))
def test_tree_json_as_starlark_writes_it_reads_back_byte_exact(path: bytes, target: bytes) -> None:
    raw = b'{"entries":[{"gid":0,"kind":"symlink","mode":511,"path":%s,"target":%s,"uid":0}]}' % (
        starlark_json_string(path),
        starlark_json_string(target),
    )
    doc = jsonio.loads(raw, "t.json")
    assert to_bytes(jsonio.get_path(doc["entries"][0], "path", "t.json")) == path
    assert to_bytes(jsonio.get_link_target(doc["entries"][0], "target", "t.json")) == target
    assert jsonio.loads(jsonio.dumps(doc), "again") == doc  # and the tools' own JSON keeps them


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (b"a/\0b", "a NUL byte is not allowed in a file name"),
        (b"a//b", "an empty component ('//' or a trailing '/') is not allowed"),
        (b"a/", "an empty component ('//' or a trailing '/') is not allowed"),
        (b"a/./b", "a '.' component is not allowed"),
        (b"../b", "a '..' component is not allowed"),
        (b"/etc", "absolute paths are not allowed"),
        (
            SCRATCH_DIR.encode() + b"/x",
            "'.ota-scratch' at the top of the tree is reserved for the updater's scratch files",
        ),
    ],
)
def test_what_stays_illegal_has_its_own_message(path: bytes, problem: str) -> None:
    with pytest.raises(OtaError) as error:
        paths.check_path(from_bytes(path), "where", "p")
    assert str(error.value) == f'where: p "{escape(from_bytes(path))}": {problem}'
    assert "\n" not in str(error.value)


def test_unescape_refuses_a_lone_backslash() -> None:
    for text in ("a\\", "a\\12", "a\\9999", "\\400"):
        with pytest.raises(OtaError, match="3-digit octal escape"):
            unescape(text, "--path")


def _names(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out = {from_bytes(byte_names.component(rng, kind)) for kind in sorted(byte_names.KINDS)}
    while len(out) < count:
        out.add(from_bytes(byte_names.component(rng)))
    return sorted(out - {SCRATCH_DIR})


def test_file_patch_gets_any_name_through_a_param_file_and_the_worker(tmp_path: Path) -> None:
    """Bazel passes `--path` escaped in a multiline param file (one argument per line) or a
    WorkRequest; the info JSON records the name's exact bytes either way."""
    (tmp_path / "old").write_bytes(b"one two three\n" * 50)
    (tmp_path / "new").write_bytes(b"one two four\n" * 50)
    for index, name in enumerate(_names(1, 30)):
        args = ["--source", "old", "--target", "new", "--path", escape(name)]
        args += ["--out_data", f"{index}.p", "--out_info", f"{index}.json"]
        (tmp_path / f"{index}.params").write_text("\n".join(args) + "\n")
        run_ok("ota.actions.file_patch", f"@{index}.params", cwd=tmp_path)
        info = jsonio.read(str(tmp_path / f"{index}.json"))
        assert info["path"] == name and info["method"] == "BSDIFF"
    outcome = persistent_worker.handle(
        [
            *("--source", str(tmp_path / "old"), "--target", str(tmp_path / "new")),
            *("--path", escape(name), "--out_data", str(tmp_path / "w.p"), "--out_info", str(tmp_path / "w.json")),
        ],
        file_patch.TOOL,
    )
    assert outcome.exit_code == 0, outcome.output
    assert jsonio.read(str(tmp_path / "w.json"))["path"] == name


def _items(seed: int) -> list[Item]:
    rng = random.Random(seed)
    items, dirs = [], set()
    for name in _names(seed, 40):
        parent = rng.choice(["", "d", "d/" + name[:10].replace("/", "_") or "x"])
        if parent in (".", "..", "d/.", "d/.."):
            parent = "d"
        path = f"{parent}/{name}" if parent else name
        if path in dirs or any(item.path == path for item in items):
            continue
        for depth in range(1, path.count("/") + 1):
            dirs.add("/".join(path.split("/")[:depth]))
        if rng.random() < 0.2:
            items.append(Item(path, "symlink", target=from_bytes(byte_names.link_target(rng)), mode=0o777))
        else:
            items.append(Item(path, data=name.encode("utf-8", "surrogateescape") * 3, mode=rng.choice((0o644, 0o755))))
    items = [item for item in items if item.path not in dirs]
    return [Item(d, "dir", mode=0o755) for d in sorted(dirs)] + items


@pytest.mark.parametrize("seed", range(4))
def test_release_archive_round_trip(tmp_path: Path, seed: int) -> None:
    items = _items(seed)
    write_byte_tree(tmp_path, "sys", items)
    (tmp_path / "build.json").write_text(json.dumps({"device": "d", "fingerprint": "f/1", "timestamp": 1}))
    (tmp_path / "boot.img").write_bytes(b"ANDROID!" + bytes(100))
    run_ok("ota.actions.system_manifest", "--tree", "sys.tree.json", "--out", "m.json", cwd=tmp_path)
    run_ok(
        "ota.actions.release_archive",
        *("--build_json", "build.json", "--system_manifest", "m.json", "--tree", "sys.tree.json"),
        *("--partition", "boot=boot.img", "--out", "r.zip"),
        cwd=tmp_path,
    )
    with zipfile.ZipFile(tmp_path / "r.zip") as archive:
        assert all(name.isascii() and name.isprintable() for name in archive.namelist())
    release = release_archive.read_release_archive(str(tmp_path / "r.zip"))
    want_files = {to_bytes(i.path): i.data for i in items if i.kind == "file"}
    assert {to_bytes(p): data for p, data in release.files.items()} == want_files
    got = {
        (to_bytes(e.path), e.kind, e.mode, None if e.target is None else to_bytes(e.target)) for e in release.manifest
    }
    want = {(to_bytes(i.path), i.kind, i.mode, to_bytes(i.target) if i.kind == "symlink" else None) for i in items}
    assert got == want


def write_byte_tree(root: Path, name: str, items: list[Item]) -> None:
    """Like build_helpers.write_tree, but each file's bytes are named by index and the tree JSON
    is written by jsonio (names that are not UTF-8 stay their bytes, as Starlark writes them)."""
    (root / name).mkdir()
    entries = []
    for index, item in enumerate(items):
        entry = {"path": item.path, "kind": item.kind, "mode": item.mode, "uid": 0, "gid": 0}
        if item.kind == "file":
            (root / name / f"f{index}").write_bytes(item.data)
            entry["file"] = f"{name}/f{index}"
        elif item.kind == "symlink":
            entry["target"] = item.target
        entries.append(entry)
    jsonio.write(str(root / f"{name}.tree.json"), {"entries": entries})


def test_ota_inspect_prints_every_name_on_its_own_line_and_losslessly(tmp_path: Path) -> None:
    names = _names(7, 25)
    manifest = pb.OtaManifest(format_version=2, type=pb.OtaManifest.FULL)
    manifest.precondition.device.append("d")
    for name in names:
        manifest.files.add(path=to_bytes(name), op=pb.FileOperation.SYMLINK, symlink_target=to_bytes(name), mode=0o777)
    data = manifest.SerializeToString(deterministic=True)
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as archive:
        archive.writestr("manifest.pb", data)
    proc = run_ok("ota.cli.ota_inspect", "p.zip", cwd=tmp_path)
    text = proc.stdout.split("\n\n# payload")[0].removeprefix("# manifest.pb\n")
    assert text.count("\n  path: ") == len(names) and text.isascii()
    assert text_format.Parse(text, pb.OtaManifest()) == manifest


def test_a_bad_path_in_a_tree_is_one_line_naming_the_file(tmp_path: Path) -> None:
    raw = b'{"entries":[{"gid":0,"kind":"dir","mode":493,"path":"a/\\n/../b","uid":0}]}'
    (tmp_path / "t.json").write_bytes(raw)
    proc = run_tool("ota.actions.system_manifest", "--tree", "t.json", "--out", "m.json", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        "system_manifest: error: t.json: entries[0].path \"a/\\012/../b\": a '..' component is not allowed\n",
    )
    assert not (tmp_path / "m.json").exists()
