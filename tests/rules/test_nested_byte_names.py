"""Hand-written system_images whose paths hold any bytes (octal escapes in `files`, `symlinks`,
`dirs`, `modes` and `owners`), built by Bazel into an incremental package that applies
byte-exact, and through a release archive imported with ota_release_archive into the same package.

The trees come from a seed (py/ota/testing/byte_names.py): systemd's `\\x2d`, UTF-8 and non-UTF-8
bytes, spaces, leading dots, newlines and other control bytes, 255-byte names and names the tools
use for their own files. Runs Bazel on a copy of the checkout (nested_bazel.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nested_bazel import NestedWorkspace
from ota.device.fsops import FsOps
from ota.device.updater import device as device_mod
from ota.device.updater.engine import apply_package
from ota.device.updater.progress import Progress
from ota.format.paths import SCRATCH_DIR, escape
from ota.testing import byte_names
from ota.testing import device_check as dc
from ota.testing.builds import Spec, write_build

SEED = 14


def _literal(name: str) -> str:
    """A Starlark string literal of `name`'s bytes (pure ASCII: py/ota/format/paths.py `escape`)."""
    return f'"{escape(name)}"'


def _system_image(name: str, spec: Spec, files_dir: Path, package: Path) -> str:
    """A system_image rule listing `spec` by hand, every path an escaped literal; file bytes go to
    files_dir/<index> (labels never carry an install path)."""
    files, symlinks, dirs, modes, owners = [], [], [], [], []
    files_dir.mkdir(parents=True)
    for index, (path, given) in enumerate(sorted(spec.items.items())):
        item = (given, 0o644, 0, 0) if isinstance(given, bytes) else given
        if item[0] == "symlink":
            symlinks.append(f"        {_literal(path)}: {_literal(item[1])},")
            continue
        if item[0] == "dir":
            dirs.append(f"        {_literal(path)},")
            mode, uid, gid = item[1:4]
        else:
            data, mode, uid, gid = item
            (files_dir / str(index)).write_bytes(data)
            files.append(f'        "{files_dir.relative_to(package)}/{index}": {_literal(path)},')
        modes.append(f'        {_literal(path)}: "{mode:o}",')
        if (uid, gid) != (0, 0):
            owners.append(f'        {_literal(path)}: "{uid}:{gid}",')
    lines = [f"ota_system_image(\n    name = {_literal(name)},"]
    for attr, body, close in (
        ("files", files, "}"),
        ("symlinks", symlinks, "}"),
        ("dirs", dirs, "]"),
        ("modes", modes, "}"),
        ("owners", owners, "}"),
    ):
        lines += [f"    {attr} = {'{' if close == '}' else '['}", *body, f"    {close},"]
    return "\n".join([*lines, ")\n"])


def _build_file(v1: Spec, v2: Spec, package: Path) -> str:
    parts = [
        'load("//rules:defs.bzl", "ota_boot_image", "ota_build", "ota_build_archive", "ota_package", "ota_system_image")\n',
        'package(default_visibility = ["//visibility:public"])\n',
    ]
    for version, spec in ((1, v1), (2, v2)):
        parts.append(_system_image(f"v{version}_system", spec, package / f"v{version}", package))
        (package / f"kernel{version}").write_bytes(b"kernel %d\n" % version * 200)
        parts.append(f'ota_boot_image(\n    name = "v{version}_boot",\n    kernel = "kernel{version}",\n)\n')
        parts.append(
            f'ota_build(\n    name = "v{version}",\n    device = "{spec.device}",\n'
            f'    fingerprint = "{spec.fingerprint}",\n    timestamp = {spec.timestamp},\n'
            f'    boot = ":v{version}_boot",\n    system = ":v{version}_system",\n)\n'
        )
    parts.append('ota_package(\n    name = "incremental",\n    source = ":v1",\n    target = ":v2",\n)\n')
    parts.append('ota_build_archive(\n    name = "v1_archive",\n    build = ":v1",\n)\n')
    return "\n".join(parts)


def test_escaped_names_build_import_and_apply_byte_exact(tmp_path) -> None:
    v1, v2 = byte_names.tree_pair(SEED, count=30)
    ws = NestedWorkspace.create(tmp_path, "ws")
    try:
        package = ws.root / "names"
        package.mkdir()
        build_file = _build_file(v1, v2, package)
        assert build_file.isascii()
        (package / "BUILD").write_text(build_file)
        ws.build("//names:incremental", "//names:v1_archive")
        (ws.root / "shipped").mkdir()
        shutil.copyfile(ws.bin("names/v1_archive.zip"), ws.root / "shipped/v1.zip")
        (ws.root / "shipped/BUILD").write_text('exports_files(["v1.zip"])\n')
        with open(ws.root / "WORKSPACE", "a") as workspace:
            workspace.write(
                '\nload("//rules:repositories.bzl", "ota_release_archive")\n\n'
                'ota_release_archive(\n    name = "shipped_v1",\n    archive = "//shipped:v1.zip",\n)\n'
            )
        (ws.root / "imported").mkdir()
        (ws.root / "imported/BUILD").write_text(
            'load("//rules:defs.bzl", "ota_package")\n\n'
            'ota_package(\n    name = "incremental",\n    source = "@shipped_v1//:build",\n    target = "//names:v2",\n)\n'
        )
        ws.build("//imported:incremental")
        built = {name: ws.bin(f"names/v{n}_boot.img").read_bytes() for n, name in ((1, "v1"), (2, "v2"))}
        direct = ws.bin("names/incremental.zip").read_bytes()
        imported = ws.bin("imported/incremental.zip").read_bytes()
    finally:
        ws.close()
    # The imported archive gives the same source build: the same package, byte for byte.
    assert imported == direct

    def with_boot(spec: Spec, image: bytes) -> Spec:
        return Spec(spec.device, spec.fingerprint, spec.timestamp, spec.items, {"boot": image})

    source = write_build(with_boot(v1, built["v1"]), str(tmp_path / "v1"))
    target = write_build(with_boot(v2, built["v2"]), str(tmp_path / "v2"))
    (tmp_path / "incremental.zip").write_bytes(direct)
    directory = str(tmp_path / "device")
    config = dc.materialize(source, directory, dc.layout_for(source, target))
    apply_package(str(tmp_path / "incremental.zip"), device_mod.load(config), ops=FsOps(), progress=Progress("none"))
    system = byte_names.device_tree(os.path.join(directory, "system"), skip=(SCRATCH_DIR.encode(),))
    assert system == byte_names.expected_tree(v2)
    assert dc.compare(config, target) == []
