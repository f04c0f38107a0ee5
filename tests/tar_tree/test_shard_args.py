"""A bucket's side on the shard action's command line (rules/private/tar_tree.bzl `side_args`,
py/ota/actions/file_patch_shard.py): escaped `--<side>_path=` values paired by position with
`--<side>_file=` values, in Bazel's one-argument-a-line param file.

An install path may hold any byte but NUL and '/', so what must hold is that every path the rule
names reaches the tool's results byte for byte, whatever bytes it has: checked on the lines Bazel
itself expands from the real `side_args` (starlark_shard_args in shard_names.bzl), and on
generated paths of every byte class through the tool's real flag parsing, as a worker request
and as a one-shot `@params` run. Every malformed command line is one line naming the flag and
the escaped path, a non-zero exit, and no output directory.
"""

from __future__ import annotations

import contextlib
import io
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ota.actions import file_patch_shard, persistent_worker, shard_layout
from ota.format import jsonio
from ota.format.patch import apply_patch
from ota.format.paths import escape, from_bytes, sort_key, to_bytes

SHARDS = 32  # TAR_SHARDS in rules/private/tar_tree.bzl
STARLARK = Path("tests/tar_tree/starlark_shard_args")


def side_args(side: str, pairs: list[tuple[str, str]]) -> list[str]:
    """What `side_args` gives a bucket holding `pairs` (path, file), sorted by path bytes."""
    pairs = sorted(pairs, key=lambda pair: sort_key(pair[0]))
    return [f"--{side}_path={escape(p)}" for p, _ in pairs] + [f"--{side}_file={f}" for _, f in pairs]


def shard_command(shard: int, out: Path, *sides: list[str]) -> list[str]:
    return ["--shard", str(shard), "--shards", str(SHARDS), *[a for side in sides for a in side], "--out_dir", str(out)]


def run_request(args: list[str]) -> persistent_worker.Outcome:
    """One worker request, in this process."""
    return persistent_worker.handle(args, file_patch_shard.TOOL)


def run_once(args: list[str], params: Path) -> tuple[int, str]:
    """The one-shot run Bazel falls back to: `file_patch_shard @params`, a "multiline" file."""
    params.write_bytes(b"".join(arg.encode("ascii") + b"\n" for arg in args))
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        code = persistent_worker.main(["file_patch_shard", f"@{params}"], file_patch_shard.TOOL)
    return code, captured.getvalue()


def results(out: Path) -> dict[bytes, dict]:
    """results.json of a shard directory: each path's bytes -> its patch info."""
    doc = jsonio.read(str(out / shard_layout.RESULTS))
    return {to_bytes(r["path"]): jsonio.read(str(out / r["info"])) | {"data": out / r["data"]} for r in doc["results"]}


def shipped(info: dict, source: bytes | None) -> bytes:
    """The target bytes a result stands for: the whole file, or its patch applied to `source`."""
    data = info["data"].read_bytes()
    return data if info["method"] == "WHOLE" else apply_patch(source or b"", data)


def test_bazel_expands_side_args_to_the_escaped_pairs_the_tool_reads(tmp_path: Path) -> None:
    """Bazel's own expansion of `side_args` (every byte class, flag- and format-like names, a
    456-byte path): per shard the escaped pairs, and the tool names exactly those paths."""
    doc = jsonio.read(str(STARLARK) + ".json")
    names, files = doc["names"], doc["files"]
    groups: dict[int, list[str]] = {}
    for line in Path(str(STARLARK) + ".params").read_bytes().decode("ascii").split("\n")[:-1]:
        if line.startswith("--shard="):
            groups[int(line.partition("=")[2])] = current = []
        else:
            current.append(line)
    expected = {
        k: side_args(
            "target", [(n, f) for n, f in zip(names, files, strict=True) if shard_layout.shard_of(n, SHARDS) == k]
        )
        for k in {shard_layout.shard_of(n, SHARDS) for n in names}
    }
    assert groups == expected
    # The tool reads the lines as Bazel wrote them, with each file at a place of this test's own.
    contents = {f: f"{n!r}\n".encode() * 3 for n, f in zip(names, files, strict=True)}
    for f, data in contents.items():
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(data)
    for k, lines in groups.items():
        local = [line.replace("--target_file=", f"--target_file={tmp_path}/", 1) for line in lines]
        out = tmp_path / f"out_{k}"
        assert run_once(shard_command(k, out, local), tmp_path / f"params_{k}") == (0, "")
        wanted = {
            to_bytes(n): contents[f] for n, f in zip(names, files, strict=True) if shard_layout.shard_of(n, SHARDS) == k
        }
        assert {p: shipped(i, None) for p, i in results(out).items()} == wanted


_BYTE_CLASSES = [
    st.sampled_from([b"\\", b"\\\\", b"\\0", b"\\377", b"\\x41"]),
    st.sampled_from([b"\n", b"\r", b"\r\n", b"\t", b"\x7f", b"\x01"]),
    st.sampled_from([b"\xff", b"\xc3", b"\xc3\xa9", b"\xed\xa0\x80", b"\x80\x80"]),
    st.sampled_from([b" ", b"  ", b"a b", b" trailing "]),
    st.sampled_from([b".", b"..", b".hidden", b"...", b"--flag", b"-", b"%s", b"a=b", b'"']),
    st.binary(min_size=200, max_size=255).filter(lambda b: b"/" not in b and b"\0" not in b),
    st.text("abcxyz019_.-", min_size=1, max_size=8).map(str.encode),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b),
]
_NAME = (
    st.lists(st.one_of(_BYTE_CLASSES), min_size=1, max_size=3)
    .map(b"".join)
    .filter(lambda n: len(n) <= 255 and n not in (b".", b".."))
)
_PATHS = st.lists(st.lists(_NAME, min_size=1, max_size=3).map(b"/".join), min_size=1, max_size=24, unique=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw_paths=_PATHS, seed=st.integers(0, 2**32 - 1))
def test_generated_paths_reach_the_results_byte_for_byte(tmp_path: Path, raw_paths: list[bytes], seed: int) -> None:
    """Generated paths of every byte class, on both sides, some unchanged, some only in the
    target: every shard holding one runs as a worker request and as a one-shot @params run;
    both write the same files, and the results name exactly the changed and new target paths,
    byte for byte, each standing for its target bytes."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis runs every example in one tmp_path
    (work / "files").mkdir()
    paths = [from_bytes(p) for p in raw_paths]
    old: dict[str, bytes] = {}
    new: dict[str, bytes] = {}
    sides: dict[str, list[tuple[str, str]]] = {"source": [], "target": []}
    for index, path in enumerate(paths):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        kind = rng.choice(["changed", "same", "new"])
        new[path] = body + (b"v2" if kind == "changed" else b"")
        if kind != "new":
            old[path] = body
        for side, data in (("source", old.get(path)), ("target", new[path])):
            if data is not None:
                (work / "files" / f"{side}_{index}").write_bytes(data)
                sides[side].append((path, str(work / "files" / f"{side}_{index}")))
    for k in sorted({shard_layout.shard_of(p, SHARDS) for p in paths}):
        mine = {
            side: [(p, f) for p, f in pairs if shard_layout.shard_of(p, SHARDS) == k] for side, pairs in sides.items()
        }
        args = {side: side_args(side, pairs) for side, pairs in mine.items()}
        worker, once = work / f"worker_{k}", work / f"once_{k}"
        outcome = run_request(shard_command(k, worker, args["target"], args["source"]))
        assert (outcome.exit_code, outcome.output) == (0, "")
        assert run_once(shard_command(k, once, args["target"], args["source"]), work / f"params_{k}") == (0, "")
        assert sorted(p.name for p in worker.iterdir()) == sorted(p.name for p in once.iterdir())
        for produced in worker.iterdir():
            assert produced.read_bytes() == (once / produced.name).read_bytes()
        got = results(worker)
        wanted = {p for p, _ in mine["target"] if old.get(p) != new[p]}
        assert set(got) == {to_bytes(p) for p in wanted}
        for path in wanted:
            info = got[to_bytes(path)]
            assert to_bytes(info["path"]) == to_bytes(path)
            assert shipped(info, old.get(path)) == new[path]


def _two_paths_of(shard: int) -> list[str]:
    """Two distinct generated paths that shard_of puts in `shard`, and one it does not."""
    found = [p for p in (f"lib/x\\{i}\n.so" for i in range(2000)) if shard_layout.shard_of(p, SHARDS) == shard]
    other = next(p for p in (f"etc/y{i}" for i in range(2000)) if shard_layout.shard_of(p, SHARDS) != shard)
    return [*found[:2], other]


@pytest.mark.parametrize("side", ["target", "source"])
def test_each_bad_command_line_is_one_line_and_leaves_no_output(tmp_path: Path, side: str) -> None:
    """Count mismatch, a path of another shard, a path twice, a bad escape, an illegal path and
    a directory next to pairs: the exact one-line message, exit 1 or 2, no output directory."""
    shard = 7
    first, second, stranger = _two_paths_of(shard)
    flag = f"--{side}_path"
    (tmp_path / "f").write_bytes(b"x")
    file = f"--{side}_file={tmp_path / 'f'}"
    other_shard = shard_layout.shard_of(stranger, SHARDS)
    cases = [
        (
            [f"{flag}={escape(first)}", f"{flag}={escape(second)}", file],
            2,
            f"file_patch_shard: usage: 2 {flag} but 1 --{side}_file: each path needs the file at its position\n",
        ),
        (
            [f"{flag}={escape(stranger)}", file],
            1,
            f'file_patch_shard: error: {flag}: "{escape(stranger)}": belongs to shard {other_shard} of 32, not 7\n',
        ),
        (
            [f"{flag}={escape(first)}", f"{flag}={escape(first)}", file, file],
            1,
            f'file_patch_shard: error: {flag}: "{escape(first)}": given twice\n',
        ),
        (
            [f"{flag}=lib/x\\9", file],
            1,
            (
                f"file_patch_shard: error: {flag}: path 'lib/x\\\\9': '\\' must start a 3-digit octal escape"
                " (\\000 to \\377)\n"
            ),
        ),
        (
            [f"{flag}=a/../b", file],
            1,
            f"file_patch_shard: error: {flag}: path \"a/../b\": a '..' component is not allowed\n",
        ),
        (
            [f"--{side}_dir={tmp_path}", f"{flag}={escape(first)}", file],
            2,
            f"file_patch_shard: usage: --{side}_dir excludes {flag} and --{side}_file\n",
        ),
    ]
    for index, (pairs, code, message) in enumerate(cases):
        out = tmp_path / f"out_{index}"
        outcome = run_request(shard_command(shard, out, pairs))
        assert (outcome.exit_code, outcome.output) == (code, message), index
        assert run_once(shard_command(shard, out, pairs), tmp_path / "params") == (code, message), index
        assert not out.exists(), index


def test_an_empty_bucket_is_an_empty_side_and_a_source_without_paths_is_no_source(tmp_path: Path) -> None:
    """No pairs at all (an empty bucket's command line): an empty results.json, not an error. A
    target without any source pairs ships the same files as a full package's shard (source
    None): `patch_shard` treats None and {} alike."""
    outcome = run_request(shard_command(3, tmp_path / "empty"))
    assert (outcome.exit_code, outcome.output) == (0, "")
    assert jsonio.read(str(tmp_path / "empty" / shard_layout.RESULTS)) == {"results": [], "shard": 3, "shards": 32}
    first, second, _ = _two_paths_of(3)
    pairs = []
    for index, path in enumerate((first, second)):
        (tmp_path / f"t{index}").write_bytes(path.encode("utf-8", "surrogateescape") * 40)
        pairs.append((path, str(tmp_path / f"t{index}")))
    assert run_request(shard_command(3, tmp_path / "no_source", side_args("target", pairs))).exit_code == 0
    target = file_patch_shard.load_args([escape(p) for p, _ in pairs], [f for _, f in pairs], 3, SHARDS, "target")
    file_patch_shard.patch_shard(None, target, str(tmp_path / "none"), shard=3, shards=SHARDS, methods={})
    for produced in (tmp_path / "none").iterdir():
        assert produced.read_bytes() == (tmp_path / "no_source" / produced.name).read_bytes(), produced
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == sorted(
        p.name for p in (tmp_path / "no_source").iterdir()
    )
