"""The applypatch command: both command-line forms, exit codes, bad input, the check-mode fix."""

from __future__ import annotations

import hashlib
import os

import pytest

from applypatch_helpers import Small, run_cli, run_testbench_cli, sha1_of
from ota.actions import make_bsdiff
from ota.testing.faults import CRASH_EXIT_CODE

PART_SIZE = 1 << 20


@pytest.fixture
def device(tmp_path, small: Small):
    """A file-backed boot partition holding the source, a cache dir, the patch and a device config."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "boot.img").write_bytes(small.source + b"\0" * (PART_SIZE - len(small.source)))
    (tmp_path / "boot.p").write_bytes(small.patch)
    (tmp_path / "dev.cfg").write_text("partition boot file boot.img\ncache cache\n")
    return tmp_path


def cli(device, *args, **kwargs):
    return run_cli(f"--device_config={device / 'dev.cfg'}", *args, **kwargs)


def faulty(device, faults, *args):
    return run_testbench_cli(faults, f"--device_config={device / 'dev.cfg'}", *args)


def patch_args(device, small: Small, spec: str | None = None, tgt_sha: str | None = None):
    spec = spec or small.spec()
    return [spec, "-", tgt_sha or small.tgt_sha, str(len(small.target)), f"{small.src_sha}:{device / 'boot.p'}"]


def partition(device) -> bytes:
    return (device / "boot.img").read_bytes()


def test_classic_partition_patch_then_already_target(device, small):
    result = cli(device, *patch_args(device, small))
    assert result.returncode == 0, result.stderr
    assert partition(device)[: len(small.target)] == small.target
    assert os.listdir(device / "cache") == []
    again = cli(device, *patch_args(device, small))
    assert again.returncode == 0 and "EMMC:boot: already target" in again.stdout


def test_classic_file_patch_with_sha256_and_hex_size(tmp_path, small):
    (tmp_path / "cache").mkdir()
    target = tmp_path / "app.bin"
    target.write_bytes(small.source)
    (tmp_path / "p").write_bytes(small.patch)
    result = run_cli(
        f"--cache_dir={tmp_path / 'cache'}",
        str(target),
        "-",
        hashlib.sha256(small.target).hexdigest(),
        hex(len(small.target)),
        f"{hashlib.sha256(small.source).hexdigest()}:{tmp_path / 'p'}",
    )
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == small.target and sorted(os.listdir(tmp_path)) == ["app.bin", "cache", "p"]


def test_android9_form_patch_check_and_flash(device, small):
    src_spec = f"EMMC:boot:{len(small.source)}:{small.src_sha}"
    tgt_spec = f"EMMC:boot:{len(small.target)}:{small.tgt_sha}"
    assert cli(device, "--check", tgt_spec).returncode == 1
    result = cli(device, f"--patch={device / 'boot.p'}", f"--source={src_spec}", f"--target={tgt_spec}")
    assert result.returncode == 0, result.stderr
    assert cli(device, "--check", tgt_spec).returncode == 0
    (device / "image").write_bytes(small.source)
    assert cli(device, "--flash", str(device / "image"), "--target", src_spec).returncode == 0
    assert partition(device)[: len(small.source)] == small.source


def test_check_mode_classic(device, small):
    assert cli(device, "-c", small.spec()).returncode == 0
    assert cli(device, "-c", small.spec(), small.src_sha, small.tgt_sha).returncode == 0
    result = cli(device, "-c", small.spec(), small.tgt_sha)
    assert result.returncode == 1 and result.stderr.count("\n") == 1


def test_check_passes_on_a_torn_partition_when_the_cache_copy_matches(device, small):
    """AOSP's gap (docs/applypatch.md): without sha1 arguments a torn partition failed -c forever."""
    # Operations: backup create, write, chmod, fsync, rename, fsync_dir; 7 = the partition write.
    crashed = faulty(device, ["--fault=tear:7"], *patch_args(device, small))
    assert crashed.returncode == CRASH_EXIT_CODE
    torn = partition(device)
    assert torn[: len(small.source)] != small.source, "the cut must leave the source overwritten"
    assert torn[: len(small.target)] != small.target, "the cut must leave the target incomplete"
    assert cli(device, "-c", small.spec(), small.src_sha).returncode == 0  # AOSP passed this one too
    check = cli(device, "-c", small.spec())
    assert check.returncode == 0 and "cache copy matches" in check.stdout
    assert cli(device, *patch_args(device, small)).returncode == 0
    assert partition(device)[: len(small.target)] == small.target and os.listdir(device / "cache") == []


def test_license_and_usage(device):
    for args in (["-l"], ["--license"]):
        result = run_cli(*args)
        assert result.returncode == 0 and "bsdiff4" in result.stdout and "zlib" in result.stdout
    for args in (
        [],
        ["-c"],
        ["-s", "lots"],
        ["a", "b", "c"],
        ["-b", "x"],
        ["src", "-", "0" * 40, "10", "nocolon"],
        ["--check", "x", "src"],
    ):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
    assert run_cli("--help").stdout.count("--device_config") == 1


def test_free_space_mode_deletes_only_what_may_go(device, small):
    cache = device / "cache"
    (cache / "saved.file").write_bytes(b"backup")
    (cache / "a.log").write_bytes(b"x" * 100_000)
    (cache / "b.log").write_bytes(b"x" * 100_000)
    (cache / "held.log").write_bytes(b"x" * 100_000)
    with open(cache / "held.log", "rb"):
        cfg = device / "dev2.cfg"
        cfg.write_text("cache cache 600000\n")
        result = run_cli(f"--device_config={cfg}", "--min_free=1000", "-s", "300000")
        assert result.returncode == 0, result.stderr
        assert sorted(os.listdir(cache)) == ["b.log", "held.log", "saved.file"]
        result = run_cli(f"--device_config={cfg}", "--min_free=1000", "-s", "500000")
    assert result.returncode == 1 and "not enough cache space" in result.stderr
    assert sorted(os.listdir(cache)) == ["b.log", "held.log", "saved.file"]  # refused before deleting anything


@pytest.mark.parametrize(
    "case",
    [
        "patch_mismatch",
        "wrong_target_hash",
        "cache_full",
        "too_small",
        "unknown_name",
        "malformed_spec",
        "unreadable_device",
        "missing_patch",
    ],
)
def test_bad_input_is_one_line_exit_1_and_changes_nothing(device, small, case):
    args = patch_args(device, small)
    extra: list[str] = []
    if case == "patch_mismatch":
        other_source = bytearray(small.source)  # made for a slightly different source
        other_source[2000:2010] = bytes((b + 1) % 256 for b in other_source[2000:2010])
        (device / "boot.p").write_bytes(make_bsdiff.diff(bytes(other_source), small.target))
    elif case == "wrong_target_hash":
        args = patch_args(device, small, tgt_sha="1" * 40)
    elif case == "cache_full":
        (device / "cache" / "precious").write_bytes(b"p" * 200_000)
        held = open(device / "cache" / "precious", "rb")  # noqa: SIM115 - open during the run, closed after
        extra = ["--cache_limit=250000"]
        (device / "dev.cfg").write_text("partition boot file boot.img\n")
        extra.append(f"--cache_dir={device / 'cache'}")
    elif case == "too_small":
        (device / "boot.img").write_bytes(small.source)  # the partition is exactly the source's size
    elif case == "unknown_name":
        args = patch_args(device, small, spec=small.spec(name="vendor_boot"))
    elif case == "malformed_spec":
        args = patch_args(device, small, spec=f"EMMC:boot:{len(small.source)}")
    elif case == "unreadable_device":
        (device / "dev.cfg").write_text("partition boot file nowhere/boot.img\ncache cache\n")
    elif case == "missing_patch":
        os.unlink(device / "boot.p")
    before = sha1_of(str(device / "boot.img")), sorted(os.listdir(device)), sorted(os.listdir(device / "cache"))
    result = cli(device, *extra, *args)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("applypatch: error: "), result.stderr
    expected = {
        "patch_mismatch": "is not the expected target",
        "wrong_target_hash": "is not the expected target",
        "cache_full": "not enough cache space",
        "too_small": "is smaller than the target",
        "unknown_name": "unknown partition",
        "malformed_spec": "partition spec must be",
        "unreadable_device": "cannot open",
        "missing_patch": "cannot read",
    }[case]
    assert expected in lines[0]
    after = sha1_of(str(device / "boot.img")), sorted(os.listdir(device)), sorted(os.listdir(device / "cache"))
    assert after == before
    if case == "cache_full":
        held.close()


def test_cut_child_process_then_rerun_finishes(device, small):
    """The os._exit crash path (process and lossy cuts), for every kind of step of a partition patch (sampled)."""
    log = device / "ops.log"
    assert faulty(device, [f"--fault_log={log}"], *patch_args(device, small)).returncode == 0
    steps = log.read_text().splitlines()
    kinds = {line.split()[1] for line in steps}
    assert {"create", "write", "fsync", "chmod", "rename", "fsync_dir", "unlink"} <= kinds
    for index, lossy in ((1, []), (4, []), (len(steps), []), (5, ["--lossy"]), (len(steps), ["--lossy=3"])):
        (device / "boot.img").write_bytes(small.source + b"\0" * (PART_SIZE - len(small.source)))
        crashed = faulty(device, [f"--fault=before:{index}", *lossy], *patch_args(device, small))
        assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
        assert cli(device, *patch_args(device, small)).returncode == 0
        assert partition(device)[: len(small.target)] == small.target and os.listdir(device / "cache") == []
