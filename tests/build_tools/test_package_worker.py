"""The package assembler as a persistent worker: one worker serves a sequence of generated
packages, each byte-identical to the one-shot `package @PARAMS` on the same inputs.

Every request's inputs are written at the SAME paths as the previous request's (params, manifests,
patches, whole files, the boot image's patch), with other contents: a worker that remembered
anything of a file by its path (a cache, a flag value, a half-written output) would write a
package different from the one-shot tool's. Failing requests sit in the middle (a stale patch, a
toolchain identity the action was not keyed with, a missing flag): each gets the one-shot tool's
exit code and exact message, leaves no package behind, and the next request is served normally.

The worker does keep what it checked and deflated, by content (py/ota/actions/content_cache.py):
rebuild sequences edit a whole file with its manifest entry, make one stale, break the manifest,
swap patch infos or rewrite the same bytes, and each answer must still be the fresh process's.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from build_helpers import Worker, run_tool, tool_env
from ota.actions import file_patch, toolchain_identity, tree
from ota.actions.patch_info import UNCHANGED
from ota.format import gzipper, hashing, jsonio
from ota.testing import builds, generated_trees
from ota.testing.device_check import Build

_MODULE = "ota.actions.package_writer"
_INPUTS = "in"  # below the worker's cwd: every request's inputs, rewritten in place


def _manifest(build: Build, side: str) -> str:
    """The system manifest, made by the system_manifest tool in its own process (its flags and
    package_writer's share names, so the two cannot be imported into one process)."""
    tree_json, manifest = f"{_INPUTS}/{side}.tree.json", f"{_INPUTS}/{side}.manifest.json"
    jsonio.write(tree_json, tree.manifest_doc(build.entries))
    subprocess.run(
        [sys.executable, "-m", "ota.actions.system_manifest", "--tree", tree_json, "--out", manifest],
        env=tool_env(),
        check=True,
        capture_output=True,
    )
    return manifest


def _side(build: Build, manifest: str) -> dict:
    return {**build.info.to_json(), "system_manifest": manifest}


def _boot(rng: random.Random, base: bytes | None) -> bytes:
    """A boot-image-like partition (raw bytes, a gzip member, padding); a target edits its source."""
    if base is None:
        ramdisk = b"".join(b"init line %d\n" % i for i in range(rng.randrange(500, 2000)))
        return rng.randbytes(rng.randrange(2_000, 6_000)) + gzipper.compress(ramdisk) + b"\0" * 512
    return base[:100] + rng.randbytes(64) + base[164:]


def write_request(seed: int) -> dict:
    """Writes a generated package's inputs below `in/` (emptied first) and its params to
    `in/params.json`, as the ota_package rule lays them out; returns the params.

    The seed picks the tree pair, files new in the target, FULL or INCREMENTAL, a downgrade,
    whether a patch result of an unchanged file is listed (the rule lists one when the two Files
    differ) and the boot image.
    """
    rng = random.Random(seed)
    shutil.rmtree(_INPUTS, ignore_errors=True)
    os.makedirs(f"{_INPUTS}/patches")
    old_spec, new_spec = generated_trees.tree_pair(rng.randrange(8, 24), seed)
    full, downgrade = rng.random() < 0.3, rng.random() < 0.25
    old_boot = _boot(rng, None)
    old_spec = dataclasses.replace(old_spec, partitions={"boot": old_boot})
    added = {f"opt/added/file{n}.bin": rng.randbytes(rng.randrange(1, 20_000)) for n in range(rng.randrange(3))}
    new_spec = dataclasses.replace(
        new_spec,
        items={**new_spec.items, **added},
        partitions={"boot": old_boot if rng.random() < 0.2 else _boot(rng, old_boot)},
        timestamp=500 if downgrade and not full else new_spec.timestamp,
    )
    source = None if full else builds.write_build(old_spec, f"{_INPUTS}/source")
    target = builds.write_build(new_spec, f"{_INPUTS}/target")
    old_files = {} if source is None else source.files
    file_patches, whole_files = [], []
    for index, (path, file) in enumerate(sorted(target.files.items())):
        if path not in old_files:
            whole_files.append({"path": path, "file": file})
            continue
        data, info = f"{_INPUTS}/patches/f{index}.data", f"{_INPUTS}/patches/f{index}.json"
        result = file_patch.patch_files(old_files[path], file, path, data)
        if result.method != UNCHANGED or rng.random() < 0.5:
            jsonio.write(info, result.to_json())
            file_patches.append({"path": path, "info": info, "data": data})
    data, info = f"{_INPUTS}/patches/boot.data", f"{_INPUTS}/patches/boot.json"
    base = None if source is None else source.partitions["boot"]
    jsonio.write(info, file_patch.patch_files(base, target.partitions["boot"], "boot.img", data).to_json())
    params = {
        "type": "FULL" if full else "INCREMENTAL",
        "downgrade": downgrade and not full,
        "source": None if source is None else _side(source, _manifest(source, "source")),
        "target": _side(target, _manifest(target, "target")),
        "file_patches": file_patches,
        "whole_files": whole_files,
        "partitions": [{"name": "boot", "info": info, "data": data}],
    }
    jsonio.write(f"{_INPUTS}/params.json", params)
    return params


def _identity(directory: str, **changed: str) -> str:
    """A toolchain identity file: the running one, or with `changed` fields (another toolchain)."""
    return toolchain_identity.write(directory, {**toolchain_identity.running(), **changed})


def _one_shot(args: list[str], params_file: str) -> subprocess.CompletedProcess:
    """What Bazel runs without a worker: `package @PARAMS`, one argument a line."""
    Path(params_file).write_text("".join(f"{arg}\n" for arg in args))
    return run_tool(_MODULE, f"@{params_file}", cwd=Path.cwd())


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The worker's cwd (Bazel's execroot): inputs and outputs are relative paths below it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_one_worker_serves_generated_packages_with_the_one_shot_bytes(work: Path) -> None:
    identity = _identity("identity")
    other = _identity("other_identity", python="2.7.18")
    seeds = list(range(100, 110))
    stale_at, other_at, usage_at = 3, 6, 8  # failing requests go before these builds' good ones
    w = Worker(_MODULE, work)
    kinds, failures = [], []
    try:
        for number, seed in enumerate(seeds):
            params = write_request(seed)
            kinds.append((params["type"], params["downgrade"]))
            common = ["--params", f"{_INPUTS}/params.json"]
            if number % 2:  # Bazel's actions always name one; a run by hand need not
                common += ["--toolchain_identity", identity]
            if number == stale_at:  # an input changed after the action that made it: a stale input
                file, want, why = _a_checked_input(params)
                good = Path(file).read_bytes()
                Path(file).write_bytes(bytes([good[0] ^ 1]) + good[1:])
                stale = hashing.of_file(file).sha256
                failures.append(_fail(w, common, "stale"))
                Path(file).write_bytes(good)
                stale_text = f"package: error: {file}: sha256 {stale} is not the {why} sha256 {want} (stale or mixed-up input?)\n"
            if number == other_at:
                failures.append(
                    _fail(w, ["--params", f"{_INPUTS}/params.json", "--toolchain_identity", other], "other")
                )
            if number == usage_at:
                failures.append(_fail(w, ["--params", f"{_INPUTS}/params.json"], "usage"))
            response = w.send([*common, "--out", f"worker{number}.zip"])
            one_shot = _one_shot([*common, "--out", f"oneshot{number}.zip"], f"r{number}.params")
            assert (response.exit_code, response.output) == (0, ""), (seed, response.output)
            assert (one_shot.returncode, one_shot.stderr) == (0, ""), seed
            assert (work / f"worker{number}.zip").read_bytes() == (work / f"oneshot{number}.zip").read_bytes(), seed
    finally:
        code, log = w.close()
    assert (code, log) == (0, "")
    # The generated builds cover both package types and a downgrade, and give different packages.
    assert {kind for kind, _ in kinds} == {"FULL", "INCREMENTAL"} and any(down for _, down in kinds)
    assert len({(work / f"worker{n}.zip").read_bytes() for n in range(len(seeds))}) == len(seeds)

    assert failures[0] == (1, stale_text)
    (keyed, keyed_text), (usage, usage_text) = failures[1:]
    running = toolchain_identity.describe(toolchain_identity.running())
    keyed_with = toolchain_identity.describe({**toolchain_identity.running(), "python": "2.7.18"})
    assert (keyed, keyed_text) == (
        1,
        f"package: error: {other}: action keyed with toolchain [{keyed_with}] but running [{running}]\n",
    )
    assert (usage, usage_text) == (2, "package: usage: --params and --out are required\n")


def _a_checked_input(params: dict) -> tuple[str, str, str]:
    """A non-empty data file the writer checks, the SHA-256 it must have and whose that is (the
    words of the writer's message): a BSDIFF/IMGDIFF patch if the package has one, else a whole file."""
    for patch in params["file_patches"]:
        info = jsonio.read(patch["info"])
        if info["method"] not in ("UNCHANGED", "WHOLE") and info["data_size"]:
            return patch["data"], info["data_sha256"], f"patch info's data_sha256 of {patch['path']}"
    whole = next(w for w in params["whole_files"] if Path(w["file"]).stat().st_size)
    return whole["file"], hashing.of_file(whole["file"]).sha256, f"target manifest's {whole['path']}"


def _fail(w: Worker, args: list[str], name: str) -> tuple[int, str]:
    """A request expected to fail: its exit code and message, the same as the one-shot tool's, and
    no package left by either."""
    out = ["--out", f"{name}.zip"] if name != "usage" else []
    response = w.send([*args, *out])
    one_shot = _one_shot([*args, "--out", f"{name}.oneshot.zip"] if out else args, f"{name}.params")
    assert response.exit_code == one_shot.returncode != 0
    assert response.output == one_shot.stderr.replace(f"{name}.oneshot.zip", f"{name}.zip")
    assert not Path(f"{name}.zip").exists() and not Path(f"{name}.oneshot.zip").exists()
    assert not [p for p in Path.cwd().iterdir() if p.name.startswith("package.")]  # no work directory left
    return response.exit_code, response.output


# A rebuild in a worker: the assembler keeps what it checked and deflated by content
# (py/ota/actions/content_cache.py), so the edits below rewrite inputs IN PLACE, consistently
# (a rebuild) or not (a stale or hostile input), and every request must still get the fresh
# one-shot process's exit code, message and bytes.


def _set_manifest_entry(manifest: str, path: str, data: bytes) -> None:
    doc = jsonio.read(manifest)
    entry = next(e for e in doc["entries"] if e["path"] == path)
    entry.update(hashing.of_bytes(data).to_json())
    jsonio.write(manifest, doc)


def _new_contents(rng: random.Random, files: list[str]) -> bytes:
    """Bytes that deflate well, bytes that do not (stored), nothing, or another whole file's."""
    pick = rng.randrange(4)
    if pick == 0:
        return b"".join(b"line %d of a config file\n" % rng.randrange(50) for _ in range(rng.randrange(1, 400)))
    if pick == 1:
        return rng.randbytes(rng.randrange(1, 9000))
    if pick == 2:
        return b""
    return Path(rng.choice(files)).read_bytes()


def _rebuild_edit(rng: random.Random, params: dict) -> tuple[str, Callable[[], None] | None]:
    """Edits the inputs in place; returns the edit's name and how to undo it (None: it stays)."""
    target = params["target"]["system_manifest"]
    files = [w["file"] for w in params["whole_files"]]
    whole = rng.choice(params["whole_files"])
    edit = rng.choice(["rebuild", "rebuild", "stale", "hostile manifest", "swapped info", "same bytes", "nothing"])
    saved = {
        file: Path(file).read_bytes() for file in [target, whole["file"], *[p["info"] for p in params["file_patches"]]]
    }

    def undo() -> None:
        for file, data in saved.items():
            Path(file).write_bytes(data)

    if edit == "rebuild":  # a whole file changes and so does its manifest entry
        data = _new_contents(rng, files)
        Path(whole["file"]).write_bytes(data)
        _set_manifest_entry(target, whole["path"], data)
        return edit, None
    if edit == "stale":  # the bytes change, the manifest still promises the old ones
        data = _new_contents(rng, files)
        if data == saved[whole["file"]]:
            data += b"\n"
        Path(whole["file"]).write_bytes(data)
        return edit, undo
    if edit == "hostile manifest":
        doc = jsonio.read(target)
        entry = rng.choice(doc["entries"])
        key = rng.choice([k for k in entry if k != "path"])
        entry[key] = rng.choice([None, -1, 2**32, True, "", "A" * 64, "fifo", "\0"])
        jsonio.write(target, doc)
        return edit, undo
    if edit == "swapped info" and len(params["file_patches"]) > 1:
        first, second = rng.sample(params["file_patches"], 2)
        Path(first["info"]).write_bytes(saved[second["info"]])
        return edit, undo
    if edit == "same bytes":  # rewritten, not changed: a worker may take all it kept
        for file, data in saved.items():
            Path(file).write_bytes(data)
    return edit, None


def test_a_worker_rebuilding_after_edits_in_place_answers_as_a_fresh_process(work: Path) -> None:
    done: list[tuple[str, int]] = []
    for seed in (200, 201, 202, 203):
        rng = random.Random(seed)
        params = write_request(seed)
        while len(params["whole_files"]) < 2:  # whole files are what the worker deflates and keeps
            params = write_request(seed := seed + 1000)
        w = Worker(_MODULE, work)
        try:
            for number in range(12):
                edit, undo = _rebuild_edit(rng, params) if number else ("first", None)
                common = ["--params", f"{_INPUTS}/params.json"]
                worker_zip, one_shot_zip = f"w{seed}-{number}.zip", f"o{seed}-{number}.zip"
                response = w.send([*common, "--out", worker_zip])
                one_shot = _one_shot([*common, "--out", one_shot_zip], f"r{seed}-{number}.params")
                assert response.exit_code == one_shot.returncode, (seed, edit, response.output, one_shot.stderr)
                assert response.output == one_shot.stderr.replace(one_shot_zip, worker_zip), (seed, edit)
                if response.exit_code == 0:
                    assert Path(worker_zip).read_bytes() == Path(one_shot_zip).read_bytes(), (seed, edit)
                else:
                    assert "\n" not in response.output[:-1] and not Path(worker_zip).exists()
                done.append((edit, response.exit_code))
                if undo is not None:
                    undo()
        finally:
            code, log = w.close()
        assert (code, log) == (0, "")
    outcomes = set(done)
    assert {("rebuild", 0), ("same bytes", 0), ("stale", 1), ("hostile manifest", 1)} <= outcomes, outcomes
