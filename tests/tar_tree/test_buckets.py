"""Buckets of small changed files (ota_package's `batch_max_bytes`, docs/rules.md "Batches").

What the rule does at analysis time is redone here in Python on generated tree pairs (every name
class of tar_pairs.py: '\\', newlines, bytes that are not UTF-8): changed paths below the size
limit go into the bucket `shard_layout.shard_of` names (the Starlark function is the same one,
test_shards.py checks that), each bucket's command line names only its changed paths (escaped
`--<side>_path=` / `--<side>_file=` pairs), the bucket actions run `file_patch_shard`, every other
changed path runs `file_patch` alone. The package must be byte-identical to the one without
batching, for every limit; a bucket's arguments must not move when other paths come or go; and
the shard tool served by a persistent worker must write the same results as run once per bucket.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota.actions import file_patch, file_patch_shard, package_writer, persistent_worker, shard_layout, tar_tree, tree
from ota.format import jsonio
from ota.format.paths import escape, from_bytes, sort_key
from ota.proto import worker_protocol_pb2 as pb
from tar_pairs import ALL_CLASSES, source_tree, target_tree, write_tar

BUCKETS = 32  # TAR_SHARDS in rules/private/tar_tree.bzl: buckets and tar shards are one split


def _tree_files(base: Path, name: str, members: list) -> tuple[str, dict[str, tree.TreeEntry]]:
    """Writes a tar of `members` and reads it; returns (manifest, regular files by path with
    their `file` and their content)."""
    tar = base / f"{name}.tar"
    write_tar(str(tar), members)
    dirs = [str(base / name / f"shard_{k}") for k in range(BUCKETS)]
    manifest, tree_json = str(base / f"{name}.manifest.json"), str(base / f"{name}.tree.json")
    tar_tree.write_outputs(str(tar), dirs, manifest, tree_json, tar_tree.Limits())
    contents = {e.path: e.content for e in tree.load_manifest(manifest)}
    files = {e.path: (e, contents[e.path]) for e in tree.load_tree(tree_json) if e.kind == tree.FILE}
    return manifest, files


def bucket_args(changed: list[str], files: dict, side: str, buckets: int = BUCKETS) -> list[list[str]]:
    """The arguments of one side the rule gives each bucket (rules/private/tar_tree.bzl
    `_side_args`): only the bucket's changed paths, sorted, escaped, then their files."""
    by_bucket: list[list[str]] = [[] for _ in range(buckets)]
    for path in sorted(changed, key=sort_key):
        by_bucket[shard_layout.shard_of(path, buckets)].append(path)
    return [
        [f"--{side}_path={escape(p)}" for p in bucket] + [f"--{side}_file={files[p]}" for p in bucket]
        for bucket in by_bucket
    ]


def _package(base: Path, source: tuple, target: tuple, limit: int, name: str) -> bytes:
    """The package ota_package's actions give with `batch_max_bytes = limit` (0: no batching)."""
    (source_manifest, old), (target_manifest, new) = source, target
    out = base / name
    out.mkdir()
    changed = sorted(p for p in new if p in old and old[p][1] != new[p][1])
    batched = [p for p in changed if old[p][1].size + new[p][1].size < limit]
    file_patches = []
    for index, path in enumerate(p for p in changed if p not in batched):
        data, info = out / f"{index}.p", out / f"{index}.json"
        result = file_patch.patch_files(old[path][0].file, new[path][0].file, path, str(data))
        jsonio.write(str(info), result.to_json())
        file_patches.append({"data": str(data), "info": str(info), "path": path})
    whole_files = [{"file": new[p][0].file, "path": p} for p in sorted(p for p in new if p not in old)]
    shards = []
    if batched:
        sides = {side: {p: files[p][0].file for p in batched} for side, files in (("source", old), ("target", new))}
        for k in range(BUCKETS):
            loaded = {}
            for side, files in sides.items():
                pairs = bucket_args(batched, files, side)[k]
                half = len(pairs) // 2
                escaped = [arg.partition("=")[2] for arg in pairs[:half]]
                loaded[side] = file_patch_shard.load_args(
                    escaped, [arg.partition("=")[2] for arg in pairs[half:]], k, BUCKETS, side
                )
            shard = out / f"shard_{k}"
            file_patch_shard.patch_shard(
                loaded["source"], loaded["target"], str(shard), shard=k, shards=BUCKETS, methods={}
            )
            shards.append(str(shard))
    params = {
        "downgrade": False,
        "file_patches": file_patches,
        "partitions": [],
        "source": {"device": "d", "fingerprint": "d/1", "system_manifest": source_manifest, "timestamp": 1},
        "target": {"device": "d", "fingerprint": "d/2", "system_manifest": target_manifest, "timestamp": 2},
        "type": "INCREMENTAL",
        "whole_files": whole_files,
    }
    if shards:
        params["file_patch_shards"] = shards
    jsonio.write(str(out / "params.json"), params)
    package_writer.write_package(str(out / "params.json"), str(out / "package.zip"))
    return (out / "package.zip").read_bytes()


@pytest.mark.parametrize("seed", range(6))
def test_batching_never_changes_the_package_bytes(tmp_path: Path, seed: int) -> None:
    """Six generated pairs (every name class), each packaged with no batching, with a limit
    between the changed files' sizes, and with every changed file batched: one package."""
    members = source_tree(seed, 90, ALL_CLASSES)
    source = _tree_files(tmp_path, "v1", members)
    target = _tree_files(tmp_path, "v2", target_tree(members, seed, ALL_CLASSES))
    old, new = source[1], target[1]
    sums = sorted(old[p][1].size + new[p][1].size for p in new if p in old and old[p][1] != new[p][1])
    assert len(sums) >= 5
    limits = [0, sums[len(sums) // 2], sums[-1] + 1]
    packages = [_package(tmp_path, source, target, limit, f"limit_{limit}") for limit in limits]
    assert packages[1:] == packages[:1] * 2


_NAME = st.binary(min_size=1, max_size=10).filter(lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b".."))
_PATHS = st.lists(st.lists(_NAME, min_size=1, max_size=3).map(b"/".join), min_size=1, max_size=80, unique=True)


@settings(max_examples=150, deadline=None)
@given(kept=_PATHS, others=_PATHS, removed_share=st.floats(0, 1))
def test_a_bucket_command_line_does_not_move_when_other_paths_come_or_go(
    kept: list[bytes], others: list[bytes], removed_share: float
) -> None:
    """Changed paths `kept` with some of `others` before and the rest after: every bucket that
    holds none of the paths that came or went keeps its arguments byte for byte, so its action
    keeps its key; each path's bucket is the same in both."""
    before_only = [p for i, p in enumerate(others) if p not in kept and i < removed_share * len(others)]
    after_only = [p for p in others if p not in kept and p not in before_only]
    before = [from_bytes(p) for p in kept + before_only]
    after = [from_bytes(p) for p in kept + after_only]
    files = {p: f"files/{i}" for i, p in enumerate(dict.fromkeys(before + after))}
    moved = {shard_layout.shard_of(p, BUCKETS) for p in before + after if (p in before) != (p in after)}
    old, new = bucket_args(before, files, "target"), bucket_args(after, files, "target")
    for k in range(BUCKETS):
        if k not in moved:
            assert old[k] == new[k], k


def test_generated_paths_fill_the_buckets_evenly() -> None:
    """The changed files of a generated 7,000-file pair (about 1,600 in the scale bench) spread
    over the 32 buckets within 40 % of an even share, so no bucket holds the others back."""
    rng = random.Random(11)
    paths = [
        f"usr/lib/x86_64-linux-gnu/lib{rng.choice(['dbus', 'gio', 'ssl', 'z'])}{i}-{rng.randrange(9)}.so.{i % 7}"
        for i in range(1600)
    ]
    counts = [0] * BUCKETS
    for path in paths:
        counts[shard_layout.shard_of(path, BUCKETS)] += 1
    even = len(paths) / BUCKETS
    assert all(abs(n - even) < 0.4 * even for n in counts), counts


def _bucket_args(k: int, out: str, sides: dict[str, list[list[str]]]) -> list[str]:
    return [
        "--shard",
        str(k),
        "--shards",
        str(BUCKETS),
        *sides["target"][k],
        *sides["source"][k],
        "--patch_methods",
        "{}",
        "--patch_threshold",
        "0.95",
        "--out_dir",
        out,
    ]


def _tool_env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p)}


def test_the_shard_tool_in_a_worker_writes_what_one_shot_runs_write(tmp_path: Path) -> None:
    """Every bucket of a generated pair (empty ones included) and two bad requests through one
    persistent worker; each answer and output directory equals a one-shot run's."""
    members = source_tree(3, 60, ALL_CLASSES)
    _, old = _tree_files(tmp_path, "v1", members)
    _, new = _tree_files(tmp_path, "v2", target_tree(members, 3, ALL_CLASSES))
    changed = sorted(p for p in new if p in old and old[p][1] != new[p][1])
    sides = {
        side: bucket_args(changed, {p: files[p][0].file for p in changed}, side)
        for side, files in (("source", old), ("target", new))
    }
    requests = [_bucket_args(k, f"worker/shard_{k}", sides) for k in range(BUCKETS)]
    bucket = next(k for k in range(BUCKETS) if sides["target"][k])
    missing = _bucket_args(bucket, "worker/missing", sides)
    missing[missing.index(next(a for a in missing if a.startswith("--target_file=")))] = "--target_file=no-such-file"
    requests += [missing, ["--shard", "40", "--shards", "32"]]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ota.actions.file_patch_shard", "--persistent_worker"],
        cwd=tmp_path,
        env=_tool_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    responses = []
    try:
        for args in requests:
            persistent_worker.write_message(proc.stdin, pb.WorkRequest(arguments=args).SerializeToString())
            responses.append(pb.WorkResponse.FromString(persistent_worker.read_message(proc.stdout)))
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    for k in range(BUCKETS):
        params = tmp_path / f"params_{k}"
        params.write_text("\n".join(_bucket_args(k, f"oneshot/shard_{k}", sides)) + "\n")
        once = subprocess.run(
            [sys.executable, "-m", "ota.actions.file_patch_shard", f"@{params.name}"],
            cwd=tmp_path,
            env=_tool_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert (responses[k].exit_code, responses[k].output) == (once.returncode, once.stderr) == (0, ""), k
        worker_dir, oneshot_dir = tmp_path / "worker" / f"shard_{k}", tmp_path / "oneshot" / f"shard_{k}"
        assert sorted(p.name for p in worker_dir.iterdir()) == sorted(p.name for p in oneshot_dir.iterdir())
        for produced in worker_dir.iterdir():
            assert produced.read_bytes() == (oneshot_dir / produced.name).read_bytes(), produced
    listed = [jsonio.read(str(tmp_path / "worker" / f"shard_{k}" / shard_layout.RESULTS)) for k in range(BUCKETS)]
    assert sorted(r["path"] for doc in listed for r in doc["results"]) == sorted(changed)
    assert [r.exit_code for r in responses[BUCKETS:]] == [1, 2]
    assert responses[BUCKETS].output == (
        "file_patch_shard: error: no-such-file: cannot read: No such file or directory\n"
    )
    assert responses[BUCKETS + 1].output == "file_patch_shard: usage: --shard, --shards and --out_dir are required\n"
