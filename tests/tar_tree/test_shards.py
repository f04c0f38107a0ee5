"""Tar-backed trees through the shard actions: the shard function is the same in Starlark and
Python and spreads paths evenly; generated tar pairs become incremental and full packages that a
device applies byte-exact; a one-file change alters one shard; paths with equal hashes are never
read; the assembler refuses shard sets that do not fit together, and checks any listing alike
whether it takes it in one go, from its worker's cache or step by step."""

from __future__ import annotations

import collections
import copy
import json
import random
import shutil
from pathlib import Path

import pytest

from ota.actions import file_patch_shard, package_writer, shard_layout, tar_tree, tree
from ota.actions.content_cache import ByContent
from ota.errors import OtaError
from ota.format import jsonio
from ota.format.build_info import BuildInfo
from ota.format.paths import escape
from ota.testing import device_check
from tar_pairs import ALL_CLASSES, bump, source_tree, target_tree, write_tar

SHARDS = 32  # TAR_SHARDS in rules/private/tar_tree.bzl


# Every name class reaches the device byte-exact: '\\', non-UTF-8 bytes and newlines included
# (docs/contracts.md, "File names").
DEVICE_CLASSES = ALL_CLASSES


def test_starlark_and_python_give_every_name_the_same_shard() -> None:
    doc = jsonio.read("tests/tar_tree/starlark_shards.json")
    assert doc["shards"] == SHARDS
    assert len(doc["by_name"]) >= 10
    for name, shard, wide in doc["by_name"]:
        assert (shard_layout.shard_of(name, SHARDS), shard_layout.shard_of(name, 1000003)) == (shard, wide), name


def test_shards_share_a_generated_tree_evenly() -> None:
    """Measured on 7,000 generated paths (~220 per shard): every shard within 25 % of an even share."""
    paths = [m.name.decode("utf-8", "surrogateescape") for m in source_tree(5, 7000) if m.kind == "file"]
    counts = collections.Counter(shard_layout.shard_of(p, SHARDS) for p in paths)
    even = len(paths) / SHARDS
    assert sorted(counts) == list(range(SHARDS))
    assert all(abs(n - even) < 0.25 * even for n in counts.values()), counts


def _tar_side(base: Path, name: str, members: list, compression: str = "") -> tuple[str, list[str]]:
    """Runs the tar reader; returns (manifest path, shard directories)."""
    tar = base / f"{name}.tar"
    write_tar(str(tar), members, compression=compression)
    dirs = [str(base / name / f"shard_{k}") for k in range(SHARDS)]
    manifest = str(base / f"{name}.manifest.json")
    tar_tree.write_outputs(str(tar), dirs, manifest, str(base / f"{name}.tree.json"), tar_tree.Limits())
    return manifest, dirs


def _shards(
    base: Path,
    source_dirs: list[str] | None,
    target_dirs: list[str],
    name: str = "results",
    max_diff_size: int | None = None,
) -> list[str]:
    outs = []
    for k in range(SHARDS):
        out = str(base / name / f"shard_{k}")
        source = None if source_dirs is None else file_patch_shard.load_dir(source_dirs[k], k, SHARDS)
        target = file_patch_shard.load_dir(target_dirs[k], k, SHARDS)
        file_patch_shard.patch_shard(
            source, target, out, shard=k, shards=SHARDS, methods={}, max_diff_size=max_diff_size
        )
        outs.append(out)
    return outs


def _params(base: Path, source: str | None, target: str, shards: list[str]) -> str:
    def side(manifest: str, number: int) -> dict:
        return {"device": "tar", "fingerprint": f"tar/{number}", "system_manifest": manifest, "timestamp": number}

    params = base / "params.json"
    params.write_text(
        json.dumps(
            {
                "downgrade": False,
                "file_patch_shards": shards,
                "file_patches": [],
                "partitions": [],
                "source": None if source is None else side(source, 1),
                "target": side(target, 2),
                "type": "FULL" if source is None else "INCREMENTAL",
                "whole_files": [],
            }
        )
    )
    return str(params)


def _device_build(base: Path, name: str, number: int) -> device_check.Build:
    entries = tree.load_tree(str(base / f"{name}.tree.json"))
    files = {e.path: e.file for e in entries if e.kind == tree.FILE}
    return device_check.Build(BuildInfo("tar", f"tar/{number}", number), tuple(entries), files, {})  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(4))
def test_generated_tar_pairs_apply_byte_exact(tmp_path: Path, seed: int) -> None:
    """Incremental and full packages of generated pairs: the device ends as the target tree
    (every file's bytes, mode, owner; symlinks; empty directories), a rerun changes nothing."""
    source_members = source_tree(seed, 50, DEVICE_CLASSES)
    source, source_dirs = _tar_side(tmp_path, "v1", source_members)
    target, target_dirs = _tar_side(tmp_path, "v2", target_tree(source_members, seed, DEVICE_CLASSES), "gz")
    old, new = _device_build(tmp_path, "v1", 1), _device_build(tmp_path, "v2", 2)
    for kind, shard_source, manifest in (("incremental", source_dirs, source), ("full", None, None)):
        shards = _shards(tmp_path, shard_source, target_dirs, kind)
        package = str(tmp_path / f"{kind}.zip")
        package_writer.write_package(_params(tmp_path, manifest, target, shards), package)
        layout = device_check.layout_for(old, new)
        report = device_check.check_update(old, new, package, str(tmp_path / f"dev-{kind}"), layout, interrupt=False)
        assert report.problems == []


def test_one_changed_file_changes_one_shard(tmp_path: Path) -> None:
    members = target_tree(source_tree(9, 80, DEVICE_CLASSES), 9, DEVICE_CLASSES)
    _, before = _tar_side(tmp_path, "before", members)
    _, after = _tar_side(tmp_path, "after", bump(members, 7))
    bumped = [m for m in members if m.kind == "file"][7].name.decode("utf-8", "surrogateescape")

    def digest(directory: str) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir())}

    differing = [k for k in range(SHARDS) if digest(before[k]) != digest(after[k])]
    assert differing == [shard_layout.shard_of(bumped, SHARDS)]
    results = _shards(tmp_path, before, after)
    listed = [jsonio.read(str(Path(out) / shard_layout.RESULTS))["results"] for out in results]
    assert [r["path"] for shard in listed for r in shard] == [bumped]


@pytest.mark.parametrize("seed", range(3))
def test_max_diff_size_reaches_every_shard_diff(tmp_path: Path, seed: int) -> None:
    """ota_package's max_diff_size: every changed file with an input above it ships whole, undiffed;
    every other one is diffed as without the ceiling."""
    source_members = source_tree(seed, 40, DEVICE_CLASSES)
    _, source_dirs = _tar_side(tmp_path, "v1", source_members)
    _, target_dirs = _tar_side(tmp_path, "v2", target_tree(source_members, seed, DEVICE_CLASSES))
    free = _shards(tmp_path, source_dirs, target_dirs, "free")
    sizes = sorted(
        max(info["target"]["size"], (info.get("source") or {}).get("size", 0))
        for out in free
        for r in jsonio.read(str(Path(out) / shard_layout.RESULTS))["results"]
        for info in [jsonio.read(str(Path(out) / r["info"]))]
    )
    ceiling = sizes[len(sizes) // 2]
    capped = _shards(tmp_path, source_dirs, target_dirs, "capped", max_diff_size=ceiling)
    checked = skipped = 0
    for free_out, capped_out in zip(free, capped, strict=True):
        for r in jsonio.read(str(Path(capped_out) / shard_layout.RESULTS))["results"]:
            info = jsonio.read(str(Path(capped_out) / r["info"]))
            largest = max(info["target"]["size"], (info.get("source") or {}).get("size", 0))
            if largest > ceiling and info["source"] is not None:
                assert info["method"] == "WHOLE" and f"--max_diff_size={ceiling} bytes" in info["warning"], info
                skipped += 1
            else:
                assert info == jsonio.read(str(Path(free_out) / r["info"]))
            checked += 1
    assert checked == len(sizes) and skipped > 0


def test_equal_hashes_are_decided_without_reading_the_files(tmp_path: Path) -> None:
    members = source_tree(2, 30, ("plain",))
    _, source_dirs = _tar_side(tmp_path, "a", members)
    _, target_dirs = _tar_side(tmp_path, "b", members)
    for directory in target_dirs + source_dirs:  # only the listings stay
        for file in Path(directory).iterdir():
            if file.name != shard_layout.TREE_INDEX:
                file.unlink()
    outs = _shards(tmp_path, source_dirs, target_dirs)
    assert all(jsonio.read(str(Path(out) / shard_layout.RESULTS))["results"] == [] for out in outs)


def test_the_assembler_refuses_shard_sets_that_do_not_fit(tmp_path: Path) -> None:
    members = source_tree(4, 20, ("plain",))
    source, source_dirs = _tar_side(tmp_path, "v1", members)
    target, target_dirs = _tar_side(tmp_path, "v2", bump(members, 0))
    shards = _shards(tmp_path, source_dirs, target_dirs)
    cases = [
        (shards[:-1], f"{shards[0]}/results.json: shard 0 of {SHARDS} does not fit {SHARDS - 1} file_patch_shards"),
        (
            [shards[0], *shards[:-1]],
            f"{shards[0]}/results.json: shard 0 of {SHARDS} does not fit {SHARDS} file_patch_shards",
        ),
    ]
    for dirs, message in cases:
        with pytest.raises(OtaError) as err:
            package_writer.load_params(_params(tmp_path, source, target, dirs))
        assert str(err.value) == message
    # A result moved to another shard's directory is refused by path.
    changed = next(k for k in range(SHARDS) if jsonio.read(f"{shards[k]}/results.json")["results"])
    other = (changed + 1) % SHARDS
    moved = jsonio.read(f"{shards[changed]}/results.json")
    for item in moved["results"]:
        for key in ("data", "info"):
            shutil.copy(f"{shards[changed]}/{item[key]}", f"{shards[other]}/{item[key]}")
    moved["shard"] = other
    jsonio.write(f"{shards[other]}/results.json", moved)
    jsonio.write(f"{shards[changed]}/results.json", {"results": [], "shard": changed, "shards": SHARDS})
    path = moved["results"][0]["path"]
    with pytest.raises(OtaError) as err:
        package_writer.load_params(_params(tmp_path, source, target, shards))
    assert str(err.value) == f"{shards[other]}/results.json: {escape(path)}: belongs to shard {changed}, not {other}"


def _in_shard(path: str, shard: int) -> str:
    """`path` with a suffix that puts it in `shard` (a bad path must not pass for being in place;
    a character that stands for no byte has no shard)."""
    return next(f"{path}{n}" for n in range(10_000) if shard_layout.shard_of(f"{path}{n}", SHARDS) == shard)


def _listing_edits(shards: list[str], rng: random.Random) -> list[tuple[str, object]]:
    """Hostile or odd edits of shard listings, each (listing path, new document or raw bytes)."""
    docs = {out: jsonio.read(f"{out}/results.json") for out in shards}
    full = [out for out in shards if docs[out]["results"]]
    edits: list[tuple[str, object]] = []
    for _ in range(40):
        out = rng.choice(full)
        doc = copy.deepcopy(docs[out])
        item = rng.choice(doc["results"])
        change = rng.randrange(12)
        if change == 0:
            doc[rng.choice(["shard", "shards"])] = rng.choice([True, -1, 0, 31, 32, 33, "1", None, 1.0])
        elif change == 1:
            doc.pop(rng.choice(["shard", "shards", "results"]))
        elif change == 2:
            doc["results"] = rng.choice([None, {}, "x", [None], [[]]])
        elif change == 3:
            item.pop(rng.choice(["path", "info", "data"]))
        elif change == 4:
            item[rng.choice(["path", "info", "data"])] = rng.choice([None, 7, True, [], ""])
        elif change == 5:  # an unsafe path, even one that hashes to this very shard
            bad = rng.choice(["../x", "/abs", "a//b", "a\0b", ".ota-scratch/x", "\ud800", "a/", "a/./b"])
            item["path"] = bad if bad == "\ud800" or rng.random() < 0.3 else _in_shard(bad, doc["shard"])
        elif change == 6:
            doc["results"].append(copy.deepcopy(item))  # the same path twice
        elif change == 7:  # a path of another shard
            other = rng.choice([o for o in full if o != out])
            doc["results"].append(copy.deepcopy(docs[other]["results"][0]))
        elif change == 8:
            item["info"] = rng.choice(["missing.json", item["data"], "."])  # unreadable or not an info
        elif change == 9:
            edits.append((f"{out}/results.json", b'{"results": [' if rng.random() < 0.5 else b"\xff"))
            continue
        elif change == 10:
            doc = rng.choice([[], None, "results", 7])
        else:
            item["extra"] = "ignored"  # odd but legal
        edits.append((f"{out}/results.json", doc))
    return edits


@pytest.mark.parametrize("seed", range(3))
def test_shard_listings_are_checked_alike_with_and_without_the_fast_path_and_cache(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assembler takes a listing whose own checks all pass in one go (and a worker keeps
    that by its bytes); any other listing is checked step by step. Generated hostile edits of
    real listings must get the same params or the same message either way, fresh or cached."""
    members = source_tree(seed, 60, ("plain", "utf8", "non_utf8"))
    source, source_dirs = _tar_side(tmp_path, "v1", members)
    target, target_dirs = _tar_side(tmp_path, "v2", target_tree(members, seed, ("plain", "utf8", "non_utf8")))
    shards = _shards(tmp_path, source_dirs, target_dirs)
    params = _params(tmp_path, source, target, shards)

    def outcome() -> object:
        try:
            return package_writer.load_params(params)
        except OtaError as err:
            return str(err)

    checked = 0
    for listing, edit in _listing_edits(shards, random.Random(seed)):
        good = Path(listing).read_bytes()
        Path(listing).write_bytes(edit if isinstance(edit, bytes) else json.dumps(edit).encode())  # any str, escaped
        fast, cached = outcome(), outcome()
        with monkeypatch.context() as m:
            m.setattr(package_writer, "_plain_listing", lambda raw, where: None)
            m.setattr(package_writer, "_SHARD_LISTINGS", ByContent())  # nothing kept from the runs above
            step_by_step = outcome()
        assert fast == cached == step_by_step, listing
        checked += isinstance(fast, str)
        Path(listing).write_bytes(good)
    assert checked >= 25  # most edits are refused; the rest must still read alike
    assert isinstance(outcome(), package_writer.Params)
