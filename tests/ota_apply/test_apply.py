"""ota_apply end to end on real packages: incremental and full, CLI, rerun, resume, progress lines."""

from __future__ import annotations

import os
import re

import pytest

from apply_helpers import TARGET_FP, make_release, run_cli, run_testbench_cli
from ota.device.fsops import FsOps
from ota.device.updater import device as device_mod
from ota.device.updater.engine import ALREADY, APPLIED
from ota.device.updater.journal import Journal
from ota.format.package_reader import open_package
from ota.testing import device_check as dc
from ota.testing.faults import CRASH_EXIT_CODE, read_fault_log


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("release")))


@pytest.mark.parametrize("kind", ["incremental", "full"])
def test_apply_reaches_target_and_rerun_changes_nothing(release, tmp_path, kind):
    package = getattr(release, kind)
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    assert dc.apply(config, package) == APPLIED
    assert dc.compare(config, release.target) == []
    before = dc.device_hash(str(tmp_path / "dev"))
    assert dc.apply(config, package) == ALREADY
    assert dc.device_hash(str(tmp_path / "dev")) == before


def test_full_package_removes_paths_the_target_lacks(release, tmp_path):
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    extra = tmp_path / "dev" / "system" / "etc" / "local.conf"
    extra.write_bytes(b"left by someone\n")
    # A symlink out of the device to a file of the host (a sentinel here, so a regression that
    # writes through it fails this test instead of damaging the machine).
    sentinel = tmp_path / "host-file"
    sentinel.write_bytes(b"the host's own file\n")
    os.symlink(sentinel, tmp_path / "dev" / "system" / "bin" / "evil")
    assert dc.apply(config, release.full) == APPLIED
    assert dc.compare(config, release.target) == []
    assert sentinel.read_bytes() == b"the host's own file\n"


def test_cli_success_rerun_and_progress_lines(release, tmp_path):
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    done = run_cli("--package", release.incremental, "--device", config, "--progress=lines")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == f"ota_apply: updated to {TARGET_FP}"
    progress = lines[:-1]
    pattern = re.compile(r"progress (0\.\d{4}|1\.0000) [a-z]+ \S.*")
    assert progress and all(pattern.fullmatch(line) for line in progress), progress[:5]
    fractions = [float(line.split()[1]) for line in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    steps = {line.split()[2] for line in progress}
    assert {"verify", "stage", "patch", "write", "symlink", "metadata", "partition", "check", "finish"} <= steps
    assert progress[-1] == "progress 1.0000 finish -"
    assert any(line.endswith(" patch bin/sh") for line in progress)
    again = run_cli("--package", release.incremental, "--device", config)
    assert (again.returncode, again.stdout) == (0, f"ota_apply: the device already runs {TARGET_FP}; nothing to do\n")


def test_cli_resumes_after_a_crash_in_a_child_process(release, tmp_path):
    """A cut by os._exit (as power loss kills a process) in the middle of the partition step."""
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    log = tmp_path / "ops.log"
    clean_dir = str(tmp_path / "clean")
    clean = dc.materialize(release.source, clean_dir, release.layout)
    assert (
        run_testbench_cli([f"--fault_log={log}"], "--package", release.incremental, "--device", clean).returncode == 0
    )
    records = read_fault_log(str(log))
    writes_to_radio = [r.index for r in records if "radio" in r.target and r.kind in ("write", "erase")]
    point = f"tear:{writes_to_radio[len(writes_to_radio) // 2]}"
    cut = run_testbench_cli([f"--fault={point}"], "--package", release.incremental, "--device", config)
    assert cut.returncode == CRASH_EXIT_CODE
    journal = Journal.load(device_mod.load(config).cache_dir, FsOps())
    assert journal is not None and any(step.startswith("patch:") for step in journal.claimed)
    resumed = run_cli("--package", release.incremental, "--device", config)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == f"ota_apply: updated to {TARGET_FP} (resumed an interrupted update)\n"
    assert dc.compare(config, release.target) == []


def test_a_full_package_takes_over_an_unfinished_update(release, tmp_path):
    """The way out of another package's journal (docs/ota_apply.md, "Stuck states and the way out");
    tests/ota_apply/test_prewrite_refusals.py covers the refusal of another incremental package."""
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    cut = run_testbench_cli(["--fault=before:40"], "--package", release.incremental, "--device", config)
    assert cut.returncode == CRASH_EXIT_CODE
    other = run_cli("--package", release.full, "--device", config)
    assert (other.returncode, other.stderr) == (0, "")
    assert dc.compare(config, release.target) == []
    assert not os.path.exists(os.path.join(str(tmp_path / "dev"), "cache", "ota_journal"))


def test_stale_cache_files_are_freed_only_when_needed(release, tmp_path):
    """A cache too small for the update plus loose files: the loose files go, the update fits."""
    with open_package(release.incremental) as package:
        required = package.manifest.cache_bytes_required
    # The patches, the largest backup, the 256 KiB reserve and room for the journal.
    layout = dc.Layout(release.layout.kinds, release.layout.capacity, cache_limit=required + 256 * 1024 + 16_384)
    config = dc.materialize(release.source, str(tmp_path / "dev"), layout)
    junk = tmp_path / "dev" / "cache" / "last_log"
    junk.write_bytes(b"\0" * 300_000)
    assert dc.apply(config, release.incremental) == APPLIED
    assert not junk.exists()
    assert dc.compare(config, release.target) == []


def test_help_and_usage(tmp_path):
    usage = run_cli("--package", "x.zip")
    assert usage.returncode == 2 and "--package and --device are required" in usage.stderr
    bad_fault = run_testbench_cli(["--fault=sometimes"], "--package", "x", "--device", "y")
    assert bad_fault.returncode == 2 and "is not <mode>:<N>" in bad_fault.stderr
    assert run_cli("--help").returncode == 0


def test_device_config_errors_name_the_field(tmp_path):
    config = tmp_path / "device.json"
    config.write_text(
        '{"name": "x", "system_root": "s", "build_file": "b", "partitions": "p.conf", '
        '"policy": {"allow_downgrade": "yes"}}'
    )
    (tmp_path / "p.conf").write_text("cache cache\n")
    result = run_cli("--package", "x.zip", "--device", str(config))
    assert (result.returncode, result.stderr) == (
        1,
        f"ota_apply: error: {config}: policy.allow_downgrade: expected true or false\n",
    )
    (tmp_path / "p.conf").write_text("partition boot file boot.img\n")
    config.write_text('{"name": "x", "system_root": "s", "build_file": "b", "partitions": "p.conf"}')
    result = run_cli("--package", "x.zip", "--device", str(config))
    assert (result.returncode, result.stderr) == (
        1,
        f"ota_apply: error: {tmp_path / 'p.conf'}: no 'cache <dir> [<limit>]' line: ota_apply needs a cache\n",
    )


def test_imgdiff_patch_of_a_compressible_gz_file(tmp_path):
    import gzip

    from apply_helpers import DEVICE
    from ota.testing.builds import Spec, make_package, write_build

    text = b"".join(b"line %d of a compressible manual page\n" % i for i in range(3000))
    source = write_build(Spec(DEVICE, "fp/1", 1, {"man/a.gz": gzip.compress(text, mtime=0)}, {}), str(tmp_path / "s"))
    target = write_build(
        Spec(DEVICE, "fp/2", 2, {"man/a.gz": gzip.compress(text + b"more\n", mtime=0)}, {}), str(tmp_path / "t")
    )
    package = make_package(source, target, str(tmp_path), str(tmp_path / "p.zip"))
    with open_package(package) as opened:
        assert [op.method for op in opened.manifest.files if op.path == b"man/a.gz"] == [3]  # IMGDIFF
    config = dc.materialize(source, str(tmp_path / "dev"), dc.layout_for(source, target))
    result = run_cli("--package", package, "--device", config)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("mode", ["enospc", "eio"])
def test_a_failing_disk_is_one_line_and_the_rerun_finishes(release, tmp_path, mode):
    log = tmp_path / "ops.log"
    clean = dc.materialize(release.source, str(tmp_path / "clean"), release.layout)
    assert (
        run_testbench_cli([f"--fault_log={log}"], "--package", release.incremental, "--device", clean).returncode == 0
    )
    index = next(r.index for r in read_fault_log(str(log)) if r.kind == "write" and "etc/new.conf~" in r.target)
    config = dc.materialize(release.source, str(tmp_path / "dev"), release.layout)
    failed = run_testbench_cli([f"--fault={mode}:{index}"], "--package", release.incremental, "--device", config)
    reason = "No space left on device" if mode == "enospc" else "Input/output error"
    assert (failed.returncode, failed.stderr) == (1, f"ota_apply: error: write:etc/new.conf: {reason}\n")
    assert run_cli("--package", release.incremental, "--device", config).returncode == 0
    assert dc.compare(config, release.target) == []
