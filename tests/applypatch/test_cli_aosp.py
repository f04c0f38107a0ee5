"""AOSP-style invocations of the applypatch command: no flags (or flags anywhere), AOSP's check-mode
test vectors (docs/formats.md#aosp-test-vectors), bonus data in both forms, flash refusals, file-target metadata
and cache rules."""

from __future__ import annotations

import gzip
import hashlib
import os
import random

import pytest

from applypatch_helpers import Small, contents_mode_owner, run_cli, setuid_source, sha1_of
from ota.actions import imgdiff
from tests.environment import require, root_missing


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """old.file / new.file stand-ins: n-byte old, longer new (AOSP's are 1348051 and 1388877 bytes)."""
    root = tmp_path_factory.mktemp("vectors")
    old = random.Random(11).randbytes(134_805)
    new = old[:60_000] + random.Random(12).randbytes(4_000) + old[60_000:]
    (root / "old.file").write_bytes(old)
    (root / "new.file").write_bytes(new)
    return root, old, new


def spec_of(path, *pairs: tuple[int, str]) -> str:
    return "EMMC:" + str(path) + "".join(f":{size}:{digest}" for size, digest in pairs)


def test_aosp_check_mode_emmc_vectors_without_any_flags(vectors):
    """CheckModeEmmcTarget (android-8): n = old size, every pair uses old's SHA-1 unless noted.

    Run exactly as an AOSP script would: `applypatch -c EMMC:...`, no flags, no device config.
    """
    root, old, new = vectors
    n, old_sha = len(old), sha1(old)
    old_file, new_file = root / "old.file", root / "new.file"
    passing = [
        spec_of(old_file, (n, old_sha)),
        spec_of(old_file, (n - 1, old_sha), (n, old_sha), (n + 1, old_sha)),
        spec_of(old_file, (n + 1, old_sha), (n, old_sha), (n - 1, old_sha)),
        spec_of(old_file, (n + 1, old_sha), (n - 1, old_sha), (n, old_sha)),
        spec_of(new_file, (n + 1, old_sha), (n - 1, old_sha), (n, old_sha), (len(new), sha1(new))),
    ]
    for spec in passing:
        result = run_cli("-c", spec)
        assert (result.returncode, result.stdout, result.stderr) == (0, f"{spec}: ok\n", ""), spec
    failing = [  # CheckPartition_Mismatching: size +-1 fails; n-1, n+1 fails (mismatch, then short read)
        (old_file, [(n - 1, old_sha)], "no size:sha1 pair matches"),
        (old_file, [(n + 1, old_sha)], f"short read at {n} of {n + 1} bytes"),
        (old_file, [(n - 1, old_sha), (n + 1, old_sha)], f"short read at {n} of {n + 1} bytes"),
        (new_file, [(n - 1, old_sha), (n, old_sha), (n + 1, old_sha)], "no size:sha1 pair matches"),
    ]
    for file, pairs, why in failing:
        spec = spec_of(file, *pairs)
        # Our flag after the classic arguments: keeps the host's /cache out of the check.
        result = run_cli("-c", spec, f"--cache_dir={root}")
        assert (result.returncode, result.stderr) == (
            1,
            (
                f"applypatch: error: {spec}: check failed (EMMC:{file}: "
                f"holds none of the listed images ({why}); no cache copy)\n"
            ),
        )


def test_classic_check_with_sha256_arguments_and_flags_anywhere(vectors, tmp_path):
    root, old, _ = vectors
    sha256 = hashlib.sha256(old).hexdigest()
    assert run_cli("-c", str(root / "old.file"), "0" * 40, sha256.upper()).returncode == 0
    assert run_cli("-c", spec_of(root / "old.file", (len(old), sha256))).returncode == 0
    assert run_cli(f"--cache_dir={tmp_path}", "-c", str(root / "old.file"), "--min_free", "0", sha256).returncode == 0
    result = run_cli("-c", str(root / "old.file"), sha256, "--no_such_flag")
    assert result.returncode == 2 and "no_such_flag" in result.stderr
    assert run_cli("-c", str(root / "old.file"), "--check", "x").returncode == 2  # forms still may not mix


def test_check_of_a_corrupted_or_missing_file_falls_back_to_the_cache_copy(tmp_path, small: Small):
    """AOSP's CheckCacheCorrupted/CheckCacheMissing: -c passes when the cache copy matches."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "saved.file").write_bytes(small.source)
    file = tmp_path / "app.bin"
    file.write_bytes(small.source[:-1] + b"!")
    cache = f"--cache_dir={tmp_path / 'cache'}"
    result = run_cli(cache, "-c", str(file), small.src_sha)
    assert result.returncode == 0 and "the cache copy matches" in result.stdout
    os.unlink(file)
    assert run_cli(cache, "-c", str(file), small.tgt_sha, small.src_sha).returncode == 0
    (tmp_path / "cache" / "saved.file").write_bytes(b"corrupted too")
    result = run_cli(cache, "-c", str(file), small.src_sha)
    assert result.returncode == 1 and "the cache copy matches none either" in result.stderr


def boot_and_recovery(tmp_path):
    """A boot image and a recovery image built from it plus bonus data (as recovery-from-boot.p)."""
    rng = random.Random(5)
    words = [bytes(rng.choice(b"abcdefghij") for _ in range(rng.randrange(3, 9))) for _ in range(400)]
    text = b" ".join(rng.choice(words) for _ in range(30_000))
    bonus = b"recovery resources: " + b" ".join(rng.choice(words) for _ in range(8_000))
    boot = b"ANDROID!" + rng.randbytes(4088) + gzip.compress(text, 6, mtime=0) + b"\0" * 1000
    recovery = b"ANDROID!" + rng.randbytes(4088) + gzip.compress(text + b"\nrecovery\n" + bonus, 6, mtime=0)
    for name, data in (
        ("boot.img", boot + b"\0" * 8192),
        ("recovery.img", b"\xee" * (len(recovery) + 4096)),
        ("bonus.dat", bonus),
        ("recovery.p", imgdiff.make_image_patch(boot, recovery, bonus=bonus)),
    ):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "cache").mkdir()
    (tmp_path / "dev.cfg").write_text(
        "partition boot file boot.img\npartition recovery file recovery.img\ncache cache\n"
    )
    return boot, recovery


@pytest.mark.parametrize("form", ["classic", "android9"])
def test_bonus_data_patches_recovery_from_boot(tmp_path, form):
    """install-recovery.sh's call: boot partition + bonus file -> recovery partition; boot untouched."""
    boot, recovery = boot_and_recovery(tmp_path)
    source = f"EMMC:boot:{len(boot)}:{sha1(boot)}"
    target = f"EMMC:recovery:{len(recovery)}:{sha1(recovery)}"
    patch, bonus, config = tmp_path / "recovery.p", tmp_path / "bonus.dat", f"--device_config={tmp_path / 'dev.cfg'}"
    if form == "classic":
        with_bonus = [
            "-b",
            str(bonus),
            source,
            target,
            sha1(recovery),
            str(len(recovery)),
            f"{sha1(boot)}:{patch}",
            config,
        ]
        without = with_bonus[2:]
    else:
        without = [config, f"--patch={patch}", f"--source={source}", f"--target={target}"]
        with_bonus = without + [f"--bonus={bonus}"]
    before = sha1_of(str(tmp_path / "boot.img")), sha1_of(str(tmp_path / "recovery.img"))
    missing = run_cli(*without)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "chunk 1: deflate data" in missing.stderr
    assert (sha1_of(str(tmp_path / "boot.img")), sha1_of(str(tmp_path / "recovery.img"))) == before
    done = run_cli(*with_bonus)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "recovery.img").read_bytes()[: len(recovery)] == recovery
    assert sha1_of(str(tmp_path / "boot.img")) == before[0] and os.listdir(tmp_path / "cache") == []
    assert "already target" in run_cli(*with_bonus).stdout


def test_flash_refuses_a_wrong_image_and_says_already(tmp_path, small: Small):
    part = tmp_path / "boot.img"
    original = small.source + b"\0" * 4096
    part.write_bytes(original)
    (tmp_path / "new.img").write_bytes(small.target)
    target = f"EMMC:{part}:{len(small.target)}:{small.tgt_sha}"
    before = sha1_of(str(part))
    wrong = run_cli("--flash", str(tmp_path / "new.img"), "--target", f"EMMC:{part}:{len(small.target)}:{'0' * 40}")
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1 and "does not match the target spec" in wrong.stderr
    assert sha1_of(str(part)) == before
    assert run_cli("--flash", str(tmp_path / "new.img"), "--target", target).returncode == 0
    assert part.read_bytes() == small.target + original[len(small.target) :]
    assert run_cli("--flash", str(tmp_path / "new.img"), "--target", target).stdout.endswith("already target\n")


def test_file_target_keeps_setuid_mode_and_owner(tmp_path, small: Small):
    """The target gets the source's mode and owner; chown before chmod keeps setuid/setgid."""
    require(root_missing("giving a file another owner"))
    tool = setuid_source(tmp_path, small, 0o6750)
    result = run_cli(
        f"--cache_dir={tmp_path / 'cache'}",
        tool,
        "-",
        small.tgt_sha,
        str(len(small.target)),
        f"{small.src_sha}:{tmp_path / 'p'}",
    )
    assert result.returncode == 0, result.stderr
    assert contents_mode_owner(tool) == (small.target, 0o6750, 1000, 2000)


def test_freeing_the_cache_keeps_the_patch_named_on_the_command_line(tmp_path, small: Small):
    """The OTA puts patches in /cache; freeing room for the backup must not delete the patch itself."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "a-boot.p").write_bytes(small.patch)
    (cache / "b-old.log").write_bytes(b"x" * 200_000)
    (tmp_path / "boot.img").write_bytes(small.source + b"\0" * 4096)
    # 1000 bytes short of room for the backup: the log must go, the patch (first by name) must stay.
    limit = len(small.patch) + 200_000 + len(small.source) - 1000
    args = [
        small.spec("EMMC", str(tmp_path / "boot.img")),
        "-",
        small.tgt_sha,
        str(len(small.target)),
        f"{small.src_sha}:{cache / 'a-boot.p'}",
        f"--cache_dir={cache}",
        f"--cache_limit={limit}",
        "--min_free=0",
    ]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(cache)) == ["a-boot.p"]
    assert (tmp_path / "boot.img").read_bytes()[: len(small.target)] == small.target
