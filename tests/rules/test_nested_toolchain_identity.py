"""The toolchain identity is part of every Ota* action's key (docs/ci-and-remote-cache.md).

One copy of the checkout (nested_bazel.py) is analysed with `bazel aquery` against several pip hubs
that differ only in their toolchain_identity/<sha256>.json: the real one, a byte-identical copy at
another path, and one fake per identity field (a Python, zlib, bsdiff4, protobuf, cryptography or
pydivsufsort version nobody runs). Every fake must change the key of every Ota* action; the identical copy must change none, so
matching toolchains keep sharing the cache (tests/cache checks the hits themselves).
"""

from __future__ import annotations

import pathlib
import re
import shutil

from nested_bazel import NestedWorkspace, outer_pypi
from ota.actions import toolchain_identity

TARGETS = "deps(//release:all)"
IDENTITY_DIR = "toolchain_identity"
ACTION = re.compile(
    r"^  Mnemonic: (Ota\w+)$.*?^  ActionKey: (\w+)$.*?^  Outputs: \[([^\]]*)\]", re.MULTILINE | re.DOTALL
)


def identity_file(hub: pathlib.Path) -> pathlib.Path:
    """The one toolchain_identity/<sha256>.json bazel/pip.bzl wrote into `hub`."""
    (found,) = (hub / IDENTITY_DIR).glob("*.json")
    return found


def hub_copy(source: pathlib.Path, dest: pathlib.Path, identity: dict[str, str]) -> pathlib.Path:
    """A pip hub at `dest`: `source`'s files as symlinks, and its own identity, written by the
    code bazel/pip.bzl runs and named in BUILD.bazel's :toolchain_identity as pip.bzl names it."""
    shutil.copytree(
        source,
        dest,
        symlinks=True,
        ignore=shutil.ignore_patterns(IDENTITY_DIR),
        copy_function=lambda src, dst: pathlib.Path(dst).symlink_to(src),
    )
    old = identity_file(source).relative_to(source).as_posix()
    new = pathlib.Path(toolchain_identity.write(str(dest / IDENTITY_DIR), identity)).relative_to(dest).as_posix()
    build = (source / "BUILD.bazel").read_text()
    assert build.count(f'"{old}"') == 1, build
    (dest / "BUILD.bazel").unlink()
    (dest / "BUILD.bazel").write_text(build.replace(f'"{old}"', f'"{new}"'))
    return dest


def ota_action_keys(ws: NestedWorkspace, hub: pathlib.Path) -> dict[str, tuple[str, str]]:
    """{outputs: (mnemonic, action key)} of every Ota* action, analysed with @rules_ota_pypi = `hub`."""
    text = ws.bazel(
        "aquery", f"--override_repository=rules_ota_pypi={hub}", "--output=text", f'mnemonic("Ota.*", {TARGETS})'
    ).stdout
    keys = {outputs: (mnemonic, key) for mnemonic, key, outputs in ACTION.findall(text)}
    assert keys, text[-2000:]
    return keys


def test_every_ota_action_key_follows_the_toolchain_identity(tmp_path) -> None:
    pypi = outer_pypi()
    assert pypi is not None, "the outer build's @rules_ota_pypi is not reachable from the runfiles"
    real = toolchain_identity.load(str(identity_file(pypi)))
    assert set(real) == {"python", "zlib", "bsdiff4", "protobuf", "cryptography", "pydivsufsort"}, real
    ws = NestedWorkspace.create(tmp_path, "ws")
    # nested_bazel appends its own --override_repository=rules_ota_pypi=<outer> after every command's
    # arguments, where it would win over each query's hub: drop it.
    ws.extra_flags = [flag for flag in ws.extra_flags if not flag.startswith("--override_repository=rules_ota_pypi=")]
    try:
        baseline = ota_action_keys(ws, hub_copy(pypi, tmp_path / "hub_same", real))
        assert {mnemonic for mnemonic, _ in baseline.values()} >= {
            "OtaBootImage",
            "OtaBootPatch",
            "OtaExampleFiles",
            "OtaFilePatch",
            "OtaPackage",
            "OtaRamdisk",
            "OtaReleaseArchive",
            "OtaSign",
            "OtaSystemManifest",
        }
        assert ota_action_keys(ws, pypi) == baseline, "the same identity at another path changed keys"
        for field in sorted(real):
            fake = dict(real, **{field: real[field] + ".fake"})
            keys = ota_action_keys(ws, hub_copy(pypi, tmp_path / f"hub_{field}", fake))
            assert keys.keys() == baseline.keys(), field
            unchanged = sorted(out for out, (_, key) in keys.items() if key == baseline[out][1])
            assert not unchanged, f"{field} faked, yet these Ota* actions kept their key: {unchanged}"
    finally:
        ws.close()
