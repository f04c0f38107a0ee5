"""rules_ota used from a release engineer's own workspace, exactly as README.md shows it.

Every other nested test builds inside rules_ota's own workspace; a release engineer instead adds
rules_ota to theirs. This test makes such a workspace outside the rules_ota copy (nested_bazel.py)
whose WORKSPACE and BUILD are README.md's "Using rules_ota from your workspace" blocks, taken
between their `consumer-workspace` and `consumer-build` markers at test time, with only the
placeholder paths replaced: the documented snippet is the one that is built, so the two cannot
drift. The two device trees it imports hold the names Starlark must escape (tree_host_scan.py's
SPECIAL_NAMES: `\\`, non-ASCII UTF-8, bytes that are not UTF-8, spaces, a newline, a leading
dot), setuid executables, symlinks (relative, absolute to /proc/version, dangling) and empty
directories; v2 differs from v1 by seeded edits, deletions, mode changes and additions. The
built incremental package is applied by ota_apply's engine to a device made from v1, which must
end byte-exact equal to the v2 directory (names, bytes, modes, owners, link targets). The package
must also be the bytes rules_ota's tools write for the same two trees without Bazel
(ota.testing.builds.make_package), which nothing of the consumer's workspace (its name, its
external/ paths, the absence of rules_ota's .bazelrc) can reach; a second build of the same BUILD
inside rules_ota's own workspace would need another cold nested server, so it is left out. A tree
path that does not exist fails the fetch with one line naming it. As in every nested test, the
outer build's @rules_ota_pypi stands in for the snippet's pip_lock_repository fetch (no network).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import re
import stat
import subprocess

import pytest

from nested_bazel import REPO, NestedWorkspace
from ota.actions import tree
from ota.format import jsonio
from ota.format.build_info import BuildInfo
from ota.format.paths import SCRATCH_DIR, from_bytes
from ota.testing import byte_names
from ota.testing import device_check as dc
from ota.testing.builds import make_package
from tree_host_scan import SPECIAL_NAMES, host_scan, seeded_tree

RULES_OTA_PLACEHOLDER = '"/path/to/rules_ota"'
TREE_PLACEHOLDERS = {"v1": '"/srv/device-trees/v1"', "v2": '"/srv/device-trees/v2"'}
ERROR = "ota_tree_repository: error: "


def readme_block(name: str) -> str:
    """The fenced code block between `<!-- {name}:begin ... -->` and `<!-- {name}:end -->` of README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {name}:begin[^\n]*-->\n```starlark\n(.*?)```\n<!-- {name}:end -->", text, re.DOTALL)
    assert found, f"README.md: no ```starlark block between the {name}:begin and {name}:end markers"
    return found.group(1)


def substituted(text: str, replacements: dict[str, str]) -> str:
    """`text` with each placeholder (which must occur exactly once) replaced."""
    for placeholder, value in replacements.items():
        assert text.count(placeholder) == 1, f"README.md: {placeholder} must occur once in the snippet"
        text = text.replace(placeholder, value)
    return text


def make_target_tree(source: pathlib.Path, target: pathlib.Path, seed: int) -> None:
    """v2: an exact copy of v1, then seeded edits, deletions and mode changes of its regular files
    (chosen by lstat, never through a symlink), a changed, a removed and a new name of each special
    kind, a re-pointed symlink and a new empty directory."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    rng = random.Random(seed)
    root = os.fsencode(target)
    files = []
    for directory, _, names in os.walk(root):
        files += [
            os.path.join(directory, n)
            for n in sorted(names)
            if stat.S_ISREG(os.lstat(os.path.join(directory, n)).st_mode)
        ]
    for path in sorted(files):
        roll = rng.random()
        if roll < 0.2:
            with open(path, "ab") as out:
                out.write(rng.randbytes(rng.randrange(1, 300)))
        elif roll < 0.3:
            os.remove(path)
        elif roll < 0.4:
            os.chmod(path, rng.choice([0o600, 0o755, 0o4750]))
    etc = os.path.join(root, b"etc")
    for index, name in enumerate(SPECIAL_NAMES):
        path = os.path.join(etc, name)
        if os.path.lexists(path) and index % 2:
            os.remove(path)
        elif os.path.lexists(path):
            with open(path, "ab") as out:
                out.write(b"edited %d\n" % index * 30)
        with open(os.path.join(etc, b"new " + name), "wb") as out:
            out.write(b"new file %d\n" % index)
    os.remove(os.path.join(root, b"bin/ls"))
    os.symlink(b"sg", os.path.join(root, b"bin/ls"))
    os.mkdir(os.path.join(root, b"empty/" + SPECIAL_NAMES[4]), 0o700)


def host_build(directory: pathlib.Path, build_json: pathlib.Path, partitions: dict[str, str]) -> dc.Build:
    """The build a device runs, as the independent scan (tree_host_scan.py) sees `directory`."""
    entries, files = [], {}
    root = os.fsencode(directory)
    for raw, found in sorted(host_scan(root).items()):
        path = from_bytes(raw)
        if found["kind"] == tree.FILE:
            files[path] = os.fsdecode(os.path.join(root, raw))
        target = from_bytes(found["target"]) if "target" in found else None
        entries.append(
            tree.TreeEntry(
                path, found["kind"], found["mode"], found["uid"], found["gid"], file=files.get(path), target=target
            )
        )
    info = BuildInfo.from_json(jsonio.read(str(build_json)), str(build_json))
    return dc.Build(info, tuple(entries), files, partitions)


def test_readme_workspace_builds_and_applies(tmp_path) -> None:
    trees = tmp_path / "trees"
    seeded_tree(os.fsencode(trees / "v1"), seed=2026, count=80, names=SPECIAL_NAMES)
    make_target_tree(trees / "v1", trees / "v2", seed=4)
    missing = tmp_path / "no such tree"

    rules_ota = NestedWorkspace.create(tmp_path, "rules_ota")
    # The consumer's workspace, outside the copy: the same output root and flags (the outer build's
    # pip repository through --override_repository), another root.
    consumer = dataclasses.replace(rules_ota, root=tmp_path / "consumer")
    consumer.root.mkdir()
    workspace = substituted(
        readme_block("consumer-workspace"),
        {
            RULES_OTA_PLACEHOLDER: f'"{rules_ota.root}"',
            **{placeholder: f'"{trees / version}"' for version, placeholder in TREE_PLACEHOLDERS.items()},
        },
    )
    (consumer.root / "WORKSPACE").write_text(
        workspace + f'\nota_tree_repository(name = "missing_tree", path = "{missing}")\n'
    )
    (consumer.root / "BUILD").write_text(readme_block("consumer-build"))
    (consumer.root / "boot").mkdir()
    (consumer.root / "boot/kernel").write_bytes(b"consumer kernel\n" * 300)
    (consumer.root / "boot/init.rc").write_bytes(b"on boot\n")
    try:
        consumer.build("//:incremental_ota", "//:v1", "//:v2", "//:boot")
        with pytest.raises(AssertionError) as refused:
            consumer.bazel("build", "@missing_tree//:tree")
        output_base = pathlib.Path(consumer.bazel("info", "output_base").stdout.strip())
    finally:
        consumer.close()

    boot = {"boot": str(consumer.bin("boot.img"))}
    source = host_build(trees / "v1", consumer.bin("v1.build.json"), boot)
    target = host_build(trees / "v2", consumer.bin("v2.build.json"), boot)
    package = str(consumer.bin("incremental_ota.zip"))
    report = dc.check_update(
        source, target, package, str(tmp_path / "apply"), dc.layout_for(source, target), interrupt=False
    )
    assert report.problems == []
    device = byte_names.device_tree(str(tmp_path / "apply/device/system"), skip=(SCRATCH_DIR.encode(),))
    assert device == byte_names.device_tree(str(trees / "v2"))
    assert device != byte_names.device_tree(str(trees / "v1"))

    # The same boot image in both builds: the package leaves the partition alone, as written here.
    unbooted = [dataclasses.replace(b, partitions={}) for b in (source, target)]
    written = make_package(*unbooted, str(tmp_path / "direct"), str(tmp_path / "direct.zip"))
    assert pathlib.Path(package).read_bytes() == pathlib.Path(written).read_bytes()

    lines = [line for line in str(refused.value).splitlines() if ERROR in line]
    assert lines and all(
        line.endswith(f"{ERROR}{missing}: cannot read: No such file or directory") for line in lines
    ), str(refused.value)
    assert not any(re.search(r'File ".*\.py", line', line) for line in str(refused.value).splitlines())
    assert not (output_base / "external/missing_tree/files").exists()
