"""Every command-line tool x every input argument x every bad kind of input (bounded reads: py/ota/io/fileio.py).

Bad kinds: /dev/zero (a character device that never ends: read in pieces, refused one byte past
the bound), a FIFO with no writer (refused when opened, never waited on), a missing file, a
directory, and a regular file one byte over the input's bound (a sparse file: refused by its
size, before a byte is read). Each run must exit 1 with exactly one stderr line naming the bad
path, print no traceback, and leave no output file (nor a temporary) behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ota.actions import make_bsdiff
from ota.format.jsonio import MAX_JSON_BYTES
from ota.io.fileio import MAX_INPUT_BYTES, MAX_SMALL_INPUT_BYTES, MAX_STREAM_BYTES

KINDS = ("dev_zero", "fifo", "missing", "directory", "over_bound")
ZIP = None  # inputs read by seeking (zip): no whole-read bound, any size is checked by the zip reader


@dataclass(frozen=True)
class Input:
    """One input argument of one tool: the command line with BAD where the input goes, its bound."""

    tool: str
    name: str
    args: tuple[str, ...]
    bound: int | None = MAX_INPUT_BYTES


def _cases() -> list[Input]:
    sha = hashlib.sha1(SOURCE).hexdigest()
    target_sha = hashlib.sha1(TARGET).hexdigest()
    flash_spec = f"EMMC:{{dir}}/part.img:{len(TARGET)}:{target_sha}"
    classic = ("--cache_dir={dir}/cache", "{dir}/work.bin", "-", target_sha, str(len(TARGET)))
    sections = ("kernel", "ramdisk", "second", "recovery_dtbo", "dtb", "boot_signature")
    cases = [
        Input("bsdiff", "SRC", ("BAD", "{dir}/target", "{dir}/out/patch")),
        Input("bsdiff", "TGT", ("{dir}/source", "BAD", "{dir}/out/patch")),
        Input("bspatch", "SRC", ("BAD", "{dir}/out/new", "{dir}/patch")),
        Input("bspatch", "PATCH", ("{dir}/source", "{dir}/out/new", "BAD")),
        Input("bspatch", "--bonus", ("--bonus=BAD", "{dir}/source", "{dir}/out/new", "{dir}/patch")),
        Input("imgdiff", "SRC", ("BAD", "{dir}/target", "{dir}/out/patch")),
        Input("imgdiff", "TGT", ("{dir}/source", "BAD", "{dir}/out/patch")),
        Input("imgdiff", "-b", ("-b", "BAD", "{dir}/source", "{dir}/target", "{dir}/out/patch")),
        Input("imgdiff", "-z SRC", ("-z", "BAD", "{dir}/target", "{dir}/out/patch")),
        Input(
            "applypatch",
            "<src>",
            ("--cache_dir={dir}/cache", "BAD", "{dir}/out/new", target_sha, str(len(TARGET)), f"{sha}:{{dir}}/patch"),
        ),
        Input("applypatch", "<patch>", (*classic, f"{sha}:BAD")),
        Input("applypatch", "-b", ("--cache_dir={dir}/cache", "-b", "BAD", *classic[1:], f"{sha}:{{dir}}/patch")),
        Input("applypatch", "-c", ("--cache_dir={dir}/cache", "-c", "BAD", sha)),
        Input("applypatch", "--flash", ("--cache_dir={dir}/cache", "--flash=BAD", f"--target={flash_spec}")),
        Input(
            "applypatch",
            "--patch",
            (
                "--cache_dir={dir}/cache",
                "--patch=BAD",
                (f"--source=EMMC:{{dir}}/part.img:{len(SOURCE)}:{sha}"),
                f"--target={flash_spec}",
            ),
        ),
        Input(
            "applypatch", "--device_config", ("--device_config=BAD", "-c", "{dir}/source", sha), MAX_SMALL_INPUT_BYTES
        ),
        Input("ota_bootimg", "info", ("info", "BAD")),
        Input("ota_bootimg", "unpack", ("unpack", "BAD", "--out={dir}/out/unpacked")),
        *[
            Input(
                "ota_bootimg",
                f"build --{name}",
                (
                    "build",
                    *(() if name == "kernel" else ("--kernel={dir}/source",)),
                    f"--{name}=BAD",
                    "--output={dir}/out/boot.img",
                ),
            )
            for name in sections
        ],
        Input("ota_sign", "--in", ("--key={dir}/key.pem", "--in=BAD", "--out={dir}/out/signed.zip"), ZIP),
        Input(
            "ota_sign", "--key", ("--key=BAD", "--in={dir}/source", "--out={dir}/out/signed.zip"), MAX_SMALL_INPUT_BYTES
        ),
        Input(
            "ota_sign",
            "--password_file",
            ("--key={dir}/key.pem", "--password_file=BAD", "--in={dir}/source", "--out={dir}/out/signed.zip"),
            MAX_SMALL_INPUT_BYTES,
        ),
        Input("ota_inspect", "PACKAGE", ("BAD",), ZIP),
        Input("ota_apply", "--package", ("--package=BAD", "--device={dir}/device.json"), ZIP),
        Input("ota_apply", "--device", ("--package={dir}/source", "--device=BAD"), MAX_JSON_BYTES),
    ]
    return cases


SOURCE = bytes(range(256)) * 64
TARGET = SOURCE[:5000] + b"changed" + SOURCE[5000:]
MODULES = {"ota_bootimg": "bootimg"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Valid inputs for every argument but the bad one, and an empty output directory."""
    work = tmp_path_factory.mktemp("inputs")
    (work / "source").write_bytes(SOURCE)
    (work / "target").write_bytes(TARGET)
    (work / "work.bin").write_bytes(SOURCE)
    (work / "part.img").write_bytes(SOURCE.ljust(len(TARGET) + 4096, b"\0"))
    (work / "patch").write_bytes(make_bsdiff.diff(SOURCE, TARGET))
    (work / "cache").mkdir()
    (work / "out").mkdir()
    key = ed25519.Ed25519PrivateKey.generate()
    (work / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (work / "p.conf").write_text("cache cache\n")
    (work / "device.json").write_text(
        json.dumps({"name": "x", "system_root": "s", "build_file": "b", "partitions": "p.conf"})
    )
    (work / "bad").mkdir()
    os.mkfifo(work / "bad" / "fifo")
    (work / "bad" / "directory").mkdir()
    return work


def _bad_path(work: Path, case: Input, kind: str) -> str:
    if kind == "dev_zero":
        return "/dev/zero"
    if kind == "over_bound":
        path = work / "bad" / f"over_{case.bound}"
        if not path.exists():
            with open(path, "wb") as stream:  # sparse: costs no disk
                stream.truncate((case.bound or MAX_INPUT_BYTES) + 1)
        return str(path)
    return str(work / "bad" / kind)


def _run(work: Path, case: Input, kind: str) -> tuple[str, subprocess.CompletedProcess]:
    bad = _bad_path(work, case, kind)
    args = [arg.replace("BAD", bad).replace("{dir}", str(work)) for arg in case.args]
    module = MODULES.get(case.tool, case.tool)
    result = subprocess.run(
        [sys.executable, "-m", f"ota.cli.{module}", *args], capture_output=True, text=True, timeout=120, check=False
    )
    return bad, result


CASES = [(case, kind) for case in _cases() for kind in KINDS]

# applypatch and ota_apply hold the update lock of the cache directory while they run
# (py/ota/device/applypatch/cache.py `exclusive`): two of them at once on this matrix's one cache
# would see the second refused for that, so they run one at a time; the other tools two at a time.
_CACHE_USERS = frozenset({"applypatch", "ota_apply"})
_ONE_CACHE_USER = threading.Lock()


def _run_item(work: Path, case: Input, kind: str) -> tuple[str, subprocess.CompletedProcess]:
    if case.tool in _CACHE_USERS:
        with _ONE_CACHE_USER:
            return _run(work, case, kind)
    return _run(work, case, kind)


def test_the_matrix_covers_every_tool_and_kind():
    tools = {case.tool for case, _ in CASES}
    assert tools == {
        "bsdiff",
        "bspatch",
        "imgdiff",
        "applypatch",
        "ota_bootimg",
        "ota_sign",
        "ota_inspect",
        "ota_apply",
    }
    assert len(CASES) == len(_cases()) * len(KINDS) >= 150


def test_every_bad_input_is_one_line_exit_1_and_leaves_no_output(workdir):
    """Runs the whole matrix (two at a time: /dev/zero cases read up to 2 GiB before refusing)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda item: (item, *_run_item(workdir, *item)), CASES))
    problems = []
    for (case, kind), bad, result in results:
        tool = case.tool
        lines = result.stderr.splitlines()
        where = f"{tool} {case.name} <- {kind}"
        if result.returncode != 1 or len(lines) != 1 or "Traceback" in result.stderr:
            problems.append(f"{where}: exit {result.returncode}, stderr {result.stderr[-300:]!r}")
        elif not lines[0].startswith(f"{tool}: error: {bad}"):
            problems.append(f"{where}: the line does not name {bad}: {lines[0]!r}")
        elif (
            kind == "dev_zero"
            and case.bound is not ZIP
            and f"larger than the {min(case.bound, MAX_STREAM_BYTES)}-byte limit" not in lines[0]
        ):
            problems.append(f"{where}: not refused by the bound: {lines[0]!r}")
        elif (
            kind == "over_bound"
            and case.bound is not ZIP
            and f"larger than the {case.bound}-byte limit" not in lines[0]
        ):
            problems.append(f"{where}: not refused by the size check: {lines[0]!r}")
    leftovers = sorted(os.listdir(workdir / "out")) + sorted(os.listdir(workdir / "cache"))
    assert problems == [] and leftovers == [], (problems[:10], leftovers)
    assert (workdir / "work.bin").read_bytes() == SOURCE  # the applypatch target that other cases name
    assert (workdir / "part.img").read_bytes()[: len(SOURCE)] == SOURCE


def test_a_target_in_a_missing_directory_is_one_line(workdir, tmp_path):
    """applypatch <src> <missing dir>/<tgt>: the source and patch are good, the target's directory is
    not there: one line naming that directory and ENOENT, nothing written."""
    target = tmp_path / "nowhere" / "new.bin"
    sha, target_sha = hashlib.sha1(SOURCE).hexdigest(), hashlib.sha1(TARGET).hexdigest()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ota.cli.applypatch",
            f"--cache_dir={workdir / 'cache'}",
            str(workdir / "source"),
            str(target),
            target_sha,
            str(len(TARGET)),
            f"{sha}:{workdir / 'patch'}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (
        1,
        (
            f"applypatch: error: {target.parent}: cannot use the target's directory: No such file or directory "
            "(ENOENT)\n"
        ),
    )
    assert not target.parent.exists() and os.listdir(workdir / "cache") == []


@pytest.mark.parametrize(
    "tool, args",
    [
        ("bsdiff", ("{dir}/source", "{dir}/target", "OUT")),
        ("bspatch", ("{dir}/source", "OUT", "{dir}/patch")),
        ("imgdiff", ("{dir}/source", "{dir}/target", "OUT")),
        ("bootimg", ("build", "--kernel={dir}/source", "--output=OUT")),
    ],
)
def test_an_output_that_cannot_be_written_leaves_no_temporary(workdir, tmp_path, tool, args):
    """The output path is a directory: the rename fails; the temporary sibling is removed."""
    out = tmp_path / "taken"
    out.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            f"ota.cli.{tool}",
            *[a.replace("{dir}", str(workdir)).replace("OUT", str(out)) for a in args],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert str(out) in result.stderr and "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["taken"] and os.listdir(out) == []
