"""Tests of the cache checks' readers: Bazel's execution log and build events, and checkout copies.

testdata/execlog_sample.json holds six real spawns of a Bazel 4.2.3 build of //release (input lists
cut to two entries): each patch/package mnemonic once executed in clone A and once a remote cache
hit in clone B.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from tests.cache import bep, execlog, workspace
from tests.cache.checks import Checks

SAMPLE = pathlib.Path(__file__).with_name("testdata") / "execlog_sample.json"
MNEMONICS = ["OtaFilePatch", "OtaBootPatch", "OtaPackage"]


def test_read_spawns_parses_real_log() -> None:
    spawns = list(execlog.read_spawns(SAMPLE))
    assert [(s.mnemonic, s.remote_cache_hit) for s in spawns] == [(m, hit) for hit in (False, True) for m in MNEMONICS]
    assert {s.runner for s in spawns} == {"linux-sandbox", "remote cache hit"}
    patch = spawns[0]
    assert patch.args[0].endswith("/tools/actions/file_patch")
    assert all(len(digest) == 64 for digest in patch.outputs.values())
    assert any(path.endswith(".p") for path in patch.outputs)


def test_read_spawns_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = list(execlog.read_spawns(SAMPLE))
    monkeypatch.setattr(execlog, "_CHUNK", 7)  # every object spans many reads
    assert list(execlog.read_spawns(SAMPLE)) == whole
    assert len(whole) == 6


def test_truncated_log_is_an_error(tmp_path: pathlib.Path) -> None:
    cut = tmp_path / "cut.json"
    text = SAMPLE.read_text()
    cut.write_text(text[: len(text) - 40])
    with pytest.raises(ValueError, match="truncated or malformed"):
        list(execlog.read_spawns(cut))


def test_empty_log_has_no_spawns(tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("\n")
    assert list(execlog.read_spawns(empty)) == []


def test_tally_counts_hits_and_executions() -> None:
    counts = execlog.tally(execlog.read_spawns(SAMPLE), MNEMONICS + ["OtaPartitionPatch"])
    for mnemonic in MNEMONICS:
        assert (counts[mnemonic].total, counts[mnemonic].hits, counts[mnemonic].executed) == (2, 1, 1)
    assert counts["OtaPartitionPatch"].total == 0
    assert execlog.format_tally({"OtaPackage": counts["OtaPackage"]}) == "OtaPackage 1/2 hits (1 executed)"


def test_flag_values() -> None:
    args = ["tool", "--source", "a b", "--method=auto", "--out_data", "x.p", "--flag", "--last"]
    assert execlog.flag_values(args) == {"source": "a b", "method": "auto", "out_data": "x.p"}


def _bep(tmp_path: pathlib.Path, events: list[dict]) -> pathlib.Path:
    path = tmp_path / "bep.json"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _named_set(set_id: str, files: list[pathlib.Path], children: list[str] = ()) -> dict:
    return {
        "id": {"namedSet": {"id": set_id}},
        "namedSetOfFiles": {
            "files": [{"name": f"pkg/{f.name}", "uri": f.as_uri()} for f in files],
            "fileSets": [{"id": c} for c in children],
        },
    }


def _completed(label: str, set_ids: list[str], success: bool = True) -> dict:
    return {
        "id": {"targetCompleted": {"label": label}},
        "completed": {
            "success": success,
            "outputGroup": [{"name": "default", "fileSets": [{"id": s} for s in set_ids]}],
        },
    }


def test_output_digests_follow_nested_sets(tmp_path: pathlib.Path) -> None:
    one, two, three = (tmp_path / n for n in ("one.zip", "two.zip", "three.txt"))
    one.write_bytes(b"1")
    two.write_bytes(b"22")
    three.write_bytes(b"333")
    events = [
        _named_set("1", [two]),
        _named_set("0", [one], ["1"]),
        _completed("//pkg:a", ["0"]),
        _named_set("2", [three]),
        _completed("//pkg:failed", ["2"], success=False),
    ]
    digests = bep.output_digests(_bep(tmp_path, events))
    assert digests == {
        "//pkg:a pkg/one.zip": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
        "//pkg:a pkg/two.zip": "785f3ec7eb32f30b90cd0fcf3657d388b5ff4297f2f9716ff66e9b69c05ddd09",
    }


def test_remote_uri_is_refused(tmp_path: pathlib.Path) -> None:
    event = {
        "id": {"namedSet": {"id": "0"}},
        "namedSetOfFiles": {"files": [{"name": "pkg/x", "uri": "bytestream://127.0.0.1:1/blobs/ab/1"}]},
    }
    with pytest.raises(ValueError, match="experimental_build_event_upload_strategy=local"):
        bep.output_digests(_bep(tmp_path, [event, _completed("//pkg:x", ["0"])]))


def test_copy_checkout_takes_what_git_lists(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    (src / ".gitignore").write_text("/ignored\n")
    (src / "tracked").write_text("t")
    (src / "sub" / "tool").write_text("#!/bin/sh\n")
    (src / "sub" / "tool").chmod(0o755)
    (src / "link").symlink_to("tracked")
    (src / "gone").write_text("g")
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    (src / "gone").unlink()
    (src / "untracked").write_text("u")
    (src / "ignored").write_text("i")
    dst = tmp_path / "elsewhere" / "dst"
    workspace.copy_checkout(src, dst)
    listed = sorted(str(p.relative_to(dst)) for p in dst.rglob("*"))
    assert listed == [".gitignore", "link", "sub", "sub/tool", "tracked", "untracked"]
    assert (dst / "link").is_symlink() and (dst / "link").read_text() == "t"
    assert (dst / "sub" / "tool").stat().st_mode & 0o111


def test_checks_count_and_summarize(capsys: pytest.CaptureFixture[str]) -> None:
    checks = Checks()
    assert checks.check(True, "first")
    assert not checks.check(False, "second", "why")
    assert checks.summary() == "1 passed, 1 failed"
    assert capsys.readouterr().out == "PASS: first\nFAIL: second -- why\n"
